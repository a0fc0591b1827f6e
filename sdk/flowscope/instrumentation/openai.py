"""Instrumentation for the ``openai`` client library.

Patched at class level (like opentelemetry-python-contrib), so clients created
before ``init()`` are covered as well as clients created after. Covered:
``chat.completions.create`` / ``.parse`` / ``.stream``, ``responses.create`` /
``.parse`` / ``.stream``, ``embeddings.create``, sync and async, plus the
client's own retries (see ``flowscope.instrumentation._retries``). The ``.stream()`` helpers
call ``create(stream=True)`` underneath, so they are traced through it; we only
hook their ``close()``, which closes the HTTP response behind our proxy's back.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection
from typing import Any

from .. import config
from ..core import semconv
from ..core.pricing import Usage
from ..llm import LLMCall
from . import _tokens as tokens
from ._base import FlowscopeInstrumentor, Telemetry, import_class
from ._call import Endpoint, async_wrapper, get, server_of, sync_wrapper
from ._retries import instrument_client_retries, uninstrument_client_retries
from ._stream import StreamObserver, helper_close_async, helper_close_sync

logger = logging.getLogger("flowscope")

PROVIDER = "openai"


def usage_from_openai(usage: Any) -> Usage | None:
    """OpenAI's prompt_tokens already includes cached tokens: no adding back."""
    if usage is None:
        return None
    prompt = get(usage, "prompt_tokens")
    if prompt is None or get(usage, "input_tokens") is not None:  # Responses API names
        prompt = get(usage, "input_tokens") or 0
        completion = get(usage, "output_tokens") or 0
        in_details = get(usage, "input_tokens_details")
        out_details = get(usage, "output_tokens_details")
    else:
        completion = get(usage, "completion_tokens") or 0
        in_details = get(usage, "prompt_tokens_details")
        out_details = get(usage, "completion_tokens_details")
    return Usage(
        input_tokens=int(prompt or 0),
        output_tokens=int(completion or 0),
        cache_read_tokens=int(get(in_details, "cached_tokens") or 0),
        # newer models: prompt_tokens_details / input_tokens_details.cache_write_tokens
        cache_write_tokens=int(get(in_details, "cache_write_tokens") or 0),
        reasoning_tokens=int(get(out_details, "reasoning_tokens") or 0),
        input_audio_tokens=int(get(in_details, "audio_tokens") or 0),
        input_image_tokens=int(get(in_details, "image_tokens") or 0),
        output_audio_tokens=int(get(out_details, "audio_tokens") or 0),
        output_image_tokens=int(get(out_details, "image_tokens") or 0),
    )


def _tier(value: Any) -> str | None:
    """The served ``service_tier`` (chat, its stream chunks, Responses), or None."""
    return value if isinstance(value, str) and value else None


def _messages_for_estimate(kwargs: dict[str, Any]) -> list[Any]:
    """Chat ``messages``, or the Responses API's ``instructions`` + ``input`` as messages."""
    messages = kwargs.get("messages")
    if isinstance(messages, (list, tuple)):
        return list(messages)
    out: list[Any] = []
    instructions = kwargs.get("instructions")
    if isinstance(instructions, str):
        out.append({"role": "system", "content": instructions})
    inp = kwargs.get("input")
    if isinstance(inp, str):
        out.append({"role": "user", "content": inp})
    elif isinstance(inp, (list, tuple)):
        out.extend(inp)
    return out


def _estimate(call: LLMCall, model: str | None, kwargs: dict[str, Any], text: str) -> Usage | None:
    model = model or call.request_model
    prompt = tokens.estimate_messages_tokens(_messages_for_estimate(kwargs), model)
    completion = tokens.estimate_tokens(text, model)
    if prompt is None or completion is None:
        return None
    return Usage(input_tokens=prompt, output_tokens=completion)


# --- chat completions ------------------------------------------------------------


