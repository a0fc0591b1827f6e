"""OpenAI wire format for the fake provider: Chat Completions, Responses and Embeddings.

Every function here is a pure ``(RecordedRequest, Reply) -> FakeResponse`` renderer. Shapes
follow the real API closely enough for the official ``openai`` client to parse them with
strict response validation on, because instrumentation bugs usually hide in the exact
placement of usage fields (e.g. the usage-only final chunk of a chat stream).
"""

from __future__ import annotations

import base64
import hashlib
import random
import struct
import time
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

__all__ = ["render_chat", "render_embeddings", "render_error", "render_models", "render_responses"]

_FINGERPRINT = "fp_fakeprov01"

_ERROR_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (fake provider). Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: (
        "server_error",
        "service_unavailable",
        "The engine is currently overloaded, please try again later.",
    ),
}

# Accept either vocabulary in Reply.finish_reason so one script can drive both providers.
_FINISH_FROM_ANTHROPIC = {
    "end_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "stop_sequence": "stop",
}


def _headers(request_id: str) -> list[tuple[str, str]]:
    return [("x-request-id", request_id), ("openai-processing-ms", "1"), ("openai-version", "2020-10-01")]


def render_error(reply: Reply, *, status: int | None = None, message: str | None = None) -> FakeResponse:
    """OpenAI error envelope: ``{"error": {"message", "type", "param", "code"}}``."""
    code_status = status or reply.status
    etype, code, default_msg = _ERROR_DEFAULTS.get(
        code_status, ("server_error" if code_status >= 500 else "invalid_request_error", None, "Error.")
    )
    body = {
        "error": {
            "message": message or reply.error_message or default_msg,
            "type": reply.error_type or etype,
            "param": None,
            "code": code,
        }
    }
    return json_response(code_status, body, _headers(new_id("req_")) + retry_headers(reply), reply)


def _finish_reason(reply: Reply) -> str:
    if reply.finish_reason:
        return _FINISH_FROM_ANTHROPIC.get(reply.finish_reason, reply.finish_reason)
    return "tool_calls" if reply.calls else "stop"


def _chat_usage(reply: Reply, request: RecordedRequest) -> dict[str, Any]:
    prompt = reply.resolved_input_tokens(request)
    completion = reply.resolved_output_tokens(request)
    return {
        **({"cost": float(reply.provider_cost)} if reply.provider_cost is not None else {}),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {
            "cached_tokens": reply.cached_tokens,
            "cache_write_tokens": reply.cache_write_tokens,
            "audio_tokens": reply.audio_input_tokens,
            **({"image_tokens": reply.image_input_tokens} if reply.image_input_tokens else {}),
        },
        "completion_tokens_details": {
            "reasoning_tokens": reply.reasoning_tokens,
            "audio_tokens": reply.audio_output_tokens,
            **({"image_tokens": reply.image_output_tokens} if reply.image_output_tokens else {}),
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _missing(request: RecordedRequest, *fields: str) -> str | None:
    body = request.body if isinstance(request.body, dict) else {}
    for name in fields:
        if name not in body:
            return f"Missing required parameter: '{name}'."
    return None


def render_chat(request: RecordedRequest, reply: Reply) -> FakeResponse:
    """``POST /v1/chat/completions``, JSON or SSE (``data: {chunk}`` ... ``data: [DONE]``)."""
    if reply.is_error:
        return render_error(reply)
    problem = _missing(request, "model", "messages")
    if problem:
        return render_error(reply, status=400, message=problem)

    cid = new_id("chatcmpl-", 29)
    created = int(time.time())
    model = reply.resolved_model(request, "gpt-4o-mini")
    text = reply.resolved_text(request)
    finish = _finish_reason(reply)
    calls = [(tc.id or new_id("call_"), tc) for tc in reply.calls]
    headers = _headers(new_id("req_"))

    if not request.stream:
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        if calls:
            message["tool_calls"] = [
                {
                    "id": cid_,
                    "type": "function",
                    "function": {"name": tc.name, "arguments": tc.arguments_json()},
                }
                for cid_, tc in calls
            ]
        body: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "service_tier": reply.service_tier or "default",
            "system_fingerprint": _FINGERPRINT,
        }
        if reply.include_usage:
            body["usage"] = _chat_usage(reply, request)
        return json_response(200, body, headers, reply)

    stream_options = request.body.get("stream_options") or {}
    with_usage = bool(stream_options.get("include_usage")) and reply.include_usage

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        obj: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": reply.service_tier or "default",
            "system_fingerprint": _FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if with_usage:
            obj["usage"] = None  # the real API sends null usage on every chunk but the last
        return sse(obj)

    chunks = [chunk({"role": "assistant", "content": "" if text is not None else None, "refusal": None})]
    chunks.extend(chunk({"content": piece}) for piece in split_text(text or ""))
    for index, (call_id, tc) in enumerate(calls):
        head = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": tc.name, "arguments": ""},
        }
        chunks.append(chunk({"tool_calls": [head]}))
        for fragment in split_json(tc.arguments_json()):
            chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}))
    chunks.append(chunk({}, finish))
    if with_usage:
        chunks.append(
            sse(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "service_tier": reply.service_tier or "default",
                    "system_fingerprint": _FINGERPRINT,
                    "choices": [],
                    "usage": _chat_usage(reply, request),
                }
            )
        )
    chunks.append(sse("[DONE]"))
    return sse_response(chunks, headers, reply)


