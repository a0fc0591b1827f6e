"""The path every traced client method shares: cache, budget, span, retries, stream.

Provider modules describe an endpoint (how to read its request, its response
and its stream); this module runs the call the same way for all of them, sync
and async, so the order of the rules is decided once:

1. the response cache answers first (a hit is free, so it is served even when
   the run's budget is spent);
2. the budget refuses a call that would start after the run spent its budget
   (``BudgetExceeded`` escapes on purpose; nothing is sent);
3. the request runs with the LLM span current, so the client's retries land
   on it as ``flowscope.retry`` events and HTTP-level spans nest under it;
4. the response (or stream) finishes the span; a fresh response is stored.

In a replay (:mod:`flowscope.replays`), a request the parent run made is
answered from its recording: the key is the cache's (provider, method, model,
messages, tools, parameters), the span says ``flowscope.replay.recorded`` and
costs 0, and the answer goes out as the provider's own HTTP response
(:mod:`flowscope.replays.wire`) so the client parses it as always. A request
that matches none goes live, marked ``flowscope.replay.live``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from .. import _replaying, config
from .. import cache as cache_mod
from ..core import semconv
from ..llm import LLMCall
from ._base import GLOBAL, Telemetry
from ._stream import AsyncStreamProxy, StreamObserver, SyncStreamProxy

logger = logging.getLogger("flowscope")

RAW_RESPONSE_HEADER = "x-stainless-raw-response"

StartArgs = Callable[[Any, dict[str, Any]], dict[str, Any]]
Finisher = Callable[[LLMCall, Any, bool], None]
ObserverFactory = Callable[[LLMCall, dict[str, Any]], StreamObserver]
Reviver = Callable[[Any, dict[str, Any]], Any]


@dataclass(frozen=True)
class Endpoint:
    """One client method: how to name its span and read its request, response and stream."""

    provider: str
    operation: str
    start_args: StartArgs  # (resource instance, kwargs) -> LLMCall keyword arguments
    finish: Finisher  # (call, response, cache_hit) -> None; ends the span
    observer: ObserverFactory | None = None  # for stream=True
    cacheable: bool = True
    api: str = ""  # names the method in cache keys: create and parse answer differently
    revive: Reviver | None = None  # rebuilds what the method returns from a cached response


class Plan:
    """Everything decided about one call before its request is sent."""

    __slots__ = ("cache", "key", "kwargs", "raw", "replay_key", "start", "stream")

    def __init__(
        self,
        start: dict[str, Any],
        stream: bool,
        raw: str | None,
        kwargs: dict[str, Any],
        cache: cache_mod.ResponseCache | None = None,
        key: str | None = None,
    ) -> None:
        self.start = start
        self.stream = stream
        self.raw = raw
        self.kwargs = kwargs
        self.cache = cache
        self.replay_key: str | None = None
        self.key = key


def raw_mode(kwargs: Mapping[str, Any]) -> str | None:
    """``"true"``/``"raw"`` for ``with_raw_response``, ``"stream"`` for ``with_streaming_response``."""
    headers = kwargs.get("extra_headers")
    if not isinstance(headers, Mapping):
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == RAW_RESPONSE_HEADER:
            return str(value)
    return None


def plan(ep: Endpoint, instance: Any, kwargs: dict[str, Any], *, stream: bool | None = None) -> Plan | None:
    """Everything decided before the request; None if tracing cannot describe it."""
    try:
        is_stream = bool(kwargs.get("stream")) if stream is None else stream
        start = ep.start_args(instance, kwargs)
        start["stream"] = is_stream
        p = Plan(start=start, stream=is_stream, raw=raw_mode(kwargs), kwargs=kwargs)
        cache = cache_mod.active()
        if cache is not None and ep.cacheable and not is_stream and p.raw is None:
            p.cache = cache
            p.key = cache.key(ep.provider, ep.api or ep.operation, kwargs)
        if config.current.capture_content or _replaying.BOOK.get() is not None:
            # what a replay of this run matches the request by (only with content: without
            # the recorded answer there is nothing to replay)
            key = p.key if p.key is not None else _request_key(ep, kwargs)
            p.replay_key = f"{ep.api or ep.operation}:{key}" if key else None  # the method, readable
        return p
    except Exception:
        logger.debug("flowscope: could not describe %s request", ep.provider, exc_info=True)
        return None


def _request_key(ep: Endpoint, kwargs: dict[str, Any]) -> str | None:
    try:
        return cache_mod.request_key(ep.provider, ep.api or ep.operation, kwargs)
    except Exception:  # a value with no stable form: a replay cannot match it
        return None


def replay_answer(p: Plan) -> tuple[_replaying.AnswerBook | None, _replaying.RecordedAnswer | None]:
    """In a replay: the parent's recorded answer to this request, if it made the same one.

    Raises :class:`~flowscope._replaying.RecordedOnlyMiss` under ``recorded-only``
    when there is none.
    """
    book = _replaying.BOOK.get()
    if book is None:
        return None, None
    return book, book.take(p.replay_key)


def mark(call: LLMCall, p: Plan, book: _replaying.AnswerBook | None, answer: Any) -> None:
    """Say on the span what a replay did with the request, and what to match it by later."""
    try:
        attrs: dict[str, Any] = {}
        if p.replay_key is not None:
            attrs[semconv.REPLAY_REQUEST_KEY] = p.replay_key
        if answer is not None:
            call.recorded = True
        elif book is not None:
            attrs[semconv.REPLAY_LIVE] = True
            attrs[semconv.REPLAY_LIVE_REASON] = book.live_reason()
        if attrs and call.span.is_recording():
            call.span.set_attributes(attrs)
    except Exception:
        logger.debug("flowscope: could not mark a replayed call", exc_info=True)


def serve_from_cache(ep: Endpoint, p: Plan, tel: Telemetry = GLOBAL) -> Any | None:
    if p.cache is None or p.key is None:
        return None
    hit = p.cache.get(p.key)
    if hit is None:
        return None
    if ep.revive is not None:
        try:
            hit = ep.revive(hit, p.kwargs)
        except Exception:  # e.g. the response_format class changed shape: answer afresh
            logger.debug("flowscope: cached %s response could not be revived", ep.api, exc_info=True)
            return None
    call = tel.start_call(ep.operation, ep.provider, check_budget=False, **p.start)
    if call is not None:
        try:
            ep.finish(call, hit, True)
        except Exception:
            logger.debug("flowscope: could not record cache hit", exc_info=True)
            call.finish(response_model=None, usage=None, cache_hit=True)
    return hit


def _end_quietly(call: LLMCall) -> None:
    call.finish(response_model=None, usage=None)


def _swap_parsed(raw_response: Any, parsed: Any, replacement: Any) -> bool:
    """Make ``raw_response.parse()`` hand out our stream proxy instead of the bare stream."""
    cache = getattr(raw_response, "_parsed_by_type", None)
    if not isinstance(cache, dict):
        return False
    for key, value in list(cache.items()):
        if value is parsed:
            cache[key] = replacement
            return True
    return False


def finish_sync(ep: Endpoint, p: Plan, call: LLMCall, result: Any) -> Any:
    """Record the response (or wrap the stream); returns what the caller gets."""
    try:
        if p.raw in ("true", "raw"):
            parsed = result.parse()
            if p.stream and ep.observer is not None:
                if not _swap_parsed(result, parsed, SyncStreamProxy(parsed, ep.observer(call, p.kwargs))):
                    _end_quietly(call)
            else:
                ep.finish(call, parsed, False)
            return result
        if p.raw is not None:  # with_streaming_response: the body is the caller's to read
            _end_quietly(call)
            return result
        if p.stream and ep.observer is not None:
            return SyncStreamProxy(result, ep.observer(call, p.kwargs))
        ep.finish(call, result, False)
        if p.cache is not None and p.key is not None:
            p.cache.put(p.key, result)
    except Exception:
        logger.debug("flowscope: %s response handling failed", ep.provider, exc_info=True)
        _end_quietly(call)
    return result


async def finish_async(ep: Endpoint, p: Plan, call: LLMCall, result: Any) -> Any:
    try:
        if p.raw in ("true", "raw"):
            parsed = result.parse()
            if inspect.isawaitable(parsed):
                parsed = await parsed
            if p.stream and ep.observer is not None:
                if not _swap_parsed(result, parsed, AsyncStreamProxy(parsed, ep.observer(call, p.kwargs))):
                    _end_quietly(call)
            else:
                ep.finish(call, parsed, False)
            return result
        if p.raw is not None:
            _end_quietly(call)
            return result
        if p.stream and ep.observer is not None:
            return AsyncStreamProxy(result, ep.observer(call, p.kwargs))
        ep.finish(call, result, False)
        if p.cache is not None and p.key is not None:
            p.cache.put(p.key, result)
    except Exception:
        logger.debug("flowscope: %s response handling failed", ep.provider, exc_info=True)
        _end_quietly(call)
    return result


def sync_wrapper(ep: Endpoint, tel: Telemetry = GLOBAL) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        p = plan(ep, instance, kwargs)
        if p is None:
            return wrapped(*args, **kwargs)
        hit = serve_from_cache(ep, p, tel)
        if hit is not None:
            return hit
        book, answer = replay_answer(p)
        # may raise BudgetExceeded (a recorded answer is free: never refused)
        call = tel.start_call(ep.operation, ep.provider, check_budget=answer is None, **p.start)
        token = _replaying.PENDING.set(answer) if answer is not None else None
        try:
            if call is None:
                return wrapped(*args, **kwargs)
            mark(call, p, book, answer)
            with call.sending():
                result = wrapped(*args, **kwargs)
        finally:
            if token is not None:
                _replaying.PENDING.reset(token)
        return finish_sync(ep, p, call, result)

    return wrapper


def async_wrapper(ep: Endpoint, tel: Telemetry = GLOBAL) -> Callable[..., Any]:
    async def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        p = plan(ep, instance, kwargs)
        if p is None:
            return await wrapped(*args, **kwargs)
        hit = serve_from_cache(ep, p, tel)
        if hit is not None:
            return hit
        book, answer = replay_answer(p)
        call = tel.start_call(ep.operation, ep.provider, check_budget=answer is None, **p.start)
        token = _replaying.PENDING.set(answer) if answer is not None else None
        try:
            if call is None:
                return await wrapped(*args, **kwargs)
            mark(call, p, book, answer)
            with call.sending():
                result = await wrapped(*args, **kwargs)
        finally:
            if token is not None:
                _replaying.PENDING.reset(token)
        return await finish_async(ep, p, call, result)

    return wrapper


def server_of(instance: Any) -> tuple[str | None, int | None]:
    try:
        url = instance._client.base_url
        return url.host, url.port
    except Exception:
        return None, None


_MODEL, _MAPPING, _OBJECT = 1, 2, 3
# type -> how get() reads it; decided once per type instead of isinstance checks per read
_KINDS: dict[type, int] = {dict: _MAPPING}
# (pydantic model class, name) -> whether the class itself defines the name (method, property)
_CLASS_ATTRS: dict[tuple[type, str], bool] = {}
_MAX_TYPES = 2048
_MISSING = object()
_NO_DICT: dict[str, Any] = {}


def _kind_of(cls: type) -> int:
    if issubclass(cls, BaseModel):  # the clients' response types (checked before Mapping)
        kind = _MODEL
    elif issubclass(cls, Mapping):
        kind = _MAPPING
    else:
        kind = _OBJECT
    if len(_KINDS) < _MAX_TYPES:
        _KINDS[cls] = kind
    return kind


def _model_get(obj: Any, name: str) -> Any:
    """``getattr(obj, name, None)`` for a pydantic model, without raising inside pydantic on a miss.

    Fields live in the instance ``__dict__``; a name the response does not have
    (``input_tokens`` on a chat usage) would otherwise cost pydantic's
    ``__getattr__`` building and raising an AttributeError each time.
    """
    value = getattr(obj, "__dict__", _NO_DICT).get(name, _MISSING)
    if value is not _MISSING:
        return value
    if name.startswith("_"):
        return getattr(obj, name, None)
    cls = type(obj)
    key = (cls, name)
    on_class = _CLASS_ATTRS.get(key)
    if on_class is None:
        on_class = any(name in vars(k) for k in cls.__mro__)
        if len(_CLASS_ATTRS) < _MAX_TYPES:
            _CLASS_ATTRS[key] = on_class
    if on_class:
        return getattr(obj, name, None)
    extra = getattr(obj, "__pydantic_extra__", None)
    if extra:
        return extra.get(name)
    return None


def get(obj: Any, name: str) -> Any:
    """Attribute or key: responses are pydantic objects, but tests and users pass dicts."""
    if obj is None:
        return None
    kind = _KINDS.get(type(obj)) or _kind_of(type(obj))
    if kind == _MODEL:
        return _model_get(obj, name)
    if kind == _MAPPING:
        return obj.get(name)
    return getattr(obj, name, None)
