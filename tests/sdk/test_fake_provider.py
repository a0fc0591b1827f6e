"""FakeProvider against the REAL openai / anthropic clients (sync + async, stream + not).

Clients use ``_strict_response_validation=True`` wherever the client supports it, so any
drift between the fake's JSON and the SDK's types fails here rather than in instrumentation
tests that rely on the fake.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from flowscope.testing import FakeProvider, Reply, ToolCall, count_input_tokens

httpx2 = pytest.importorskip("httpx2")

MSG = [{"role": "user", "content": "what is the capital of France"}]
# Default counter: 3 overhead + 6 words.
MSG_TOKENS = 9


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    with FakeProvider() as fp:
        yield fp


@pytest.fixture
def fp(server: FakeProvider) -> Iterator[FakeProvider]:
    server.reset()
    yield server
    server.reset()


def oai(fp: FakeProvider, **kw: Any) -> openai.OpenAI:
    kw.setdefault("_strict_response_validation", True)
    return openai.OpenAI(base_url=fp.openai_base_url, api_key="sk-secret", **kw)


def ant(fp: FakeProvider, **kw: Any) -> anthropic.Anthropic:
    kw.setdefault("_strict_response_validation", True)
    return anthropic.Anthropic(base_url=fp.anthropic_base_url, api_key="sk-ant-secret", **kw)


USAGE_REPLY = Reply(
    text="Paris it is", input_tokens=1200, cached_tokens=800, output_tokens=300, reasoning_tokens=240
)


# --- OpenAI chat completions ----------------------------------------------------------------


def test_chat_completion_usage_details(fp: FakeProvider) -> None:
    fp.script(USAGE_REPLY)
    r = oai(fp).chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert r.choices[0].message.content == "Paris it is"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "gpt-4o-mini"
    assert r.id.startswith("chatcmpl-")
    u = r.usage
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (1200, 300, 1500)
    assert u.prompt_tokens_details is not None and u.prompt_tokens_details.cached_tokens == 800
    assert u.completion_tokens_details is not None and u.completion_tokens_details.reasoning_tokens == 240


def test_chat_default_reply_is_deterministic(fp: FakeProvider) -> None:
    client = oai(fp)
    a = client.chat.completions.create(model="gpt-4o", messages=MSG)
    b = client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert a.choices[0].message.content == "Echo: what is the capital of France"
    assert a.usage is not None and a.usage.prompt_tokens == MSG_TOKENS == count_input_tokens(
        "chat.completions", {"messages": MSG}
    )
    assert a.usage.completion_tokens == 7  # words in the echo text
    assert a.id != b.id


def test_model_override_and_model_filtered_script(fp: FakeProvider) -> None:
    fp.script(Reply(text="for mini"), model="gpt-4o-mini")
    fp.script(Reply(text="snapshot", model="gpt-4o-2024-08-06"))
    client = oai(fp)
    r1 = client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert (r1.choices[0].message.content, r1.model) == ("snapshot", "gpt-4o-2024-08-06")
    r2 = client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert r2.choices[0].message.content.startswith("Echo:")  # filtered reply not consumed
    r3 = client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert r3.choices[0].message.content == "for mini"
    assert fp.pending == 0


def test_chat_stream_with_include_usage(fp: FakeProvider) -> None:
    fp.script(USAGE_REPLY)
    chunks = list(
        oai(fp).chat.completions.create(
            model="gpt-4o-mini", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Paris it is"
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (1200, 300)
    assert (
        last.usage.prompt_tokens_details is not None and last.usage.prompt_tokens_details.cached_tokens == 800
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_chat_stream_without_include_usage_has_no_usage(fp: FakeProvider) -> None:
    chunks = list(oai(fp).chat.completions.create(model="gpt-4o", messages=MSG, stream=True))
    assert chunks and all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    # Wire level: the key is absent altogether, as with the real API.
    with httpx.stream(
        "POST", fp.openai_base_url + "/chat/completions", json={"model": "m", "messages": MSG, "stream": True}
    ) as resp:
        raw = resp.read().decode()
    assert '"usage"' not in raw and raw.rstrip().endswith("data: [DONE]")


def test_chat_tool_calls(fp: FakeProvider) -> None:
    call = ToolCall("get_weather", {"city": "Paris", "unit": "C"})
    fp.script(Reply(tool_calls=[call]), Reply(tool_calls=[call, {"name": "noop", "arguments": "{}"}]))
    client = oai(fp)
    r = client.chat.completions.create(model="gpt-4o", messages=MSG)
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls" and msg.content is None
    assert msg.tool_calls is not None and msg.tool_calls[0].function.name == "get_weather"
    assert json.loads(msg.tool_calls[0].function.arguments) == {"city": "Paris", "unit": "C"}
    # Streaming: the client's accumulation helper rebuilds both calls from fragments.
    with client.chat.completions.stream(model="gpt-4o", messages=MSG) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls is not None and [c.function.name for c in calls] == ["get_weather", "noop"]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris", "unit": "C"}


def test_async_chat_and_stream(fp: FakeProvider) -> None:
    async def run() -> None:
        client = openai.AsyncOpenAI(
            base_url=fp.openai_base_url, api_key="x", _strict_response_validation=True
        )
        r = await client.chat.completions.create(model="gpt-4o", messages=MSG)
        assert r.usage is not None and r.usage.prompt_tokens == MSG_TOKENS
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == MSG_TOKENS + 7
        await client.close()

    asyncio.run(run())


# --- OpenAI Responses & embeddings ----------------------------------------------------------


def test_responses_create_and_stream(fp: FakeProvider) -> None:
    fp.script(USAGE_REPLY, USAGE_REPLY)
    client = oai(fp)
    r = client.responses.create(model="o3-mini", input="capital of France?")
    assert r.output_text == "Paris it is" and r.id.startswith("resp_") and r.status == "completed"
    assert r.usage is not None
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (1200, 300, 1500)
    assert r.usage.input_tokens_details.cached_tokens == 800
    assert r.usage.output_tokens_details.reasoning_tokens == 240
    assert r.output[0].type == "reasoning"  # reasoning models emit a reasoning item first

    with client.responses.stream(model="o3-mini", input="capital of France?") as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert types.count("response.output_text.delta") == 3
    assert final.output_text == "Paris it is"
    assert final.usage is not None and final.usage.input_tokens_details.cached_tokens == 800


def test_responses_function_call_and_async_stream(fp: FakeProvider) -> None:
    fp.script(Reply(tool_calls=[ToolCall("lookup", {"q": "x"}, id="call_1")]))
    r = oai(fp).responses.create(model="gpt-4o", input=[{"role": "user", "content": "hi"}])
    item = r.output[0]
    assert item.type == "function_call" and item.name == "lookup" and item.call_id == "call_1"
    assert json.loads(item.arguments) == {"q": "x"}

    async def run() -> None:
        client = openai.AsyncOpenAI(
            base_url=fp.openai_base_url, api_key="x", _strict_response_validation=True
        )
        stream = await client.responses.create(model="gpt-4o", input="one two three", stream=True)
        events = [e async for e in stream]
        assert events[-1].type == "response.completed"
        assert events[-1].response.usage is not None and events[-1].response.usage.input_tokens == 6
        await client.close()

    asyncio.run(run())


def test_embeddings(fp: FakeProvider) -> None:
    # Not strict: the SDK validates before decoding its default base64 encoding.
    client = openai.OpenAI(base_url=fp.openai_base_url, api_key="x")
    e = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])
    assert [d.index for d in e.data] == [0, 1] and len(e.data[0].embedding) == 1536
    assert e.usage.prompt_tokens == 3 and e.model == "text-embedding-3-small"
    f = client.embeddings.create(
        model="text-embedding-3-small", input="hello world", dimensions=8, encoding_format="float"
    )
    assert len(f.data[0].embedding) == 8
    again = client.embeddings.create(model="text-embedding-3-small", input=["hello world"])
    assert again.data[0].embedding == e.data[0].embedding  # deterministic per input


# --- Anthropic ------------------------------------------------------------------------------


ANT_REPLY = Reply(
    text="Paris.", input_tokens=1000, cached_tokens=600, cache_write_tokens=100, output_tokens=50
)


def test_anthropic_messages_create(fp: FakeProvider) -> None:
    fp.script(ANT_REPLY)
    m = ant(fp).messages.create(model="claude-sonnet-4-5", max_tokens=100, system="be brief", messages=MSG)
    assert m.content[0].type == "text" and m.content[0].text == "Paris."
    assert m.model == "claude-sonnet-4-5" and m.id.startswith("msg_") and m.stop_reason == "end_turn"
    # Anthropic convention: input_tokens excludes cache reads and writes.
    assert (m.usage.input_tokens, m.usage.cache_read_input_tokens, m.usage.cache_creation_input_tokens) == (
        300,
        600,
        100,
    )
    assert m.usage.output_tokens == 50
    default = ant(fp).messages.create(model="claude-x", max_tokens=10, system="be brief", messages=MSG)
    assert default.usage.input_tokens == MSG_TOKENS + 5  # + "be brief" as a message
    assert default.usage.cache_read_input_tokens == 0


def test_anthropic_stream_helper_final_usage(fp: FakeProvider) -> None:
    fp.script(ANT_REPLY)
    with ant(fp).messages.stream(model="claude-x", max_tokens=100, messages=MSG) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Paris." and final.content[0].type == "text" and final.content[0].text == "Paris."
    u = final.usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens, u.output_tokens) == (
        300,
        600,
        100,
        50,
    )
    assert final.stop_reason == "end_turn"


def test_anthropic_raw_stream_event_sequence(fp: FakeProvider) -> None:
    fp.script(ANT_REPLY)
    events = list(ant(fp).messages.create(model="claude-x", max_tokens=100, messages=MSG, stream=True))
    types = [e.type for e in events]
    assert types == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the client drops the ping
    start, delta = events[0], events[4]
    assert start.type == "message_start" and start.message.usage.input_tokens == 300
    assert start.message.usage.cache_read_input_tokens == 600
    assert delta.type == "message_delta" and delta.usage.output_tokens == 50
    assert delta.delta.stop_reason == "end_turn"


def test_anthropic_tool_use_and_async_stream(fp: FakeProvider) -> None:
    fp.script(
        Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
        Reply(text="checking", tool_calls=[ToolCall("get_weather", '{"city": "Rome"}')]),
    )
    m = ant(fp).messages.create(model="claude-x", max_tokens=100, messages=MSG)
    assert m.stop_reason == "tool_use" and len(m.content) == 1
    block = m.content[0]
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"city": "Paris"}
    assert block.id.startswith("toolu_")

    async def run() -> None:
        client = anthropic.AsyncAnthropic(
            base_url=fp.anthropic_base_url, api_key="x", _strict_response_validation=True
        )
        async with client.messages.stream(model="claude-x", max_tokens=100, messages=MSG) as stream:
            final = await stream.get_final_message()
        assert [b.type for b in final.content] == ["text", "tool_use"]
        assert final.content[1].type == "tool_use" and final.content[1].input == {"city": "Rome"}
        assert final.stop_reason == "tool_use"
        await client.close()

    asyncio.run(run())


# --- errors and retries ---------------------------------------------------------------------


def test_429_twice_then_success(fp: FakeProvider) -> None:
    fp.fail_next(2, status=429)
    started = time.monotonic()
    r = oai(fp, max_retries=2).chat.completions.create(model="gpt-4o", messages=MSG)
    assert r.choices[0].message.content.startswith("Echo:")
    assert len(fp.requests) == 3
    assert time.monotonic() - started < 1.0  # retry-after-ms honoured, no 0.5 s+ backoff
    retries = [req.headers.get("x-stainless-retry-count") for req in fp.requests]
    assert retries == ["0", "1", "2"]


def test_500_exhausts_retries(fp: FakeProvider) -> None:
    fp.fail_next(5, status=500)
    with pytest.raises(openai.InternalServerError) as info:
        oai(fp, max_retries=2).chat.completions.create(model="gpt-4o", messages=MSG)
    assert info.value.status_code == 500
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "server_error"
    assert len(fp.requests) == 3 and fp.pending == 2


def test_openai_error_shape_and_no_retry_on_400(fp: FakeProvider) -> None:
    fp.fail_next(1, status=429, retry_after=None)
    resp = httpx.post(fp.openai_base_url + "/chat/completions", json={"model": "m", "messages": MSG})
    assert resp.status_code == 429 and "retry-after-ms" not in resp.headers
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    fp.fail_next(1, status=400, error_message="bad things")
    with pytest.raises(openai.BadRequestError, match="bad things"):
        oai(fp, max_retries=2).chat.completions.create(model="gpt-4o", messages=MSG)
    assert len(fp.requests) == 2


def test_anthropic_529_overloaded(fp: FakeProvider) -> None:
    fp.fail_next(3, status=529)
    with pytest.raises(anthropic.OverloadedError) as info:
        ant(fp, max_retries=1).messages.create(model="claude-x", max_tokens=10, messages=MSG)
    assert info.value.status_code == 529
    assert info.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": info.value.body["request_id"],  # type: ignore[index]
    }
    assert len(fp.requests) == 2
    # The remaining failure is consumed by the next call, which then retries into success.
    m = ant(fp, max_retries=1).messages.create(model="claude-x", max_tokens=10, messages=MSG)
    assert m.content[0].type == "text" and len(fp.requests) == 4


def test_anthropic_rate_limit_then_success(fp: FakeProvider) -> None:
    fp.fail_next(1, status=429, route="messages")
    m = ant(fp, max_retries=1).messages.create(model="claude-x", max_tokens=10, messages=MSG)
    assert m.usage.input_tokens == MSG_TOKENS and len(fp.requests) == 2


def test_bad_requests_get_provider_errors(fp: FakeProvider) -> None:
    r = httpx.post(fp.url + "/v1/messages", json={"model": "claude-x", "messages": MSG})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(fp.url + "/v1/nope", json={})
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.post(fp.openai_base_url + "/chat/completions", content=b"{not json")
    assert r.status_code == 400


# --- recording, latency, in-process transports ----------------------------------------------


def test_requests_recorded_with_redacted_credentials(fp: FakeProvider) -> None:
    oai(fp).chat.completions.create(model="gpt-4o", messages=MSG)
    ant(fp).messages.create(model="claude-x", max_tokens=10, messages=MSG)
    first, second = fp.requests
    assert (first.path, first.route, first.model) == ("/v1/chat/completions", "chat.completions", "gpt-4o")
    assert first.body["messages"] == MSG and first.headers["authorization"] == "<redacted>"
    assert second.route == "messages"
    assert "sk-secret" not in repr(fp.requests) and "sk-ant-secret" not in repr(fp.requests)


def test_latency_and_chunk_delay(fp: FakeProvider) -> None:
    fp.script(Reply(text="a b c d", latency_s=0.15, chunk_delay_s=0.02))
    started = time.monotonic()
    stream = oai(fp).chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
    first = next(iter(stream))
    ttfc = time.monotonic() - started
    list(stream)
    total = time.monotonic() - started
    assert first.choices[0].delta.role == "assistant"
    assert 0.15 <= ttfc < 0.6
    assert total - ttfc >= 0.02 * 4  # 5 more events, each preceded by a delay


def test_sync_transport_both_clients() -> None:
    fp = FakeProvider()  # never started: no sockets involved
    fp.script(USAGE_REPLY)
    client = openai.OpenAI(
        base_url="http://fake/v1", api_key="x", http_client=httpx.Client(transport=fp.transport())
    )
    r = client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert r.usage is not None and r.usage.prompt_tokens_details is not None
    assert r.usage.prompt_tokens_details.cached_tokens == 800
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == MSG_TOKENS

    # anthropic>=2 only accepts httpx2 clients; the same transport object serves both.
    a = anthropic.Anthropic(
        base_url="http://fake", api_key="x", http_client=httpx2.Client(transport=fp.transport())
    )
    fp.script(ANT_REPLY)
    with a.messages.stream(model="claude-x", max_tokens=10, messages=MSG) as stream:
        final = stream.get_final_message()
    assert final.usage.cache_read_input_tokens == 600 and final.usage.input_tokens == 300
    assert len(fp.requests) == 3 and not fp.running


def test_async_transport_both_clients() -> None:
    fp = FakeProvider()

    async def run() -> None:
        client = openai.AsyncOpenAI(
            base_url="http://fake/v1",
            api_key="x",
            http_client=httpx.AsyncClient(transport=fp.async_transport()),
        )
        fp.script(Reply(text="x y", latency_s=0.05, chunk_delay_s=0.01))
        stream = await client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "x y"
        a = fp.async_anthropic_client(in_process=True, max_retries=1)
        fp.fail_next(1, status=529)
        m = await a.messages.create(model="claude-x", max_tokens=10, messages=MSG)
        assert m.usage.input_tokens == MSG_TOKENS
        await client.close()
        await a.close()

    asyncio.run(run())
    assert [r.route for r in fp.requests] == ["chat.completions", "messages", "messages"]


def test_client_helpers_over_socket(fp: FakeProvider) -> None:
    assert fp.openai_client().chat.completions.create(model="m", messages=MSG).usage is not None
    assert fp.anthropic_client(in_process=True).messages.create(model="m", max_tokens=5, messages=MSG).content


# --- robustness -------------------------------------------------------------------------------


def test_abandoned_stream_does_not_break_server(fp: FakeProvider) -> None:
    fp.script(Reply(text=" ".join(["word"] * 200), chunk_delay_s=0.002))
    client = oai(fp)
    stream = client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()  # hang up mid-stream
    # Also abandon one at the raw socket level with a big unread body.
    with httpx.stream(
        "POST", fp.openai_base_url + "/chat/completions", json={"model": "m", "messages": MSG, "stream": True}
    ) as resp:
        next(resp.iter_bytes())
    r = client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert r.choices[0].message.content.startswith("Echo:")


def test_stop_is_fast_and_leaves_no_threads() -> None:
    before = set(threading.enumerate())
    fp = FakeProvider().start()
    client = httpx.Client()  # keeps an idle keep-alive connection open on the server
    assert client.get(fp.url + "/health").json() == {"status": "ok"}
    fp.script(Reply(text="slow " * 50, chunk_delay_s=0.5))
    with client.stream(
        "POST", fp.openai_base_url + "/chat/completions", json={"model": "m", "messages": MSG, "stream": True}
    ) as resp:
        next(resp.iter_bytes())
        started = time.monotonic()
        fp.stop()
        assert time.monotonic() - started < 1.0
    client.close()
    deadline = time.monotonic() + 1.0
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not (set(threading.enumerate()) - before)
    fp.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = fp.url


def test_cli_runs_in_foreground() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parents[2] / "sdk"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-W",
            "error::RuntimeWarning",
            "-m",
            "flowscope.testing.fake_provider",
            "--port",
            "0",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("FakeProvider listening on http://127.0.0.1:"), line + (
            proc.stderr.read() if proc.stderr else ""
        )
        url = line.rsplit(" ", 1)[1].strip()
        r = httpx.post(url + "/v1/chat/completions", json={"model": "m", "messages": MSG})
        assert r.json()["choices"][0]["message"]["content"].startswith("Echo:")
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_default_rule_and_utility_routes_do_not_consume_scripts(fp: FakeProvider) -> None:
    fp.set_default(lambda req: Reply(text=f"rule for {req.model}") if req.model == "ruled" else None)
    fp.script(Reply(text="queued"), route="/v1/messages")
    client = ant(fp)
    assert client.messages.count_tokens(model="claude-x", messages=MSG).input_tokens == MSG_TOKENS
    m = client.messages.create(model="claude-x", max_tokens=5, messages=MSG)
    assert m.content[0].type == "text" and m.content[0].text == "queued"
    r = oai(fp).chat.completions.create(model="ruled", messages=MSG)
    assert r.choices[0].message.content == "rule for ruled"
    r = oai(fp).chat.completions.create(model="other", messages=MSG)
    assert r.choices[0].message.content.startswith("Echo:")


def test_concurrent_requests_consume_each_scripted_reply_once(fp: FakeProvider) -> None:
    fp.script(*(Reply(text=f"reply-{i}") for i in range(16)))
    client = oai(fp)
    results: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        r = client.chat.completions.create(model="gpt-4o", messages=MSG)
        with lock:
            results.append(r.choices[0].message.content or "")

    threads = [threading.Thread(target=call) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(results) == sorted(f"reply-{i}" for i in range(16))
    assert fp.pending == 0 and len(fp.requests) == 16
