"""A replayed LLM answer, sent to the real client as the provider's own HTTP response.

Why at the HTTP level (the client's ``send``), and not by handing the caller
a rebuilt response object inside the instrumentation: the ``openai`` and
``anthropic`` clients then do everything they always do with a response:
parse it into their own types (``ChatCompletion``, ``Message``), run the
stream machinery chunk by chunk (``stream=True``, ``messages.stream()``,
``with_raw_response``), validate structured output. The app cannot tell a
recorded answer from a live one, and streaming needs no fake of our own.
The *decision* is made where the request is still the caller's keyword
arguments (:mod:`flowscope.instrumentation._call`, with the response cache's
request key, so "identical" means one thing everywhere); it reaches the
client's ``send`` through :data:`flowscope._replaying.PENDING`, set only for
that one call. Every other request passes through untouched.

The wire format is written by the same renderers the fake provider of the
test kit speaks (:mod:`flowscope.testing.fake_openai` / ``fake_anthropic``),
which the test suite checks against both clients.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import wrapt

from .._replaying import PENDING, RecordedAnswer
from ..testing import fake_anthropic, fake_openai
from ..testing.fake_common import RecordedRequest, Reply, ToolCall

_installed: set[tuple[str, str]] = set()
_lock = threading.Lock()


def supported_route(path: str) -> str | None:
    """Which wire format a request path speaks, if a recorded answer can be rendered in it."""
    path = path.split("?", 1)[0].rstrip("/")
    if path.endswith("/chat/completions"):
        return "openai.chat"
    if path.endswith("/messages"):
        return "anthropic.messages"
    return None


def install() -> None:
    """Hook ``send`` of the httpx and httpx2 clients (sync and async), once per process.

    The hook costs one context-variable read per request and does nothing
    unless a replayed call put an answer in :data:`PENDING`.
    """
    with _lock:
        for lib_name in ("httpx", "httpx2"):
            try:
                lib = __import__(lib_name)
            except ImportError:
                continue
            for cls_name, hook in (("Client", _send), ("AsyncClient", _asend)):
                if (lib_name, cls_name) in _installed or not hasattr(lib, cls_name):
                    continue
                wrapt.wrap_function_wrapper(lib, f"{cls_name}.send", hook)
                _installed.add((lib_name, cls_name))


def _take(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, RecordedAnswer | None]:
    request = args[0] if args else kwargs.get("request")
    answer = PENDING.get()
    if answer is None or request is None or supported_route(request.url.path) is None:
        return request, None
    PENDING.set(None)  # one answer per call, even if the client sends again
    return request, answer


def _send(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    request, answer = _take(args, kwargs)
    if answer is None:
        return wrapped(*args, **kwargs)
    return render(request, request.read(), answer)


async def _asend(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    request, answer = _take(args, kwargs)
    if answer is None:
        return await wrapped(*args, **kwargs)
    return render(request, await request.aread(), answer)


def reply_of(answer: RecordedAnswer) -> Reply:
    calls = [
        ToolCall(name=str(c.get("name") or ""), arguments=c.get("arguments") or {}, id=c.get("id"))
        for c in answer.tool_calls
    ]
    # a pure tool-call turn has no text (OpenAI: content null; Anthropic: no text block)
    text = (answer.text or None) if calls else (answer.text or "")
    return Reply(
        text=text,
        input_tokens=answer.input_tokens,
        output_tokens=answer.output_tokens,
        model=answer.model,
        tool_calls=tuple(calls),
        finish_reason=answer.finish_reason,
    )


def render(request: Any, body: bytes, answer: RecordedAnswer) -> Any:
    """The provider's response (JSON, or SSE when the request streams) carrying ``answer``."""
    lib = __import__(type(request).__module__.split(".")[0])
    path = request.url.path
    parsed = json.loads(body) if body else {}
    recorded = RecordedRequest(request.method, path, {}, parsed, supported_route(path) or "")
    reply = reply_of(answer)
    if supported_route(path) == "openai.chat":
        out = fake_openai.render_chat(recorded, reply)
    else:
        out = fake_anthropic.render_messages(recorded, reply)
    content = out.body if out.chunks is None else b"".join(out.chunks)
    headers = [*out.headers, ("x-flowscope-replay", "recorded")]
    return lib.Response(out.status, headers=headers, content=content, request=request)