def _chat_start(instance: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    host, port = server_of(instance)
    return {
        "request_model": kwargs.get("model"),
        "params": kwargs,
        "server_address": host,
        "server_port": port,
        "input_messages": kwargs.get("messages"),
    }


def _chat_finish(call: LLMCall, response: Any, cache_hit: bool) -> None:
    choices = get(response, "choices") or []
    reasons = []
    for choice in choices:
        reason = get(choice, "finish_reason")
        if reason:
            reasons.append(reason)
    call.finish(
        response_model=get(response, "model"),
        usage=usage_from_openai(get(response, "usage")),
        finish_reasons=reasons,
        response_id=get(response, "id"),
        # only read when content is captured
        output_messages=[get(c, "message") for c in choices] if choices and config.current.capture_content else None,
        cache_hit=cache_hit,
        service_tier=_tier(get(response, "service_tier")),
        provider_cost_usd=get(get(response, "usage"), "cost"),
    )


class ChatStreamObserver(StreamObserver):
    """Reads usage from the final chunk; estimates it locally when the stream has none."""

    def __init__(self, call: LLMCall, kwargs: dict[str, Any]) -> None:
        super().__init__(call)
        self.kwargs = kwargs
        self.model: str | None = None
        self.response_id: str | None = None
        self.usage: Any = None
        self.service_tier: str | None = None
        self.finish_reasons: list[str] = []
        self.text: list[str] = []
        # tool calls streamed in pieces, by index: only kept with content capture (a replay's answer)
        self.keep_calls = config.current.capture_content
        self.tool_calls: dict[int, dict[str, Any]] = {}

    def _add_tool_calls(self, deltas: Any) -> None:
        for delta in deltas:
            index = get(delta, "index")
            call = self.tool_calls.setdefault(index if isinstance(index, int) else len(self.tool_calls),
                                              {"id": None, "type": "function",
                                               "function": {"name": "", "arguments": ""}})
            call["id"] = get(delta, "id") or call["id"]
            fn = get(delta, "function")
            call["function"]["name"] += get(fn, "name") or ""
            call["function"]["arguments"] += get(fn, "arguments") or ""

    def on_chunk(self, chunk: Any) -> None:
        self.call.first_chunk()
        self.model = get(chunk, "model") or self.model
        self.response_id = get(chunk, "id") or self.response_id
        self.service_tier = _tier(get(chunk, "service_tier")) or self.service_tier
        usage = get(chunk, "usage")
        if usage is not None:
            self.usage = usage
        for choice in get(chunk, "choices") or []:
            reason = get(choice, "finish_reason")
            if reason:
                self.finish_reasons.append(reason)
            delta = get(choice, "delta")
            content = get(delta, "content")
            if content:
                self.text.append(content)
            if self.keep_calls:
                calls = get(delta, "tool_calls")
                if calls:
                    self._add_tool_calls(calls)

    def on_end(self) -> None:
        usage = usage_from_openai(self.usage)
        estimated = False
        text = "".join(self.text)
        if usage is None:
            usage = _estimate(self.call, self.model, self.kwargs, text)
            estimated = usage is not None
        self.call.finish(
            response_model=self.model,
            usage=usage,
            finish_reasons=self.finish_reasons,
            response_id=self.response_id,
            estimated=estimated,
            service_tier=self.service_tier,
            provider_cost_usd=get(self.usage, "cost"),
            output_messages=[{"role": "assistant", "content": text,
                              **({"tool_calls": [self.tool_calls[i] for i in sorted(self.tool_calls)]}
                                 if self.tool_calls else {})}],
        )


def _revive_chat_parse(cached: Any, kwargs: dict[str, Any]) -> Any:
    """Run the client's own parser again so ``message.parsed`` is the caller's class.

    The cached form is plain JSON, so the client-side ``parsed`` fields are
    dropped first and rebuilt from the message text exactly as ``parse`` does.
    """
    from openai import omit
    from openai.lib._parsing._completions import parse_chat_completion
    from openai.types.chat import ChatCompletion

    data = cached.model_dump(mode="json", warnings=False)
    for choice in data.get("choices") or []:
        message = choice.get("message") or {}
        message.pop("parsed", None)
        for tool_call in message.get("tool_calls") or []:
            (tool_call.get("function") or {}).pop("parsed_arguments", None)
    return parse_chat_completion(
        response_format=kwargs.get("response_format", omit),
        input_tools=kwargs.get("tools", omit),
        chat_completion=ChatCompletion.model_validate(data),
    )


CHAT = Endpoint(PROVIDER, semconv.OP_CHAT, _chat_start, _chat_finish, ChatStreamObserver, api="chat.completions")
CHAT_PARSE = Endpoint(
    PROVIDER, semconv.OP_CHAT, _chat_start, _chat_finish, api="chat.completions.parse", revive=_revive_chat_parse
)


# --- responses -------------------------------------------------------------------


def _responses_start(instance: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    host, port = server_of(instance)
    return {
        "request_model": kwargs.get("model"),
        "params": kwargs,
        "server_address": host,
        "server_port": port,
        "input_messages": _messages_for_estimate(kwargs) or None,
    }


def _with_tool_calls(usage: Usage | None, response: Any) -> Usage | None:
    """Responses' server-side tool calls (``web_search_call``, ``file_search_call`` output items)."""
    if usage is None:
        return None
    web = files = 0
    for item in get(response, "output") or ():
        kind = get(item, "type")
        if kind == "web_search_call":
            web += 1
        elif kind == "file_search_call":
            files += 1
    if not web and not files:
        return usage
    return dataclasses.replace(usage, web_search_requests=web, file_search_requests=files)


def _responses_finish(call: LLMCall, response: Any, cache_hit: bool) -> None:
    status = get(response, "status")
    call.finish(
        response_model=get(response, "model"),
        usage=_with_tool_calls(usage_from_openai(get(response, "usage")), response),
        finish_reasons=[status] if isinstance(status, str) else None,
        response_id=get(response, "id"),
        output_messages=_output_text(response),
        cache_hit=cache_hit,
        service_tier=_tier(get(response, "service_tier")),
    )


def _output_text(response: Any) -> list[dict[str, Any]] | None:
    try:
        text = response.output_text
    except Exception:
        return None
    return [{"role": "assistant", "content": text}] if isinstance(text, str) else None


class ResponsesStreamObserver(StreamObserver):
    """Usage arrives on the terminal ``response.completed`` / ``.incomplete`` / ``.failed`` event."""

    def __init__(self, call: LLMCall, kwargs: dict[str, Any]) -> None:
        super().__init__(call)
        self.kwargs = kwargs
        self.response: Any = None
        self.model: str | None = None
        self.text: list[str] = []

    def on_chunk(self, event: Any) -> None:
        self.call.first_chunk()
        kind = get(event, "type") or ""
        response = get(event, "response")
        if response is not None:
            self.model = get(response, "model") or self.model
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                self.response = response
        elif kind == "response.output_text.delta":
            delta = get(event, "delta")
            if isinstance(delta, str):
                self.text.append(delta)

    def on_end(self) -> None:
        response = self.response
        usage = _with_tool_calls(usage_from_openai(get(response, "usage")), response)
        estimated = False
        if usage is None:
            usage = _estimate(self.call, self.model, self.kwargs, "".join(self.text))
            estimated = usage is not None
        status = get(response, "status")
        self.call.finish(
            service_tier=_tier(get(response, "service_tier")),
            response_model=get(response, "model") or self.model,
            usage=usage,
            finish_reasons=[status] if isinstance(status, str) else None,
            response_id=get(response, "id"),
            estimated=estimated,
            output_messages=[{"role": "assistant", "content": "".join(self.text)}],
        )


def _revive_responses_parse(cached: Any, kwargs: dict[str, Any]) -> Any:
    from openai import omit
    from openai.lib._parsing._responses import parse_response
    from openai.types.responses import Response

    data = cached.model_dump(mode="json", warnings=False)
    data.pop("output_parsed", None)
    for item in data.get("output") or []:
        item.pop("parsed_arguments", None)
        for part in item.get("content") or []:
            if isinstance(part, dict):
                part.pop("parsed", None)
    return parse_response(
        text_format=kwargs.get("text_format", omit),
        input_tools=kwargs.get("tools", omit),
        response=Response.model_validate(data),
    )


RESPONSES = Endpoint(
    PROVIDER, semconv.OP_CHAT, _responses_start, _responses_finish, ResponsesStreamObserver, api="responses"
)
BETA_RESPONSES = Endpoint(
    PROVIDER, semconv.OP_CHAT, _responses_start, _responses_finish, ResponsesStreamObserver, api="beta.responses"
)
RESPONSES_PARSE = Endpoint(
    PROVIDER, semconv.OP_CHAT, _responses_start, _responses_finish, api="responses.parse",
    revive=_revive_responses_parse,
)


# --- embeddings ------------------------------------------------------------------


def _embeddings_start(instance: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    host, port = server_of(instance)
    return {"request_model": kwargs.get("model"), "server_address": host, "server_port": port}


def _embeddings_finish(call: LLMCall, response: Any, cache_hit: bool) -> None:
    usage = get(response, "usage")
    prompt = get(usage, "prompt_tokens")
    call.finish(
        response_model=get(response, "model"),
        usage=Usage(input_tokens=int(prompt or 0)) if usage is not None else None,
        cache_hit=cache_hit,
    )


EMBEDDINGS = Endpoint(PROVIDER, semconv.OP_EMBEDDINGS, _embeddings_start, _embeddings_finish, api="embeddings")


# --- instrumentor ----------------------------------------------------------------

# (module, sync class, async class, method, endpoint); missing ones are skipped,
# so older/newer client versions lose a method, never the whole instrumentation.
_TARGETS: tuple[tuple[str, str, str, str, Endpoint], ...] = (
    ("openai.resources.chat.completions.completions", "Completions", "AsyncCompletions", "create", CHAT),
    ("openai.resources.chat.completions.completions", "Completions", "AsyncCompletions", "parse", CHAT_PARSE),
    ("openai.resources.responses.responses", "Responses", "AsyncResponses", "create", RESPONSES),
    ("openai.resources.responses.responses", "Responses", "AsyncResponses", "parse", RESPONSES_PARSE),
    ("openai.resources.beta.responses.responses", "Responses", "AsyncResponses", "create", BETA_RESPONSES),
    ("openai.resources.embeddings", "Embeddings", "AsyncEmbeddings", "create", EMBEDDINGS),
)
_HELPER_STREAMS: tuple[tuple[str, str, bool], ...] = (
    ("openai.lib.streaming.chat._completions", "ChatCompletionStream", False),
    ("openai.lib.streaming.chat._completions", "AsyncChatCompletionStream", True),
    ("openai.lib.streaming.responses._responses", "ResponseStream", False),
    ("openai.lib.streaming.responses._responses", "AsyncResponseStream", True),
)


class OpenAIInstrumentor(FlowscopeInstrumentor):
    """Traces ``openai`` chat, responses and embeddings calls (sync, async, streaming)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("openai >= 1.40",)

    def _instrument(self, **kwargs: Any) -> None:
        tel = Telemetry.from_kwargs(kwargs)
        for module, sync_cls, async_cls, method, ep in _TARGETS:
            for cls_name, make in ((sync_cls, sync_wrapper), (async_cls, async_wrapper)):
                cls = import_class(module, cls_name)
                if cls is not None and hasattr(cls, method):
                    self.wrap(cls, method, make(ep, tel))
        for module, cls_name, is_async in _HELPER_STREAMS:
            cls = import_class(module, cls_name)
            if cls is not None and hasattr(cls, "close"):
                self.wrap(cls, "close", helper_close_async if is_async else helper_close_sync)
        instrument_client_retries("openai")

    def _uninstrument(self, **kwargs: Any) -> None:
        self.unwrap_all()
        uninstrument_client_retries("openai")
