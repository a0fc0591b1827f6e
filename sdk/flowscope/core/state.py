"""State events for time travel: encoding on the way out, folding on the way back.

Both halves live here so that the SDK that writes ``flowscope.state`` events and
the collector / test kit that replays them share one definition of what
``set``, ``delete``, ``patch`` and ``snapshot`` mean.

Paths are dot-separated keys (``"plan.steps.0"``); a literal dot inside a key is
written ``\\.`` and a literal backslash ``\\\\``. The empty path is the whole state.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as _dt
import decimal
import enum
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

TRUNCATED_KEY = "__flowscope_truncated__"
REPR_KEY = "__flowscope_repr__"

# --- encoding -----------------------------------------------------------------


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """Turn any Python value into something json can encode, never dropping it.

    Values with no JSON form are *represented* (type and repr) instead of
    silently vanishing, so a user replaying state sees that something was there.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
    if _depth > 32:
        return {REPR_KEY: "<max depth>", "type": type(value).__qualname__}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, _depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [to_jsonable(v, _depth + 1) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, _depth + 1)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        return {REPR_KEY: "bytes", "len": len(raw), "base64": base64.b64encode(raw[:256]).decode()}
    dump = getattr(value, "model_dump", None)  # pydantic v2 (LangChain messages, PenguiFlow Message)
    if callable(dump):
        try:
            return to_jsonable(dump(mode="json"), _depth + 1)
        except Exception:
            pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return to_jsonable(fields, _depth + 1)
        except Exception:
            pass
    return {REPR_KEY: _safe_repr(value), "type": f"{type(value).__module__}.{type(value).__qualname__}"}


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break the host app
        text = f"<unrepresentable: {type(exc).__name__}>"
    return text[:1000]


def encode_value(
    path: str,
    value: Any,
    *,
    max_bytes: int,
    redact: Callable[[str, Any], Any] | None = None,
) -> tuple[str, bool]:
    """Encode one state value as JSON text, redacted first and size-limited.

    Returns ``(json_text, truncated)``. An oversized value is replaced by a
    marker object that keeps a preview, so replays show that the value was
    cut rather than showing a wrong value.
    """
    if redact is not None:
        value = redact(path, value)
    text = json.dumps(to_jsonable(value), ensure_ascii=False, separators=(",", ":"), sort_keys=False)
    size = len(text.encode("utf-8"))
    if size <= max_bytes:
        return text, False
    preview_chars = max(0, min(len(text), max_bytes // 2))
    marker = {TRUNCATED_KEY: True, "bytes": size, "preview": text[:preview_chars]}
    return json.dumps(marker, ensure_ascii=False, separators=(",", ":")), True


# --- paths --------------------------------------------------------------------


def split_path(path: str) -> list[str]:
    """``"a.b\\.c"`` -> ``["a", "b.c"]``: a backslash makes the next ``.`` or ``\\`` literal."""
    if path == "":
        return []
    parts: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == "\\" and i + 1 < len(path) and path[i + 1] in ".\\":
            buf.append(path[i + 1])
            i += 2
            continue
        if ch == ".":
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def join_path(parts: list[str]) -> str:
    return ".".join(p.replace("\\", "\\\\").replace(".", "\\.") for p in parts)


# --- folding ------------------------------------------------------------------


def _child(container: Any, key: str, create: bool) -> Any:
    if isinstance(container, list):
        idx = int(key)
        return container[idx] if -len(container) <= idx < len(container) else None
    if isinstance(container, dict):
        if key not in container and create:
            container[key] = {}
        return container.get(key)
    return None


def _assign(container: Any, key: str, value: Any) -> None:
    if isinstance(container, list):
        idx = int(key)
        if idx == len(container):
            container.append(value)
        else:
            container[idx] = value
    elif isinstance(container, dict):
        container[key] = value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge, ``null`` deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, val in patch.items():
        if val is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), val)
    return result


def apply_event(state: Any, op: str, path: str, value: Any) -> Any:
    """Apply one state event to ``state`` and return the new state.

    The state is mutated in place where possible; callers that need history
    keep their own deep copies.
    """
    parts = split_path(path)
    if op == "snapshot" or (op == "set" and not parts):
        return copy.deepcopy(value)
    if not parts:
        if op == "delete":
            return {}
        if op == "patch":
            return merge_patch(state, value)
        return state
    if not isinstance(state, (dict, list)):
        state = {}
    parent = state
    for key in parts[:-1]:
        nxt = _child(parent, key, create=op != "delete")
        if not isinstance(nxt, (dict, list)):
            if op == "delete":
                return state
            nxt = {}
            _assign(parent, key, nxt)
        parent = nxt
    last = parts[-1]
    if op == "set":
        _assign(parent, last, copy.deepcopy(value))
    elif op == "delete":
        if isinstance(parent, dict):
            parent.pop(last, None)
        elif isinstance(parent, list):
            idx = int(last)
            if -len(parent) <= idx < len(parent):
                parent.pop(idx)
    elif op == "patch":
        _assign(parent, last, merge_patch(_child(parent, last, create=False), value))
    return state


