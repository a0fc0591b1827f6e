"""Which recorded state values can be handed back to a flow, and turning them back into objects.

A state event holds JSON (:func:`flowscope.core.state.to_jsonable`). What
round-trips, and how, is documented in ``docs/usage.md`` ("Replay and fork");
in short: JSON types as they were; ``Decimal``, ``datetime``, ``UUID`` as
their strings; pydantic models and dataclasses as dicts; LangChain messages
as message objects again (:func:`revive`). Two kinds of value cannot come
back at all, and a replay refuses to resume from a state holding them unless
the user supplies them (``state=`` / ``--set``): values that were only
*represented* (``__flowscope_repr__``: a type with no JSON form, bytes) and
values cut at the size limit (``__flowscope_truncated__``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from ..core.state import REPR_KEY, TRUNCATED_KEY, apply_event, join_path, split_path
from .errors import ReplayError

_MESSAGE_TYPES = frozenset({"human", "ai", "system", "tool", "function", "chat", "remove"})
_MESSAGE_FIELDS = frozenset({"additional_kwargs", "response_metadata"})


def lost_values(state: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """``(path, why)`` for every value in ``state`` that was only represented or was truncated."""
    out: list[tuple[str, str]] = []
    if isinstance(state, dict):
        if REPR_KEY in state:
            what = state.get("type") or state.get(REPR_KEY)
            return [(join_path(list(prefix)), f"only represented ({what}): it had no JSON form")]
        if TRUNCATED_KEY in state:
            return [(join_path(list(prefix)), f"truncated at {state.get('bytes')} bytes (FLOWSCOPE_STATE_MAX_BYTES)")]
        for key, value in state.items():
            out.extend(lost_values(value, (*prefix, str(key))))
    elif isinstance(state, list):
        for i, value in enumerate(state):
            out.extend(lost_values(value, (*prefix, str(i))))
    return out


def _covers(override: str, path: str) -> bool:
    o, p = split_path(override), split_path(path)
    return p[: len(o)] == o


def restore(state: Any, overrides: Mapping[str, Any] | None, *, run_id: str, step: int) -> Any:
    """The recorded state with ``overrides`` (path -> value, ``""``: the whole state) applied.

    Raises ReplayError naming every path whose recorded value cannot be used
    and that no override supplies.
    """
    overrides = dict(overrides or {})
    missing = [(p, why) for p, why in lost_values(state) if not any(_covers(o, p) for o in overrides)]
    if missing:
        lines = "; ".join(f"{p or '(the whole state)'}: {why}" for p, why in missing)
        first = missing[0][0] or "PATH"
        raise ReplayError(
            f"the state of run {run_id!r} after step {step} cannot be restored as recorded: {lines}. "
            f"Supply these values: state={{{first!r}: ...}} in flowscope.replay(), or --set '{first}=<json>' "
            "on the command line"
        )
    out = copy.deepcopy(state)
    for path, value in overrides.items():
        out = apply_event(out, "set", path, value)
    return out


def _is_message(value: Mapping[str, Any]) -> bool:
    return value.get("type") in _MESSAGE_TYPES and "content" in value and bool(_MESSAGE_FIELDS & value.keys())


def revive(value: Any) -> Any:
    """LangChain messages (recorded as their ``model_dump``) back into message objects; the rest as is."""
    if isinstance(value, list):
        return [revive(v) for v in value]
    if isinstance(value, dict):
        if _is_message(value):
            try:
                from langchain_core.messages import messages_from_dict

                data = {k: v for k, v in value.items() if k != "type"}
                return messages_from_dict([{"type": value["type"], "data": data}])[0]
            except Exception:
                return value
        return {k: revive(v) for k, v in value.items()}
    return value


def parse_assignment(text: str) -> tuple[str, Any]:
    """``path=json`` (the CLI's ``--set``) -> (path, value); a value that is not JSON is a string."""
    path, sep, raw = text.partition("=")
    if not sep:
        raise ReplayError(f"--set {text!r}: use PATH=JSON, e.g. --set 'plan.budget=12' or --set 'user={{\"id\": 7}}'")
    try:
        return path.strip(), json.loads(raw)
    except ValueError:
        return path.strip(), raw
