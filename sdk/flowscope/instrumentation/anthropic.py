"""Instrumentation for the ``anthropic`` client library.

Covered: ``messages.create`` (with and without ``stream=True``),
``messages.parse`` and the ``messages.stream()`` helper, sync and async, for
``client.messages`` and ``client.beta.messages``, plus the client's own
retries (see ``flowscope.instrumentation._retries``).

Anthropic reports ``input_tokens`` WITHOUT cached input; we add
``cache_read_input_tokens`` and ``cache_creation_input_tokens`` back so that
``gen_ai.usage.input_tokens`` means the same thing for every provider. In a
stream, ``message_start`` carries the first usage and every ``message_delta``
repeats the cumulative counts: each overwrites, nothing is summed.

``anthropic>=2`` traces its own API calls when a global TracerProvider exists,
with ``gen_ai.operation.name=chat``. Inside our LLM span that span is the
HTTP-level view of the same call, so we tag it ``flowscope.span.kind=http``
and it is never counted or priced twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection
from typing import Any

from .. import _replaying, config
from ..core import semconv
from ..core.pricing import Usage
from ..llm import KIND_PROVIDER_HTTP, LLMCall, current_call
from . import _tokens as tokens
from ._base import FlowscopeInstrumentor, Telemetry, import_class
from ._call import Endpoint, async_wrapper, get, mark, plan, replay_answer, server_of, sync_wrapper
from ._retries import instrument_client_retries, uninstrument_client_retries
from ._stream import AsyncStreamProxy, StreamObserver, SyncStreamProxy

logger = logging.getLogger("flowscope")

PROVIDER = "anthropic"


def usage_from_anthropic(usage: Any) -> Usage | None:
    """Anthropic's input_tokens excludes cache reads and writes: add them back."""
    if usage is None:
        return None
    uncached = int(get(usage, "input_tokens") or 0)
    cache_read = int(get(usage, "cache_read_input_tokens") or 0)
    cache_write = int(get(usage, "cache_creation_input_tokens") or 0)
    # By lifetime (``cache_creation``): 5-minute writes at 1.25x input, 1-hour writes at 2x.
    by_ttl = get(usage, "cache_creation")
    write_5m = int(get(by_ttl, "ephemeral_5m_input_tokens") or 0)
    write_1h = int(get(by_ttl, "ephemeral_1h_input_tokens") or 0)
    cache_write = max(cache_write, write_5m + write_1h)
    tools = get(usage, "server_tool_use")  # server-side tools, billed per request
    output = int(get(usage, "output_tokens") or 0)
    thinking = int(get(get(usage, "output_tokens_details"), "thinking_tokens") or 0)
    return Usage(
        input_tokens=uncached + cache_read + cache_write,
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=min(thinking, output),
        cache_write_1h_tokens=write_1h,
        web_search_requests=int(get(tools, "web_search_requests") or 0),
        web_fetch_requests=int(get(tools, "web_fetch_requests") or 0),
    )


def _input_messages(kwargs: dict[str, Any]) -> list[Any]:
    messages = kwargs.get("messages")
    out: list[Any] = []
    system = kwargs.get("system")
    if isinstance(system, str):
        out.append({"role": "system", "content": system})
    elif isinstance(system, (list, tuple)):
        out.append({"role": "system", "content": list(system)})
    if isinstance(messages, (list, tuple)):
        out.extend(messages)
    return out


