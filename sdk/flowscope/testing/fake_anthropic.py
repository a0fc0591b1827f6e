"""Anthropic wire format for the fake provider: ``POST /v1/messages`` (+ ``count_tokens``).

Pure ``(RecordedRequest, Reply) -> FakeResponse`` renderers. The stream reproduces the real
event sequence, including the details instrumentation most often gets wrong: usage is split
between ``message_start`` (input + cache counters, a provisional ``output_tokens``) and
``message_delta`` (cumulative totals, which overwrite rather than add), and Anthropic's
``input_tokens`` EXCLUDES cache reads and writes.
"""

from __future__ import annotations

import json
from typing import Any

from .fake_common import (
    FakeResponse,
    RecordedRequest,
    Reply,
    json_response,
    new_id,
    retry_headers,
    split_json,
    split_text,
    sse,
    sse_response,
)

__all__ = ["render_count_tokens", "render_error", "render_messages"]

_ERROR_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit (fake provider).",
    ),
    500: ("api_error", "An unexpected error has occurred internal to Anthropic's systems."),
    529: ("overloaded_error", "Overloaded"),
}

_FINISH_FROM_OPENAI = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _headers(request_id: str) -> list[tuple[str, str]]:
    return [("request-id", request_id), ("anthropic-organization-id", "00000000-fake-prov-0000-000000000000")]


def render_error(reply: Reply, *, status: int | None = None, message: str | None = None) -> FakeResponse:
    """Anthropic error envelope: ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    code = status or reply.status
    etype, default_msg = _ERROR_DEFAULTS.get(
        code, ("api_error" if code >= 500 else "invalid_request_error", "Error.")
    )
    request_id = new_id("req_")
    body = {
        "type": "error",
        "error": {
            "type": reply.error_type or etype,
            "message": message or reply.error_message or default_msg,
        },
        "request_id": request_id,
    }
    return json_response(code, body, _headers(request_id) + retry_headers(reply), reply)


def _stop_reason(reply: Reply) -> str:
    if reply.finish_reason:
        return _FINISH_FROM_OPENAI.get(reply.finish_reason, reply.finish_reason)
    return "tool_use" if reply.calls else "end_turn"


def _usage(reply: Reply, request: RecordedRequest, output_tokens: int) -> dict[str, Any]:
    total_input = reply.resolved_input_tokens(request)
    usage: dict[str, Any] = {
        # Anthropic convention: input_tokens excludes cache reads and cache writes.
        "input_tokens": total_input - reply.cached_tokens - reply.cache_write_tokens,
        "cache_creation_input_tokens": reply.cache_write_tokens,
        "cache_read_input_tokens": reply.cached_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": reply.cache_write_tokens - reply.cache_write_1h_tokens,
            "ephemeral_1h_input_tokens": reply.cache_write_1h_tokens,
        },
        "output_tokens": output_tokens,
        "service_tier": reply.service_tier or "standard",
    }
    if reply.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": reply.reasoning_tokens}
    if reply.web_search_requests or reply.web_fetch_requests:
        usage["server_tool_use"] = {"web_search_requests": reply.web_search_requests,
                                    "web_fetch_requests": reply.web_fetch_requests}
    return usage


def _blocks(reply: Reply, text: str | None) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if text is not None:
        blocks.append({"type": "text", "text": text})
    for tc in reply.calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": tc.id or new_id("toolu_"),
                "name": tc.name,
                "input": tc.arguments_obj(),
            }
        )
    return blocks


def render_messages(request: RecordedRequest, reply: Reply) -> FakeResponse:
    """``POST /v1/messages``, JSON or the ``message_start`` ... ``message_stop`` SSE stream."""
    if reply.is_error:
        return render_error(reply)
    body = request.body if isinstance(request.body, dict) else {}
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return render_error(reply, status=400, message=f"{name}: Field required")

    mid = new_id("msg_")
    model = reply.resolved_model(request, "claude-sonnet-4-5")
    text = reply.resolved_text(request)
    blocks = _blocks(reply, text)
    stop_reason = _stop_reason(reply)
    output_tokens = reply.resolved_output_tokens(request)
    headers = _headers(new_id("req_"))

    message: dict[str, Any] = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _usage(reply, request, output_tokens),
    }
    if not request.stream:
        return json_response(200, message, headers, reply)

    chunks: list[bytes] = []

    def emit(event_type: str, **payload: Any) -> None:
        chunks.append(sse({"type": event_type, **payload}, event=event_type))

    # Like the real API, message_start carries a small provisional output count.
    start_usage = _usage(reply, request, min(1, output_tokens))
    start_usage.pop("output_tokens_details", None)
    emit(
        "message_start",
        message={**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage},
    )
    emit("ping")
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            emit("content_block_start", index=index, content_block={"type": "text", "text": ""})
            for piece in split_text(block["text"]):
                emit("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
        else:
            emit("content_block_start", index=index, content_block={**block, "input": {}})
            for fragment in split_json(json.dumps(block["input"], separators=(",", ":"))):
                emit(
                    "content_block_delta",
                    index=index,
                    delta={"type": "input_json_delta", "partial_json": fragment},
                )
        emit("content_block_stop", index=index)
    final_usage = message["usage"]
    delta_usage = {
        "input_tokens": final_usage["input_tokens"],
        "cache_creation_input_tokens": final_usage["cache_creation_input_tokens"],
        "cache_read_input_tokens": final_usage["cache_read_input_tokens"],
        "cache_creation": final_usage["cache_creation"],
        "output_tokens": output_tokens,
    }
    if "output_tokens_details" in final_usage:
        delta_usage["output_tokens_details"] = final_usage["output_tokens_details"]
    if "server_tool_use" in final_usage:
        delta_usage["server_tool_use"] = final_usage["server_tool_use"]
    emit("message_delta", delta={"stop_reason": stop_reason, "stop_sequence": None}, usage=delta_usage)
    emit("message_stop")
    return sse_response(chunks, headers, reply)


def render_count_tokens(request: RecordedRequest, reply: Reply) -> FakeResponse:
    """``POST /v1/messages/count_tokens`` using the same deterministic counter as messages."""
    if reply.is_error:
        return render_error(reply)
    total = reply.resolved_input_tokens(request)
    return json_response(200, {"input_tokens": total}, _headers(new_id("req_")), reply)