# --- Responses API -------------------------------------------------------------------------


def _responses_usage(reply: Reply, request: RecordedRequest) -> dict[str, Any]:
    inp = reply.resolved_input_tokens(request)
    out = reply.resolved_output_tokens(request)
    return {
        "input_tokens": inp,
        "input_tokens_details": {
            "cached_tokens": reply.cached_tokens,
            "cache_write_tokens": reply.cache_write_tokens,
            **({"audio_tokens": reply.audio_input_tokens} if reply.audio_input_tokens else {}),
            **({"image_tokens": reply.image_input_tokens} if reply.image_input_tokens else {}),
        },
        "output_tokens": out,
        "output_tokens_details": {
            "reasoning_tokens": reply.reasoning_tokens,
            **({"audio_tokens": reply.audio_output_tokens} if reply.audio_output_tokens else {}),
            **({"image_tokens": reply.image_output_tokens} if reply.image_output_tokens else {}),
        },
        "total_tokens": inp + out,
    }


def _response_object(
    request: RecordedRequest,
    rid: str,
    created: int,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    incomplete: dict[str, Any] | None = None,
    service_tier: str | None = None,
) -> dict[str, Any]:
    body = request.body if isinstance(request.body, dict) else {}
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": service_tier or "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
    }


def render_responses(request: RecordedRequest, reply: Reply) -> FakeResponse:
    """``POST /v1/responses``, JSON or the typed SSE event stream (``event: response.*``)."""
    if reply.is_error:
        return render_error(reply)
    problem = _missing(request, "model")
    if problem:
        return render_error(reply, status=400, message=problem)

    rid = new_id("resp_", 32)
    created = int(time.time())
    model = reply.resolved_model(request, "gpt-4o-mini")
    text = reply.resolved_text(request)
    usage = _responses_usage(reply, request) if reply.include_usage else None
    truncated = _finish_reason(reply) == "length"
    incomplete = {"reason": "max_output_tokens"} if truncated else None
    final_status = "incomplete" if truncated else "completed"

    # Final output items, in the order the real API emits them.
    items: list[dict[str, Any]] = []
    if reply.reasoning_tokens:
        items.append({"id": new_id("rs_", 32), "type": "reasoning", "summary": []})
    for _ in range(reply.web_search_requests):
        items.append({"id": new_id("ws_", 32), "type": "web_search_call", "status": "completed",
                      "action": {"type": "search", "query": "flowscope"}})
    for _ in range(reply.file_search_requests):
        items.append({"id": new_id("fs_", 32), "type": "file_search_call", "status": "completed",
                      "queries": ["flowscope"], "results": None})
    if text is not None:
        items.append(
            {
                "id": new_id("msg_", 32),
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
            }
        )
    for tc in reply.calls:
        items.append(
            {
                "id": new_id("fc_", 32),
                "type": "function_call",
                "status": "completed",
                "call_id": tc.id or new_id("call_"),
                "name": tc.name,
                "arguments": tc.arguments_json(),
            }
        )
    headers = _headers(new_id("req_"))

    if not request.stream:
        return json_response(
            200,
            _response_object(request, rid, created, model, final_status, items, usage, incomplete,
                             reply.service_tier),
            headers,
            reply,
        )

    seq = 0
    chunks: list[bytes] = []

    def emit(event_type: str, **payload: Any) -> None:
        nonlocal seq
        chunks.append(sse({"type": event_type, "sequence_number": seq, **payload}, event=event_type))
        seq += 1

    start = _response_object(request, rid, created, model, "in_progress", [], None, None, reply.service_tier)
    emit("response.created", response=start)
    emit("response.in_progress", response=start)
    for index, item in enumerate(items):
        if item["type"] == "message":
            part = item["content"][0]
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            emit(
                "response.content_part.added",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part={**part, "text": ""},
            )
            for piece in split_text(part["text"]):
                emit(
                    "response.output_text.delta",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    delta=piece,
                    logprobs=[],
                )
            emit(
                "response.output_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=part["text"],
                logprobs=[],
            )
            emit(
                "response.content_part.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=part,
            )
        elif item["type"] == "function_call":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            for fragment in split_json(item["arguments"]):
                emit(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=index,
                    delta=fragment,
                )
            emit(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item["name"],
                arguments=item["arguments"],
            )
        else:
            emit("response.output_item.added", output_index=index, item=item)
        emit("response.output_item.done", output_index=index, item=item)
    final = _response_object(request, rid, created, model, final_status, items, usage, incomplete,
                             reply.service_tier)
    emit("response.incomplete" if truncated else "response.completed", response=final)
    return sse_response(chunks, headers, reply)