def _start(instance: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    host, port = server_of(instance)
    return {
        "request_model": kwargs.get("model"),
        "params": kwargs,
        "server_address": host,
        "server_port": port,
        "input_messages": _input_messages(kwargs) or None,
    }


def _text_of(content: Any) -> str:
    parts = []
    for block in content or []:
        if get(block, "type") == "text":
            parts.append(get(block, "text") or "")
    return "".join(parts)


def _output(message: Any) -> list[dict[str, Any]]:
    """The answer as recorded with content capture: its text, and its ``tool_use`` blocks as tool calls."""
    content = get(message, "content")
    out: dict[str, Any] = {"role": "assistant", "content": _text_of(content)}
    calls = [{"id": get(b, "id"), "name": get(b, "name"), "arguments": get(b, "input")}
             for b in content or [] if get(b, "type") == "tool_use"]
    if calls:
        out["tool_calls"] = calls
    return [out]


def _finish(call: LLMCall, message: Any, cache_hit: bool) -> None:
    stop = get(message, "stop_reason")
    call.finish(
        response_model=get(message, "model"),
        usage=usage_from_anthropic(get(message, "usage")),
        finish_reasons=[stop] if isinstance(stop, str) else None,
        response_id=get(message, "id"),
        output_messages=_output(message) if config.current.capture_content else None,
        cache_hit=cache_hit,
        service_tier=_tier(get(message, "usage")),
    )


def _tier(usage: Any) -> str | None:
    """``usage.service_tier``: standard, priority or batch."""
    tier = get(usage, "service_tier")
    return tier if isinstance(tier, str) and tier else None


class MessageStreamObserver(StreamObserver):
    """Usage from ``message_start``, overwritten field by field by each ``message_delta``."""

    _FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")

    def __init__(self, call: LLMCall, kwargs: dict[str, Any]) -> None:
        super().__init__(call)
        self.kwargs = kwargs
        self.model: str | None = None
        self.response_id: str | None = None
        self.usage: dict[str, Any] | None = None
        self.stop_reason: str | None = None
        self.text: list[str] = []
        # tool_use blocks by index, their input JSON in pieces: only kept with content capture
        self.keep_calls = config.current.capture_content
        self.tool_calls: dict[int, dict[str, Any]] = {}

    def _merge_usage(self, usage: Any) -> None:
        if usage is None:
            return
        merged = dict(self.usage or {})
        for name in self._FIELDS:
            value = get(usage, name)
            if value is not None:
                merged[name] = value
        details = get(usage, "output_tokens_details")
        if details is not None:
            merged["output_tokens_details"] = {"thinking_tokens": get(details, "thinking_tokens")}
        tools = get(usage, "server_tool_use")
        if tools is not None:
            merged["server_tool_use"] = {
                key: get(tools, key) for key in ("web_search_requests", "web_fetch_requests")
            }
        tier = get(usage, "service_tier")
        if tier is not None:
            merged["service_tier"] = tier
        by_ttl = get(usage, "cache_creation")  # message_start, and message_delta where it repeats it
        if by_ttl is not None:
            merged["cache_creation"] = {
                key: get(by_ttl, key) for key in ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")
            }
        self.usage = merged

    def on_chunk(self, event: Any) -> None:
        self.call.first_chunk()
        kind = get(event, "type")
        if kind == "message_start":
            message = get(event, "message")
            self.model = get(message, "model") or self.model
            self.response_id = get(message, "id") or self.response_id
            self._merge_usage(get(message, "usage"))
        elif kind == "content_block_delta":
            delta = get(event, "delta")
            if get(delta, "type") == "text_delta":
                self.text.append(get(delta, "text") or "")
            elif self.keep_calls and get(delta, "type") == "input_json_delta":
                call = self.tool_calls.get(get(event, "index"))
                if call is not None:
                    call["json"].append(get(delta, "partial_json") or "")
        elif kind == "content_block_start" and self.keep_calls:
            block = get(event, "content_block")
            if get(block, "type") == "tool_use":
                self.tool_calls[get(event, "index")] = {"id": get(block, "id"), "name": get(block, "name"),
                                                        "json": []}
        elif kind == "message_delta":
            self.stop_reason = get(get(event, "delta"), "stop_reason") or self.stop_reason
            self._merge_usage(get(event, "usage"))

    def on_end(self) -> None:
        usage = usage_from_anthropic(self.usage)
        estimated = False
        text = "".join(self.text)
        if usage is None:  # the stream died before message_start
            model = self.model or self.call.request_model
            prompt = tokens.estimate_messages_tokens(_input_messages(self.kwargs), model)
            completion = tokens.estimate_tokens(text, model)
            if prompt is not None and completion is not None:
                usage = Usage(input_tokens=prompt, output_tokens=completion)
                estimated = True
        self.call.finish(
            response_model=self.model,
            usage=usage,
            service_tier=_tier(self.usage),
            finish_reasons=[self.stop_reason] if self.stop_reason else None,
            response_id=self.response_id,
            estimated=estimated,
            output_messages=[self._output(text)],
        )

    def _output(self, text: str) -> dict[str, Any]:
        out: dict[str, Any] = {"role": "assistant", "content": text}
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c["id"], "name": c["name"], "arguments": _json_object("".join(c["json"]))}
                for _, c in sorted(self.tool_calls.items(), key=lambda item: item[0] or 0)
            ]
        return out


