"""Opt-in exact-match response cache for LLM calls.

Re-running a flow while developing it (or a test suite, or an eval) sends
the same requests again and pays for them again. With the cache on, a request
identical to one already answered (same provider, operation, model, system
prompt, messages, tools and sampling parameters) is answered from the cache:
the caller gets the same type the client returns (a real ``ChatCompletion``
or ``Message``), the span says ``flowscope.cache.hit=true``, costs 0 and
records what it would have cost in ``flowscope.cache.saved_usd``.

    flowscope.cache.enable()                          # in-process LRU
    flowscope.cache.enable("sqlite:///.flowscope-cache.db", ttl_s=86400)
    flowscope.cache.enable("redis://localhost:6379/0", max_size=100_000)

What is not cached, on purpose: streaming requests (they go to the provider
and are traced as usual: replaying a stream would have to fake chunk timing),
``with_raw_response`` / ``with_streaming_response`` calls (the caller asked
for the HTTP response, which a cache does not have), and requests holding a
value we cannot serialise deterministically (a key we cannot trust is worse
than a miss). A hit is served even when the run's budget is spent, because it
costs nothing. A failing backend (Redis down) is a miss, never an error.

Entries are JSON (the response's ``model_dump`` plus its class path), not
pickles, so a shared Redis cannot be turned into code execution.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "CacheBackend",
    "MemoryBackend",
    "RedisBackend",
    "ResponseCache",
    "SQLiteBackend",
    "active",
    "clear",
    "disable",
    "enable",
]

logger = logging.getLogger("flowscope")

_FORMAT = 1
# Request arguments that never change what the model answers: transport
# options, bookkeeping, and provider-side prompt-cache hints.
_NOT_IN_KEY = frozenset(
    {
        "extra_headers",
        "extra_query",
        "timeout",
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "service_tier",
        "idempotency_key",
    }
)


class Uncacheable(Exception):
    """A request value with no stable serialisation: the request bypasses the cache."""


@runtime_checkable
class CacheBackend(Protocol):
    """Where entries live. Values are opaque strings; expiry is the backend's job."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str, ttl_s: float | None) -> None: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...