def diff(before: Any, after: Any, prefix: list[str] | None = None) -> dict[str, Any]:
    """Paths added, removed and changed between two states (dicts recurse, the rest compare whole)."""
    prefix = prefix or []
    out: dict[str, Any] = {"added": {}, "removed": {}, "changed": {}}
    if isinstance(before, dict) and isinstance(after, dict):
        for key in before.keys() | after.keys():
            path = [*prefix, str(key)]
            if key not in after:
                out["removed"][join_path(path)] = before[key]
            elif key not in before:
                out["added"][join_path(path)] = after[key]
            elif before[key] != after[key]:
                sub = diff(before[key], after[key], path)
                for kind in out:
                    out[kind].update(sub[kind])
        return out
    if before != after:
        out["changed"][join_path(prefix)] = {"from": before, "to": after}
    return out


# --- change capture -------------------------------------------------------------


def diff_ops(before: Any, after: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, str, Any]]:
    """The ``(op, path, value)`` events that turn ``before`` into ``after`` when folded.

    Both sides are JSON-shaped (see :func:`to_jsonable`). Dicts recurse so a
    change deep in a big state sends only that leaf; a list that only grew
    (the common shape of message histories and ``operator.add`` reducers)
    sends just its new items; anything else is replaced whole.
    """
    out: list[tuple[str, str, Any]] = []
    _diff_into(before, after, list(prefix), out)
    return out


def _diff_into(before: Any, after: Any, prefix: list[str], out: list[tuple[str, str, Any]]) -> None:
    if isinstance(before, dict) and isinstance(after, dict) and "" not in before and "" not in after:
        # (an empty key has no path of its own: such a dict is replaced whole)
        for key in before:
            if key not in after:
                out.append(("delete", join_path([*prefix, key]), None))
        for key, val in after.items():
            if key not in before:
                out.append(("set", join_path([*prefix, key]), val))
            elif before[key] != val:
                _diff_into(before[key], val, [*prefix, key], out)
        return
    if (
        prefix
        and isinstance(before, list)
        and isinstance(after, list)
        and len(after) > len(before)
        and after[: len(before)] == before
    ):
        for idx in range(len(before), len(after)):
            out.append(("set", join_path([*prefix, str(idx)]), after[idx]))
        return
    if before != after:
        out.append(("set", join_path(prefix), after))


class StateTracker:
    """The last state a run reported, so each step records only what changed.

    Values are kept in their JSON form, which is also a deep copy: a flow that
    mutates its state in place cannot change what was already recorded.
    """

    def __init__(self, initial: Any = None) -> None:
        self._last: Any = to_jsonable(initial) if initial is not None else {}

    @property
    def last(self) -> Any:
        return self._last

    def reset(self, value: Any) -> Any:
        """Take ``value`` as the new baseline and return its JSON form."""
        self._last = to_jsonable(value)
        return self._last

    def changes(self, current: Any) -> list[tuple[str, str, Any]]:
        cur = to_jsonable(current)
        prev, self._last = self._last, cur
        return diff_ops(prev, cur)


def redact_keys(*keys: str, replacement: Any = "[REDACTED]") -> Callable[[str, Any], Any]:
    """A ready-made ``init(redact=...)`` hook that masks the named keys anywhere.

    It masks a key whether the event is about the key itself (path ending in
    it) or about a container holding it, because with change capture the same
    secret can leave as ``user.ssn`` or inside ``user``.
    """
    names = {k.lower() for k in keys}

    def scrub(value: Any, depth: int = 0) -> Any:
        if depth > 64:
            return value
        if isinstance(value, Mapping):
            return {
                k: (replacement if str(k).lower() in names else scrub(v, depth + 1)) for k, v in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [scrub(v, depth + 1) for v in value]
        return value

    def redact(path: str, value: Any) -> Any:
        parts = split_path(path)
        if parts and parts[-1].lower() in names:
            return replacement
        return scrub(to_jsonable(value))

    return redact