def _json_object(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return text  # a stream cut inside the arguments: kept as the text received


def _revive_parse(cached: Any, kwargs: dict[str, Any]) -> Any:
    """Run the client's own parser again so ``parsed_output`` is the caller's class."""
    from anthropic import NOT_GIVEN
    from anthropic.lib._parse._response import parse_response
    from anthropic.types import Message

    data = cached.model_dump(mode="json", warnings=False)
    for block in data.get("content") or []:
        if isinstance(block, dict):
            block.pop("parsed_output", None)
    output_format = kwargs.get("output_format")
    return parse_response(
        output_format=output_format if output_format is not None else NOT_GIVEN,
        response=Message.model_validate(data),
    )


MESSAGES = Endpoint(PROVIDER, semconv.OP_CHAT, _start, _finish, MessageStreamObserver, api="messages")
MESSAGES_PARSE = Endpoint(PROVIDER, semconv.OP_CHAT, _start, _finish, api="messages.parse", revive=_revive_parse)
# beta.messages returns Beta* types: its own cache entries, and parse() is traced, not cached
BETA_MESSAGES = Endpoint(PROVIDER, semconv.OP_CHAT, _start, _finish, MessageStreamObserver, api="beta.messages")
BETA_MESSAGES_PARSE = Endpoint(PROVIDER, semconv.OP_CHAT, _start, _finish, api="beta.messages.parse",
                               cacheable=False)


# --- messages.stream() helper ------------------------------------------------------


def _traced_request_sync(api_request: Any, instance: Any, kwargs: dict[str, Any], tel: Telemetry) -> Any:
    """Replaces the helper's deferred request: runs when the ``with`` block is entered."""

    def request() -> Any:
        p = plan(MESSAGES, instance, kwargs, stream=True)
        book, answer = replay_answer(p) if p is not None else (None, None)
        call = tel.start_call(MESSAGES.operation, PROVIDER, check_budget=answer is None, **p.start) \
            if p is not None else None
        token = _replaying.PENDING.set(answer) if answer is not None else None
        try:
            if call is None or p is None:
                return api_request()
            mark(call, p, book, answer)
            with call.sending():
                raw = api_request()
        finally:
            if token is not None:
                _replaying.PENDING.reset(token)
        return SyncStreamProxy(raw, MessageStreamObserver(call, kwargs))

    return request


async def _traced_request_async(api_request: Any, instance: Any, kwargs: dict[str, Any], tel: Telemetry) -> Any:
    p = plan(MESSAGES, instance, kwargs, stream=True)
    try:
        book, answer = replay_answer(p) if p is not None else (None, None)
        call = tel.start_call(MESSAGES.operation, PROVIDER, check_budget=answer is None, **p.start) \
            if p is not None else None
    except BaseException:
        _close_awaitable(api_request)
        raise
    if call is None or p is None:
        return await api_request
    mark(call, p, book, answer)
    token = _replaying.PENDING.set(answer) if answer is not None else None
    try:
        with call.sending():
            raw = await api_request
    finally:
        if token is not None:
            _replaying.PENDING.reset(token)
    return AsyncStreamProxy(raw, MessageStreamObserver(call, kwargs))


def _close_awaitable(awaitable: Any) -> None:
    """A refused call never awaits the client's request coroutine; close it so Python
    does not warn that it was never awaited."""
    close = getattr(awaitable, "close", None)
    if callable(close):
        try:
            close()
        except Exception:
            pass


def _manager_attr(manager: Any) -> str | None:
    for klass in type(manager).__mro__:
        name = f"_{klass.__name__}__api_request"
        if hasattr(manager, name):
            return name
    return None


def _stream_hook(traced_request: Callable[..., Any], tel: Telemetry) -> Callable[..., Any]:
    """``messages.stream`` returns a manager that sends the request on enter; trace that request."""

    def hook(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        manager = wrapped(*args, **kwargs)
        try:
            attr = _manager_attr(manager)
            if attr is not None:
                setattr(manager, attr, traced_request(getattr(manager, attr), instance, kwargs, tel))
        except Exception:
            logger.debug("flowscope: could not trace anthropic messages.stream", exc_info=True)
        return manager

    return hook


# --- the client's own call spans ------------------------------------------------------


def _own_span(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    span = wrapped(*args, **kwargs)
    try:
        if span is not None and current_call() is not None and span.is_recording():
            span.set_attribute(semconv.SPAN_KIND, KIND_PROVIDER_HTTP)
    except Exception:
        logger.debug("flowscope: could not tag anthropic's own span", exc_info=True)
    return span


# --- instrumentor ----------------------------------------------------------------

# module -> (endpoint of create(), endpoint of parse())
_MODULES = {
    "anthropic.resources.messages.messages": (MESSAGES, MESSAGES_PARSE),
    "anthropic.resources.beta.messages.messages": (BETA_MESSAGES, BETA_MESSAGES_PARSE),
}


class AnthropicInstrumentor(FlowscopeInstrumentor):
    """Traces ``anthropic`` Messages calls (sync, async, streaming, the stream helper)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("anthropic >= 0.40",)

    def _instrument(self, **kwargs: Any) -> None:
        tel = Telemetry.from_kwargs(kwargs)
        stream_sync = _stream_hook(_traced_request_sync, tel)
        stream_async = _stream_hook(_traced_request_async, tel)
        for module, (create_ep, parse_ep) in _MODULES.items():
            for cls_name, is_async in (("Messages", False), ("AsyncMessages", True)):
                cls = import_class(module, cls_name)
                if cls is None:
                    continue
                methods = (
                    ("create", async_wrapper(create_ep, tel) if is_async else sync_wrapper(create_ep, tel)),
                    ("parse", async_wrapper(parse_ep, tel) if is_async else sync_wrapper(parse_ep, tel)),
                    ("stream", stream_async if is_async else stream_sync),
                )
                for method, hook in methods:
                    if hasattr(cls, method):
                        self.wrap(cls, method, hook)
        base = import_class("anthropic", "_base_client")
        if base is not None and hasattr(base, "start_api_call_span"):
            self.wrap(base, "start_api_call_span", _own_span)
        instrument_client_retries("anthropic")

    def _uninstrument(self, **kwargs: Any) -> None:
        self.unwrap_all()
        uninstrument_client_retries("anthropic")
