"""Instrumentation for the ``openai`` client library.

Patched at class level (like opentelemetry-python-contrib), so clients created
before ``init()`` are covered as well as clients created after.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap

from .. import semconv, tokens
from ..llm import LLMCall, start_call
from ..pricing import Usage
from ._stream import AsyncStreamProxy, StreamObserver, SyncStreamProxy

logger = logging.getLogger("flowscope")

PROVIDER = "openai"
_CHAT_MODULE = "openai.resources.chat.completions.completions"


def usage_from_openai(usage: Any) -> Usage | None:
    """OpenAI's prompt_tokens already includes cached tokens: no adding back."""
    if usage is None:
        return None
    prompt = _get(usage, "prompt_tokens")
    if prompt is None:  # Responses API names
        prompt = _get(usage, "input_tokens") or 0
        completion = _get(usage, "output_tokens") or 0
        in_details = _get(usage, "input_tokens_details")
        out_details = _get(usage, "output_tokens_details")
    else:
        completion = _get(usage, "completion_tokens") or 0
        in_details = _get(usage, "prompt_tokens_details")
        out_details = _get(usage, "completion_tokens_details")
    return Usage(
        input_tokens=int(prompt or 0),
        output_tokens=int(completion or 0),
        cache_read_tokens=int(_get(in_details, "cached_tokens") or 0),
        reasoning_tokens=int(_get(out_details, "reasoning_tokens") or 0),
    )


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _server(instance: Any) -> tuple[str | None, int | None]:
    try:
        url = instance._client.base_url
        return url.host, url.port
    except Exception:
        return None, None


def _start_chat(instance: Any, kwargs: dict[str, Any]) -> LLMCall | None:
    host, port = _server(instance)
    return start_call(
        semconv.OP_CHAT,
        PROVIDER,
        kwargs.get("model"),
        kwargs,
        server_address=host,
        server_port=port,
        stream=bool(kwargs.get("stream")),
        input_messages=kwargs.get("messages"),
    )


def _finish_chat(call: LLMCall, response: Any) -> None:
    choices = _get(response, "choices") or []
    call.finish(
        response_model=_get(response, "model"),
        usage=usage_from_openai(_get(response, "usage")),
        finish_reasons=[c.finish_reason for c in choices if getattr(c, "finish_reason", None)],
        response_id=_get(response, "id"),
        output_messages=[_get(c, "message") for c in choices] if choices else None,
    )


class ChatStreamObserver(StreamObserver):
    """Reads usage from the final chunk; estimates it locally when the stream has none."""

    def __init__(self, call: LLMCall, messages: Any) -> None:
        super().__init__(call)
        self.messages = messages
        self.model: str | None = None
        self.response_id: str | None = None
        self.usage: Any = None
        self.finish_reasons: list[str] = []
        self.text: list[str] = []

    def on_chunk(self, chunk: Any) -> None:
        self.call.first_chunk()
        self.model = _get(chunk, "model") or self.model
        self.response_id = _get(chunk, "id") or self.response_id
        usage = _get(chunk, "usage")
        if usage is not None:
            self.usage = usage
        for choice in _get(chunk, "choices") or []:
            reason = _get(choice, "finish_reason")
            if reason:
                self.finish_reasons.append(reason)
            delta = _get(choice, "delta")
            content = _get(delta, "content")
            if content:
                self.text.append(content)

    def on_end(self) -> None:
        usage = usage_from_openai(self.usage)
        estimated = False
        if usage is None:
            model = self.model or self.call.request_model
            prompt = tokens.estimate_messages_tokens(self.messages or [], model)
            completion = tokens.estimate_tokens("".join(self.text), model)
            if prompt is not None and completion is not None:
                usage = Usage(input_tokens=prompt, output_tokens=completion)
                estimated = True
        self.call.finish(
            response_model=self.model,
            usage=usage,
            finish_reasons=self.finish_reasons,
            response_id=self.response_id,
            estimated=estimated,
            output_messages=[{"role": "assistant", "content": "".join(self.text)}],
        )


def _chat_create(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    call = _start_chat(instance, kwargs)
    if call is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        call.fail(exc)
        raise
    try:
        if kwargs.get("stream"):
            return SyncStreamProxy(result, ChatStreamObserver(call, kwargs.get("messages")))
        _finish_chat(call, result)
    except Exception:
        logger.debug("flowscope: openai response handling failed", exc_info=True)
    return result


async def _achat_create(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    call = _start_chat(instance, kwargs)
    if call is None:
        return await wrapped(*args, **kwargs)
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        call.fail(exc)
        raise
    try:
        if kwargs.get("stream"):
            return AsyncStreamProxy(result, ChatStreamObserver(call, kwargs.get("messages")))
        _finish_chat(call, result)
    except Exception:
        logger.debug("flowscope: openai response handling failed", exc_info=True)
    return result


class OpenAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces ``openai`` chat completions (sync, async, streaming) as ``chat {model}`` spans."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("openai >= 1.40",)

    def _instrument(self, **kwargs: Any) -> None:
        wrapt.wrap_function_wrapper(_CHAT_MODULE, "Completions.create", _chat_create)
        wrapt.wrap_function_wrapper(_CHAT_MODULE, "AsyncCompletions.create", _achat_create)

    def _uninstrument(self, **kwargs: Any) -> None:
        import openai.resources.chat.completions.completions as mod

        unwrap(mod.Completions, "create")
        unwrap(mod.AsyncCompletions, "create")