# --- Embeddings & models --------------------------------------------------------------------


def _vector(text: str, dims: int) -> list[float]:
    """Deterministic unit vector per input, so similarity tests are reproducible."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    vec = [rng.uniform(-1.0, 1.0) for _ in range(dims)]
    norm = sum(v * v for v in vec) ** 0.5 or 1.0
    return [v / norm for v in vec]


def render_embeddings(request: RecordedRequest, reply: Reply) -> FakeResponse:
    """``POST /v1/embeddings``; honours ``dimensions`` and ``encoding_format=base64``."""
    if reply.is_error:
        return render_error(reply)
    problem = _missing(request, "model", "input")
    if problem:
        return render_error(reply, status=400, message=problem)
    body = request.body
    model = reply.resolved_model(request, "text-embedding-3-small")
    dims = body.get("dimensions") or (3072 if "large" in model else 1536)
    raw = body["input"]
    inputs: list[Any] = raw if isinstance(raw, list) and not all(isinstance(i, int) for i in raw) else [raw]
    data = []
    for index, item in enumerate(inputs):
        vec = _vector(item if isinstance(item, str) else repr(item), int(dims))
        embedding: Any = vec
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = reply.resolved_input_tokens(request)
    out: dict[str, Any] = {"object": "list", "data": data, "model": model}
    if reply.include_usage:
        out["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return json_response(200, out, _headers(new_id("req_")), reply)


def render_models(request: RecordedRequest, reply: Reply) -> FakeResponse:
    """``GET /v1/models``: a tiny static list, enough for clients that probe connectivity."""
    names = ["gpt-4o", "gpt-4o-mini", "o3-mini", "text-embedding-3-small", "text-embedding-3-large"]
    data = [{"id": n, "object": "model", "created": 1700000000, "owned_by": "flowscope-fake"} for n in names]
    return json_response(200, {"object": "list", "data": data}, _headers(new_id("req_")))
