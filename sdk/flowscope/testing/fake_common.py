"""Provider-neutral pieces of the fake LLM provider: scripted replies, recorded requests,
the transport-agnostic response value, deterministic token counting and SSE framing.

The wire formats (``fake_openai`` / ``fake_anthropic``) are pure functions
``(RecordedRequest, Reply) -> FakeResponse`` built on these types, so the socket server and
the in-process httpx transports share exactly one implementation of the response logic.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PER_MESSAGE_OVERHEAD",
    "FakeResponse",
    "RecordedRequest",
    "Reply",
    "ToolCall",
    "count_input_tokens",
    "count_words",
    "default_reply_text",
]

#: Tokens charged per message on top of its word count by the default token counter. Small
#: and fixed so tests can compute expected usage by hand: ``3 + words`` per message.
PER_MESSAGE_OVERHEAD = 3

#: Default ``retry_after`` (seconds) on error replies. Both official clients honour the
#: ``retry-after-ms`` header, so a tiny value keeps retry tests fast instead of paying the
#: clients' 0.5 s+ exponential backoff on every attempt.
DEFAULT_RETRY_AFTER_S = 0.01

_REDACTED_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization"})


@dataclass(frozen=True)
class ToolCall:
    """A function/tool call the fake model "decides" to make.

    ``arguments`` may be a dict (serialised to a JSON string for OpenAI, passed as the
    ``input`` object for Anthropic) or an already-encoded JSON string.
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), separators=(",", ":"))

    def arguments_obj(self) -> dict[str, Any]:
        if isinstance(self.arguments, str):
            parsed = json.loads(self.arguments) if self.arguments.strip() else {}
            return parsed if isinstance(parsed, dict) else {"value": parsed}
        return dict(self.arguments)