class MemoryBackend:
    """In-process LRU, bounded by entry count."""

    def __init__(self, max_size: int = 1024) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.max_size = max_size
        self._data: OrderedDict[str, tuple[str, float | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            value, expires = item
            if expires is not None and time.time() >= expires:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value

    def set(self, key: str, value: str, ttl_s: float | None) -> None:
        expires = time.time() + ttl_s if ttl_s else None
        with self._lock:
            self._data[key] = (value, expires)
            self._data.move_to_end(key)
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def close(self) -> None:
        self.clear()


class SQLiteBackend:
    """A single SQLite file, shared by processes on one machine; LRU by last use."""

    def __init__(self, path: str | os.PathLike[str], max_size: int = 100_000) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.path = Path(path)
        self.max_size = max_size
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=5.0, isolation_level=None)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS flowscope_llm_cache ("
                " key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL, used REAL NOT NULL)"
            )
            self._conn.execute("CREATE INDEX IF NOT EXISTS flowscope_llm_cache_used ON flowscope_llm_cache(used)")

    def get(self, key: str) -> str | None:
        now = time.time()
        with self._lock:
            row = self._conn.execute(
                "SELECT value, expires FROM flowscope_llm_cache WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            if row[1] is not None and now >= row[1]:
                self._conn.execute("DELETE FROM flowscope_llm_cache WHERE key = ?", (key,))
                return None
            self._conn.execute("UPDATE flowscope_llm_cache SET used = ? WHERE key = ?", (now, key))
            return str(row[0])

    def set(self, key: str, value: str, ttl_s: float | None) -> None:
        now = time.time()
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO flowscope_llm_cache (key, value, expires, used) VALUES (?, ?, ?, ?)",
                (key, value, now + ttl_s if ttl_s else None, now),
            )
            (count,) = self._conn.execute("SELECT count(*) FROM flowscope_llm_cache").fetchone()
            if count > self.max_size:
                self._conn.execute(
                    "DELETE FROM flowscope_llm_cache WHERE key IN ("
                    " SELECT key FROM flowscope_llm_cache ORDER BY used ASC LIMIT ?)",
                    (count - self.max_size,),
                )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM flowscope_llm_cache").fetchone()[0])

    def clear(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM flowscope_llm_cache")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class RedisBackend:
    """Redis (``redis://`` / ``rediss://``): shared by every process that can reach it.

    TTL is Redis's own ``EX``; ``max_size`` is kept with a sorted set of keys by
    last use, trimmed on write, so one noisy flow cannot fill the server.
    """

    def __init__(self, url: str, max_size: int = 100_000, prefix: str = "flowscope:llm-cache:") -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("the Redis cache needs the redis package: pip install 'flowscope[cache]'") from exc
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.max_size = max_size
        self.prefix = prefix
        self._index = prefix + "index"
        self._client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)

    def get(self, key: str) -> str | None:
        full = self.prefix + key
        pipe = self._client.pipeline(transaction=False)
        pipe.get(full)
        pipe.zadd(self._index, {full: time.time()}, xx=True)
        value, _ = pipe.execute()
        if value is None:
            self._client.zrem(self._index, full)
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def set(self, key: str, value: str, ttl_s: float | None) -> None:
        full = self.prefix + key
        pipe = self._client.pipeline(transaction=False)
        if ttl_s:
            pipe.set(full, value, px=max(1, int(ttl_s * 1000)))
        else:
            pipe.set(full, value)
        pipe.zadd(self._index, {full: time.time()})
        pipe.zcard(self._index)
        count = pipe.execute()[-1]
        if count > self.max_size:
            evicted: Any = self._client.zpopmin(self._index, count - self.max_size)
            names: list[Any] = [name for name, _ in evicted]
            if names:
                self._client.delete(*names)

    def __len__(self) -> int:
        return int(self._client.zcard(self._index))

    def clear(self) -> None:
        names = list(self._client.scan_iter(match=self.prefix + "*", count=1000))
        if names:
            self._client.delete(*names)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


def make_backend(spec: str | os.PathLike[str] | CacheBackend | None, max_size: int | None = None) -> CacheBackend:
    """``"memory"``, ``"sqlite:///path.db"`` (or a ``.db``/``.sqlite`` path), ``"redis://..."``, or a backend."""
    if spec is not None and not isinstance(spec, (str, os.PathLike)):
        if not isinstance(spec, CacheBackend):
            raise TypeError(f"not a cache backend: {spec!r}")
        return spec
    text = os.fspath(spec) if spec is not None else "memory"
    size: dict[str, Any] = {"max_size": max_size} if max_size is not None else {}
    if text in ("memory", "memory://", ":memory:"):
        return MemoryBackend(**size)
    if text.startswith(("redis://", "rediss://", "unix://")):
        return RedisBackend(text, **size)
    if text.startswith("sqlite://"):
        # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute/path.db
        path = text[len("sqlite:///") :] if text.startswith("sqlite:///") else text[len("sqlite://") :]
        return SQLiteBackend(path or ".flowscope-cache.db", **size)
    if text.endswith((".db", ".sqlite", ".sqlite3")):
        return SQLiteBackend(text, **size)
    raise ValueError(
        f"unknown cache backend {text!r}: use 'memory', 'sqlite:///path.db' or 'redis://host:port/db'"
    )


# --- keys and entries ------------------------------------------------------------


def _canonical(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise Uncacheable("non-finite float")
        return value
    if type(value).__name__ in ("Omit", "NotGiven"):
        raise _Skip
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            try:
                out[str(k)] = _canonical(v)
            except _Skip:
                continue
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value if not _is_sentinel(v)]
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes_sha256__": hashlib.sha256(value).hexdigest()}
    if isinstance(value, type):
        schema = getattr(value, "model_json_schema", None)
        if callable(schema):
            return {"__type__": f"{value.__module__}.{value.__qualname__}", "schema": _canonical(schema())}
        raise Uncacheable(f"class {value!r}")
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return _canonical(dump(mode="json"))
    raise Uncacheable(f"value of type {type(value).__name__}")


class _Skip(Exception):
    pass


def _is_sentinel(value: Any) -> bool:
    return type(value).__name__ in ("Omit", "NotGiven")


def request_key(provider: str, operation: str, kwargs: Mapping[str, Any]) -> str:
    """Stable hash of everything that decides the answer; raises ``Uncacheable``."""
    params = {k: v for k, v in kwargs.items() if k not in _NOT_IN_KEY}
    doc = {"v": _FORMAT, "provider": provider, "operation": operation, "params": _canonical(params)}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


_TYPES: dict[str, type] = {}


def _type_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve_type(path: str) -> type | None:
    cls = _TYPES.get(path)
    if cls is not None:
        return cls
    module_name, _, qualname = path.partition(":")
    qualname = qualname.split("[", 1)[0]  # ParsedChatCompletion[Answer]: the endpoint re-parses
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None  # e.g. ParsedChatCompletion[MyModel] from another process
    return obj if isinstance(obj, type) else None


def encode_response(obj: Any) -> str:
    dump = getattr(obj, "model_dump", None)
    if not callable(dump):
        raise Uncacheable(f"response of type {type(obj).__name__} is not a pydantic model")
    cls = type(obj)
    path = _type_path(cls)
    _TYPES[path] = cls
    data = dump(mode="json", warnings=False)
    return json.dumps({"v": _FORMAT, "type": path, "data": data}, separators=(",", ":"), ensure_ascii=False)


def decode_response(text: str) -> Any | None:
    doc = json.loads(text)
    if not isinstance(doc, dict) or doc.get("v") != _FORMAT:
        return None
    cls = _resolve_type(str(doc.get("type")))
    if cls is None:
        return None
    data = doc.get("data")
    try:
        return cls.model_validate(data)  # type: ignore[attr-defined]
    except Exception:
        construct = getattr(cls, "construct", None)
        return construct(**data) if callable(construct) and isinstance(data, dict) else None


class ResponseCache:
    """A backend plus the rules: what goes in the key, how entries are encoded, TTL."""

    def __init__(self, backend: CacheBackend, ttl_s: float | None = None) -> None:
        self.backend = backend
        self.ttl_s = ttl_s
        self.hits = 0
        self.misses = 0

    def key(self, provider: str, operation: str, kwargs: Mapping[str, Any]) -> str | None:
        try:
            return request_key(provider, operation, kwargs)
        except Uncacheable as exc:
            logger.debug("flowscope: request not cacheable: %s", exc)
            return None
        except Exception:
            logger.debug("flowscope: could not build a cache key", exc_info=True)
            return None

    def get(self, key: str) -> Any | None:
        try:
            text = self.backend.get(key)
            obj = decode_response(text) if text is not None else None
        except Exception:
            logger.warning("flowscope: response cache read failed; treating as a miss", exc_info=True)
            obj = None
        if obj is None:
            self.misses += 1
        else:
            self.hits += 1
        return obj

    def put(self, key: str, response: Any) -> None:
        try:
            self.backend.set(key, encode_response(response), self.ttl_s)
        except Uncacheable as exc:
            logger.debug("flowscope: response not cacheable: %s", exc)
        except Exception:
            logger.warning("flowscope: response cache write failed", exc_info=True)

    def clear(self) -> None:
        self.backend.clear()


_active: ResponseCache | None = None
_lock = threading.Lock()


def enable(
    backend: str | os.PathLike[str] | CacheBackend | None = "memory",
    *,
    ttl_s: float | None = None,
    max_size: int | None = None,
) -> ResponseCache:
    """Turn the response cache on (replacing any previous one) and return it.

    ``ttl_s`` expires entries (default: never); ``max_size`` bounds the entry
    count (LRU; defaults 1024 in memory, 100 000 for SQLite and Redis).
    """
    global _active
    cache = ResponseCache(make_backend(backend, max_size), ttl_s=ttl_s)
    with _lock:
        old, _active = _active, cache
    if old is not None and old.backend is not cache.backend:
        with contextlib.suppress(Exception):
            old.backend.close()
    return cache


def disable() -> None:
    """Turn the cache off (entries in SQLite/Redis stay for next time)."""
    global _active
    with _lock:
        old, _active = _active, None
    if old is not None:
        with contextlib.suppress(Exception):
            old.backend.close()


def active() -> ResponseCache | None:
    return _active


def clear() -> None:
    """Drop every entry of the active cache."""
    cache = _active
    if cache is not None:
        cache.clear()
