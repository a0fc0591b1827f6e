"""The real openai client against the fake provider: spans, usage and exact cost."""

from __future__ import annotations

import gc

import openai
import pytest
from openai.types.chat import ChatCompletion, ParsedChatCompletion
from openai.types.responses import Response
from pydantic import BaseModel

import flowscope
from flowscope.core import semconv
from flowscope.testing import FakeProvider, Reply
from tests._llm_kit import (
    EMBEDDING_3_SMALL,
    GPT_4O_MINI,
    MSGS,
    OPENAI_MODEL,
    Capture,
    attrs,
    cost_of,
    events,
)

DATED = "gpt-4o-mini-2024-07-18"


def client(fp: FakeProvider, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=fp.openai_base_url, api_key="sk-test", **kw)  # type: ignore[arg-type]


def aclient(fp: FakeProvider, **kw: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fp.openai_base_url, api_key="sk-test", **kw)  # type: ignore[arg-type]


def test_chat_cached_tokens_are_not_counted_twice(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="Paris", input_tokens=1200, cached_tokens=800, output_tokens=300, model=DATED))
    with flowscope.run("chat") as run:
        r = client(fake_provider).chat.completions.create(model=OPENAI_MODEL, messages=MSGS, temperature=0.2)
    assert isinstance(r, ChatCompletion) and r.choices[0].message.content == "Paris"
    span = cap.one_llm()
    a = attrs(span)
    assert span.name == "chat gpt-4o-mini"
    assert a[semconv.GEN_AI_PROVIDER_NAME] == "openai"
    assert a[semconv.GEN_AI_REQUEST_MODEL] == OPENAI_MODEL
    assert a[semconv.GEN_AI_RESPONSE_MODEL] == DATED
    assert a[semconv.GEN_AI_REQUEST_TEMPERATURE] == 0.2
    assert a[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert a[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 1200  # includes the 800 cached
    assert a[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 800
    assert a[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 300
    assert a[semconv.COST_SOURCE] == "computed"
    want = GPT_4O_MINI.cost(1200, 300, cached=800)
    assert cost_of(span) == want
    assert run.cost_usd == want


async def test_async_chat_with_reasoning_tokens(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="ok", input_tokens=500, output_tokens=400, reasoning_tokens=240))
    r = await aclient(fake_provider).chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    assert isinstance(r, ChatCompletion)
    a = attrs(cap.one_llm())
    assert a[semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 240
    assert a[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 400  # reasoning is inside output, priced once
    assert cost_of(cap.one_llm()) == GPT_4O_MINI.cost(500, 400)


def test_stream_with_usage_records_exact_cost_and_ttfc(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="a streamed answer", input_tokens=400, cached_tokens=100, output_tokens=50))
    stream = client(fake_provider).chat.completions.create(
        model=OPENAI_MODEL, messages=MSGS, stream=True, stream_options={"include_usage": True}
    )
    assert isinstance(stream, openai.Stream)  # the proxy keeps isinstance working
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "a streamed answer"
    a = attrs(cap.one_llm())
    assert a[semconv.REQUEST_STREAM] is True
    assert a[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert semconv.USAGE_ESTIMATED not in a
    assert cost_of(cap.one_llm()) == GPT_4O_MINI.cost(400, 50, cached=100)


def test_stream_without_usage_is_estimated_locally(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="one two three"))
    with client(fake_provider).chat.completions.create(model=OPENAI_MODEL, messages=MSGS, stream=True) as s:
        for _ in s:
            pass
    span = cap.one_llm()
    a = attrs(span)
    assert a[semconv.USAGE_ESTIMATED] is True
    inp, out = a[semconv.GEN_AI_USAGE_INPUT_TOKENS], a[semconv.GEN_AI_USAGE_OUTPUT_TOKENS]
    assert inp > 0 and out > 0
    assert cost_of(span) == GPT_4O_MINI.cost(inp, out)


def test_stream_abandoned_half_way_still_ends_its_span(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="many words in this long streamed reply"))
    stream = client(fake_provider).chat.completions.create(model=OPENAI_MODEL, messages=MSGS, stream=True)
    first = next(iter(stream))
    assert first.choices
    assert cap.llm() == []  # still open while the caller holds the stream
    del stream, first
    gc.collect()
    span = cap.one_llm()
    assert events(span, "flowscope.stream.abandoned")
    assert attrs(span)[semconv.USAGE_ESTIMATED] is True


def test_stream_closed_early_with_close_and_with(cap: Capture, fake_provider: FakeProvider) -> None:
    c = client(fake_provider)
    s = c.chat.completions.create(model=OPENAI_MODEL, messages=MSGS, stream=True)
    next(s)
    s.close()
    with c.chat.completions.create(model=OPENAI_MODEL, messages=MSGS, stream=True) as s2:
        next(s2)
    spans = cap.llm()
    assert len(spans) == 2
    assert all(events(sp, "flowscope.stream.abandoned") for sp in spans)


async def test_async_stream_iterate_and_aclose(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="x y z", input_tokens=30, output_tokens=3))
    c = aclient(fake_provider)
    s = await c.chat.completions.create(
        model=OPENAI_MODEL, messages=MSGS, stream=True, stream_options={"include_usage": True}
    )
    assert isinstance(s, openai.AsyncStream)
    chunks = [ch async for ch in s]
    assert chunks
    s2 = await c.chat.completions.create(model=OPENAI_MODEL, messages=MSGS, stream=True)
    await s2.__anext__()
    await s2.close()
    async with await c.chat.completions.create(model=OPENAI_MODEL, messages=MSGS, stream=True) as s3:
        await s3.__anext__()
    spans = cap.llm()
    assert len(spans) == 3
    assert cost_of(spans[0]) == GPT_4O_MINI.cost(30, 3)
    assert events(spans[1], "flowscope.stream.abandoned") and events(spans[2], "flowscope.stream.abandoned")


class Capital(BaseModel):
    city: str


def test_chat_parse(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text='{"city": "Paris"}', input_tokens=80, output_tokens=7))
    r = client(fake_provider).chat.completions.parse(model=OPENAI_MODEL, messages=MSGS, response_format=Capital)
    assert isinstance(r, ParsedChatCompletion)
    assert r.choices[0].message.parsed == Capital(city="Paris")
    assert cost_of(cap.one_llm()) == GPT_4O_MINI.cost(80, 7)


def test_chat_stream_helper_sync_and_abandoned(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="helper text", input_tokens=20, output_tokens=2))
    c = client(fake_provider)
    with c.chat.completions.stream(
        model=OPENAI_MODEL, messages=MSGS, stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "helper text"
    with c.chat.completions.stream(model=OPENAI_MODEL, messages=MSGS) as stream:
        next(iter(stream))  # leave the rest unread: the helper closes the HTTP response itself
    spans = cap.llm()
    assert len(spans) == 2
    assert cost_of(spans[0]) == GPT_4O_MINI.cost(20, 2)
    assert events(spans[1], "flowscope.stream.abandoned")


async def test_async_chat_stream_helper(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="async helper", input_tokens=21, output_tokens=2))
    async with aclient(fake_provider).chat.completions.stream(
        model=OPENAI_MODEL, messages=MSGS, stream_options={"include_usage": True}
    ) as stream:
        async for _ in stream:
            pass
    assert cost_of(cap.one_llm()) == GPT_4O_MINI.cost(21, 2)