@dataclass(frozen=True)
class Reply:
    """What the fake model answers. Any field left ``None`` is derived from the request.

    Token fields use ONE provider-neutral convention so the same Reply can drive both wire
    formats (and so tests exercise each SDK's normalisation):

    * ``input_tokens`` is the TOTAL prompt size, including ``cached_tokens`` (cache reads)
      and ``cache_write_tokens``. OpenAI reports it as ``prompt_tokens``/``input_tokens``
      as-is (OpenAI's convention already includes cached tokens); Anthropic reports
      ``input_tokens = input_tokens - cached_tokens - cache_write_tokens`` plus
      ``cache_read_input_tokens``/``cache_creation_input_tokens`` (Anthropic's convention
      excludes them).
    * ``cache_write_1h_tokens`` is the part of ``cache_write_tokens`` cached for an hour
      (Anthropic: ``cache_creation.ephemeral_1h_input_tokens``; the rest are 5-minute writes).
    * ``output_tokens`` is the TOTAL completion size, including ``reasoning_tokens``.

    ``status >= 400`` turns the reply into the provider's JSON error (``error_type`` /
    ``error_message`` override the defaults for that status). ``retry_after`` (seconds)
    is sent as ``retry-after-ms`` and ``retry-after`` on errors; ``None`` sends neither so
    the clients fall back to their own backoff. ``include_usage=False`` drops the usage
    block (OpenAI formats only: Anthropic always reports usage) to test missing-usage paths.
    ``latency_s`` delays the first byte; ``chunk_delay_s`` separates stream events.
    """

    text: str | None = None
    input_tokens: int | None = None
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    # modalities (OpenAI prompt/input and completion/output ``*_tokens_details``), parts of the totals
    audio_input_tokens: int = 0
    image_input_tokens: int = 0
    audio_output_tokens: int = 0
    image_output_tokens: int = 0
    # server-side tools: Anthropic usage.server_tool_use; OpenAI Responses *_call output items
    web_search_requests: int = 0
    web_fetch_requests: int = 0
    file_search_requests: int = 0
    output_tokens: int | None = None
    reasoning_tokens: int = 0
    model: str | None = None
    provider_cost: str | None = None  # a router's billed amount, emitted as usage.cost (OpenRouter)
    service_tier: str | None = None  # served tier in the reply (default: "default" / Anthropic "standard")
    tool_calls: Sequence[ToolCall | Mapping[str, Any]] = ()
    finish_reason: str | None = None
    latency_s: float = 0.0
    chunk_delay_s: float = 0.0
    status: int = 200
    retry_after: float | None = DEFAULT_RETRY_AFTER_S
    error_type: str | None = None
    error_message: str | None = None
    include_usage: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Normalise dict tool calls once so renderers only ever see ToolCall.
        calls = tuple(tc if isinstance(tc, ToolCall) else ToolCall(**dict(tc)) for tc in self.tool_calls)
        object.__setattr__(self, "tool_calls", calls)
        for name in ("cached_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise ValueError("cache_write_tokens must include cache_write_1h_tokens (Anthropic's 1-hour writes)")
        if self.input_tokens is not None and self.input_tokens < self.cached_tokens + self.cache_write_tokens:
            raise ValueError(
                "input_tokens is the total prompt size and must include cached + cache-write tokens"
            )
        if self.output_tokens is not None and self.output_tokens < self.reasoning_tokens:
            raise ValueError("output_tokens is the total completion size and must include reasoning_tokens")

    @property
    def is_error(self) -> bool:
        return self.status >= 400

    @property
    def calls(self) -> tuple[ToolCall, ...]:
        """``tool_calls`` with the precise type (normalised in ``__post_init__``)."""
        return tuple(tc for tc in self.tool_calls if isinstance(tc, ToolCall))

    # --- resolution of derived values -------------------------------------------------

    def resolved_text(self, request: RecordedRequest) -> str | None:
        """The reply text; ``None`` means "no text block" (a pure tool-call turn)."""
        if self.text is not None:
            return self.text
        if self.calls:
            return None
        return default_reply_text(request)

    def resolved_input_tokens(self, request: RecordedRequest) -> int:
        if self.input_tokens is not None:
            return self.input_tokens
        return max(
            count_input_tokens(request.route, request.body), self.cached_tokens + self.cache_write_tokens
        )

    def resolved_output_tokens(self, request: RecordedRequest) -> int:
        if self.output_tokens is not None:
            return self.output_tokens
        text = self.resolved_text(request) or ""
        tool_words = sum(5 + count_words(tc.arguments_json().replace(",", " ")) for tc in self.calls)
        return count_words(text) + tool_words + self.reasoning_tokens

    def resolved_model(self, request: RecordedRequest, fallback: str) -> str:
        if self.model is not None:
            return self.model
        model = request.model
        return model if model else fallback


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it. Credentials are redacted before storage because
    recorded requests end up in test failure output and benchmark logs."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    route: str
    timestamp: float = field(default_factory=time.time)

    @property
    def model(self) -> str | None:
        model = self.body.get("model") if isinstance(self.body, dict) else None
        return model if isinstance(model, str) else None

    @property
    def stream(self) -> bool:
        return bool(isinstance(self.body, dict) and self.body.get("stream"))

    @staticmethod
    def redact(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in headers:
            k = key.lower()
            out[k] = "<redacted>" if k in _REDACTED_HEADERS else value
        return out


@dataclass
class FakeResponse:
    """Transport-agnostic response: either a complete ``body`` or a list of SSE ``chunks``.

    Delays are data, not sleeps, so each carrier can wait in its own way (thread sleep
    in the socket server, ``anyio.sleep`` in the async transport).
    """

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    chunks: list[bytes] | None = None
    latency_s: float = 0.0
    chunk_delay_s: float = 0.0

    @property
    def is_stream(self) -> bool:
        return self.chunks is not None


# --- deterministic token counting ---------------------------------------------------------


def count_words(text: str) -> int:
    """The fake "tokenizer": whitespace-separated words. Crude but trivially predictable."""
    return len(text.split())


def _content_text(content: Any) -> str:
    """Flatten the text out of any message-content shape (string, list of parts/blocks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_content_text(part) for part in content)
    if isinstance(content, dict):
        pieces = []
        for key in ("text", "content", "output"):
            if key in content:
                pieces.append(_content_text(content[key]))
        return " ".join(pieces)
    return ""


def _message_tokens(content: Any) -> int:
    return PER_MESSAGE_OVERHEAD + count_words(_content_text(content))


def count_input_tokens(route: str, body: Any) -> int:
    """Default prompt size for a request: ``3 + words`` for every message-like item.

    Message-like items: each chat message; Anthropic ``system``; Responses ``instructions``
    and each ``input`` item (a plain-string ``input`` is one item). Embeddings count words
    (or token ids) per input with no overhead. Always at least 1.
    """
    if not isinstance(body, dict):
        return 1
    total = 0
    if route == "embeddings":
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        if items and all(isinstance(i, int) for i in items):
            items = [items]  # a single pre-tokenised input
        for item in items:
            if isinstance(item, list):
                total += len(item)
            elif isinstance(item, str):
                total += count_words(item)
        return max(total, 1)
    if route == "responses":
        if body.get("instructions"):
            total += _message_tokens(body["instructions"])
        inputs = body.get("input")
        if isinstance(inputs, str):
            total += _message_tokens(inputs)
        elif isinstance(inputs, list):
            total += sum(_message_tokens(item) for item in inputs)
        return max(total, 1)
    if body.get("system"):
        total += _message_tokens(body["system"])
    for message in body.get("messages") or []:
        total += _message_tokens(message.get("content") if isinstance(message, dict) else message)
    return max(total, 1)


def _last_user_text(route: str, body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    if route == "responses":
        inputs = body.get("input")
        if isinstance(inputs, str):
            return inputs
        messages = inputs if isinstance(inputs, list) else []
    else:
        messages = body.get("messages") or []
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role", "user") == "user":
            return _content_text(message.get("content"))
    return ""


def default_reply_text(request: RecordedRequest, max_words: int = 24) -> str:
    """Echo-ish deterministic text, so a test can tell which prompt produced which reply."""
    words = _last_user_text(request.route, request.body).split()
    if not words:
        return "Hello from FakeProvider."
    return "Echo: " + " ".join(words[:max_words])


# --- framing helpers -----------------------------------------------------------------------


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:length]


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def sse(data: Any, event: str | None = None) -> bytes:
    """One Server-Sent Event. ``data`` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


_PIECE_RE = re.compile(r"\s*\S+\s*|\s+")


def split_text(text: str) -> list[str]:
    """Split into word-sized stream deltas (whitespace kept) so joining restores the text."""
    return _PIECE_RE.findall(text) if text else []


def split_json(arguments: str, size: int = 16) -> list[str]:
    """Split tool-call arguments into fixed-size fragments, like real partial-JSON deltas."""
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


def retry_headers(reply: Reply) -> list[tuple[str, str]]:
    if reply.retry_after is None:
        return []
    return [
        ("retry-after-ms", str(max(1, round(reply.retry_after * 1000)))),
        ("retry-after", str(max(1, math.ceil(reply.retry_after)))),
    ]


def json_response(
    status: int, obj: Any, headers: list[tuple[str, str]], reply: Reply | None = None
) -> FakeResponse:
    hdrs = [("content-type", "application/json"), *headers]
    if reply is not None:
        hdrs.extend(reply.headers.items())
    return FakeResponse(
        status=status,
        headers=hdrs,
        body=dumps(obj),
        latency_s=reply.latency_s if reply else 0.0,
    )


def sse_response(chunks: list[bytes], headers: list[tuple[str, str]], reply: Reply) -> FakeResponse:
    hdrs = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache"), *headers]
    hdrs.extend(reply.headers.items())
    return FakeResponse(
        status=200,
        headers=hdrs,
        chunks=chunks,
        latency_s=reply.latency_s,
        chunk_delay_s=reply.chunk_delay_s,
    )
