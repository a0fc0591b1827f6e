"""Run attributes: the names a run attribute gets on a span, and which keys are run attributes.

``user_id`` → ``user.id`` and ``session_id`` → ``gen_ai.conversation.id`` (the
standard names other tools already read); everything else, ``tenant`` included,
→ ``flowscope.run.attr.<name>``. :func:`attribute_key` is the one place that
resolves a name, so the SDK that writes a run attribute and the collector that
filters and groups by ``attr:<name>`` can never disagree.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from . import semconv

logger = logging.getLogger("flowscope")

USER_ID = semconv.USER_ID
CONVERSATION_ID = semconv.GEN_AI_CONVERSATION_ID
CUSTOM_PREFIX = semconv.RUN_ATTR_PREFIX
# On the spans of a run started inside another service's run: the caller's run.
RUN_PARENT_ID = semconv.RUN_PARENT_ID

_NAMED = {"user_id": USER_ID, "session_id": CONVERSATION_ID}
_STANDARD_KEYS = frozenset(_NAMED.values())
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")

AttributeValue = str | bool | int | float | list[str] | list[bool] | list[int] | list[float]


def attribute_key(name: str) -> str:
    """The span attribute key of a run attribute name (``tenant`` → ``flowscope.run.attr.tenant``).

    Full keys pass through, so ``attr:user.id`` and ``attr:user_id`` mean the same.
    """
    if name in _NAMED:
        return _NAMED[name]
    if name in _STANDARD_KEYS or name.startswith(CUSTOM_PREFIX):
        return name
    return CUSTOM_PREFIX + name


def attribute_name(key: str) -> str:
    """The name a person set a run attribute by: the inverse of :func:`attribute_key`
    (``user.id`` → ``user_id``, ``flowscope.run.attr.tenant`` → ``tenant``)."""
    for name, named_key in _NAMED.items():
        if key == named_key:
            return name
    return key[len(CUSTOM_PREFIX):] if key.startswith(CUSTOM_PREFIX) else key


def who_fields(attributes: Mapping[str, str]) -> dict[str, Any]:
    """What a run summary and a runs-list row say about who a run was for.

    ``attributes`` are the run's run attributes by span attribute key; the answer
    has ``user_id``, ``session_id`` and ``tenant`` (None when not set) and every
    run attribute by its name in ``attributes``.
    """
    named = {attribute_name(k): str(v) for k, v in sorted(attributes.items()) if is_run_attribute_key(k)}
    return {"user_id": named.get("user_id"), "session_id": named.get("session_id"),
            "tenant": named.get("tenant"), "attributes": named}


def is_run_attribute_key(key: str) -> bool:
    """True for span attribute keys that are run attributes (and travel as baggage)."""
    return key in _STANDARD_KEYS or key.startswith(CUSTOM_PREFIX)


def _value(value: Any) -> AttributeValue | None:
    """An OTel attribute value for ``value``; anything else is stringified, not dropped."""
    if value is None:
        return None
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (list, tuple)):
        items = [v for v in value if v is not None]
        kinds = {type(v) for v in items}
        if len(kinds) <= 1 and kinds <= {str, bool, int, float}:
            return list(items)
        return [str(v) for v in items]
    return str(value)


def normalize_run_attributes(values: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Map friendly names to span attribute keys; invalid names are logged and skipped."""
    out: dict[str, AttributeValue] = {}
    for name, raw in values.items():
        name = str(name)
        if name not in _NAMED and not _NAME_RE.match(name) and not is_run_attribute_key(name):
            logger.warning("flowscope: run attribute name %r is not a valid name; skipped", name)
            continue
        value = _value(raw)
        if value is None:
            continue
        out[attribute_key(name)] = value
    return out


def run_attributes_from(mapping: Mapping[str, Any] | None) -> dict[str, AttributeValue]:
    """Run attributes found in a runtime's metadata (LangGraph ``config["metadata"]``,
    PenguiFlow ``Message.meta``, ...).

    Recognised: ``user_id``, ``session_id``, ``tenant`` (and the full keys
    ``user.id``, ``gen_ai.conversation.id``, ``flowscope.run.attr.*``), plus
    every entry of a nested ``"flowscope"`` mapping
    (``{"flowscope": {"plan": "pro"}}``). Other metadata stays out: runtimes
    put a lot there that is not about who the run was for.
    """
    if not mapping:
        return {}
    picked: dict[str, Any] = {}
    try:
        for key, value in mapping.items():
            if not isinstance(key, str):
                continue
            if key in _NAMED or key == "tenant" or is_run_attribute_key(key):
                picked[key] = value
        nested = mapping.get("flowscope")
        if isinstance(nested, Mapping):
            picked.update({str(k): v for k, v in nested.items()})
        return normalize_run_attributes(picked)
    except Exception:
        logger.warning("flowscope: could not read run attributes from metadata", exc_info=True)
        return {}
