"""State events for time travel: encoding on the way out, folding on the way back.

Both halves live here so that the SDK that writes ``flowscope.state`` events and
the collector / test kit that replays them share one definition of what
``set``, ``delete``, ``patch`` and ``snapshot`` mean.

Paths are dot-separated keys (``"plan.steps.0"``); a literal dot inside a key is
written ``\\.``. The empty path is the whole state.
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
    if path == "":
        return []
    parts: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == "\\" and i + 1 < len(path) and path[i + 1] == ".":
            buf.append(".")
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
    return ".".join(p.replace(".", "\\.") for p in parts)


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