def test_responses_create_and_stream(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(
        Reply(text="resp", input_tokens=1000, cached_tokens=600, output_tokens=120, reasoning_tokens=100),
        Reply(text="streamed resp", input_tokens=300, output_tokens=30),
        Reply(text="helper resp", input_tokens=310, output_tokens=31),
    )
    c = client(fake_provider)
    r = c.responses.create(model=OPENAI_MODEL, input="capital of France?", instructions="be brief")
    assert isinstance(r, Response) and r.output_text == "resp"
    events_seen = [e.type for e in c.responses.create(model=OPENAI_MODEL, input="stream it", stream=True)]
    assert events_seen[-1] == "response.completed"
    with c.responses.stream(model=OPENAI_MODEL, input="helper") as stream:
        assert stream.get_final_response().output_text == "helper resp"
    spans = cap.llm()
    assert [s.name for s in spans] == ["chat gpt-4o-mini"] * 3
    a = attrs(spans[0])
    assert a[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 600
    assert a[semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 100
    assert cost_of(spans[0]) == GPT_4O_MINI.cost(1000, 120, cached=600)
    assert cost_of(spans[1]) == GPT_4O_MINI.cost(300, 30)
    assert cost_of(spans[2]) == GPT_4O_MINI.cost(310, 31)
    assert attrs(spans[1])[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0


async def test_async_responses_stream_helper(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="r", input_tokens=44, output_tokens=4))
    async with aclient(fake_provider).responses.stream(model=OPENAI_MODEL, input="hi") as stream:
        async for _ in stream:
            pass
    assert cost_of(cap.one_llm()) == GPT_4O_MINI.cost(44, 4)


def test_embeddings(cap: Capture, fake_provider: FakeProvider) -> None:
    r = client(fake_provider).embeddings.create(model="text-embedding-3-small", input="four words of input")
    tokens = r.usage.prompt_tokens
    span = cap.one_llm()
    assert span.name == "embeddings text-embedding-3-small"
    assert attrs(span)[semconv.GEN_AI_OPERATION_NAME] == "embeddings"
    assert attrs(span)[semconv.GEN_AI_USAGE_INPUT_TOKENS] == tokens
    assert cost_of(span) == EMBEDDING_3_SMALL.cost(tokens, 0)


def test_with_raw_response_keeps_working(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(
        Reply(text="raw", input_tokens=10, output_tokens=1),
        Reply(text="raw stream", input_tokens=12, output_tokens=2),
    )
    c = client(fake_provider)
    raw = c.chat.completions.with_raw_response.create(model=OPENAI_MODEL, messages=MSGS)
    assert raw.headers.get("x-request-id") is not None or raw.http_response.status_code == 200
    assert raw.parse().choices[0].message.content == "raw"
    raw_stream = c.chat.completions.with_raw_response.create(
        model=OPENAI_MODEL, messages=MSGS, stream=True, stream_options={"include_usage": True}
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in raw_stream.parse() if ch.choices)
    assert text == "raw stream"
    with c.chat.completions.with_streaming_response.create(model=OPENAI_MODEL, messages=MSGS) as resp:
        assert resp.parse().choices[0].message.content
    spans = cap.llm()
    assert len(spans) == 3
    assert cost_of(spans[0]) == GPT_4O_MINI.cost(10, 1)
    assert cost_of(spans[1]) == GPT_4O_MINI.cost(12, 2)
    # the caller reads a streaming response's body itself: honest "unpriced", not a guess
    assert attrs(spans[2])[semconv.COST_SOURCE] == "unpriced"


def test_unknown_model_is_unpriced_never_zero(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="?", input_tokens=100, output_tokens=10))
    with flowscope.run("unpriced") as run:
        client(fake_provider).chat.completions.create(model="acme-private-llm-7", messages=MSGS)
    a = attrs(cap.one_llm())
    assert a[semconv.COST_SOURCE] == "unpriced"
    assert semconv.COST_USD not in a
    assert a[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 100
    assert run.unpriced_calls == 1 and run.llm_calls == 1


def test_error_is_recorded_and_raised(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.fail_next(1, status=400)
    with pytest.raises(openai.BadRequestError):
        client(fake_provider).chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    span = cap.one_llm()
    assert span.status.status_code.name == "ERROR"
    assert attrs(span)[semconv.ERROR_TYPE] == "BadRequestError"
    assert attrs(span)["http.response.status_code"] == 400
    assert semconv.RETRY_COUNT not in attrs(span)  # 400 is not retried


def test_clients_created_before_init_are_traced(fake_provider: FakeProvider) -> None:
    early = client(fake_provider)
    cap = Capture()
    try:
        early.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
        assert len(cap.llm()) == 1
    finally:
        cap.close()


def test_uninstrument_restores_the_client(cap: Capture, fake_provider: FakeProvider) -> None:
    import wrapt
    from openai.resources.chat.completions.completions import Completions

    from flowscope.instrumentation import get_instrumentor

    inst = get_instrumentor("openai")
    inst.uninstrument()
    try:
        assert not isinstance(Completions.__dict__["create"], wrapt.FunctionWrapper)
        client(fake_provider).chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
        assert cap.llm() == []
    finally:
        inst.instrument()
    assert isinstance(Completions.__dict__["create"], wrapt.FunctionWrapper)
    client(fake_provider).chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    assert len(cap.llm()) == 1
