"""The real anthropic client against the fake provider: usage normalisation and exact cost.

Anthropic's ``input_tokens`` excludes cache reads and writes; the span's
``gen_ai.usage.input_tokens`` must include them, and the cost must price each
kind once at its own rate.
"""

from __future__ import annotations

import gc

import anthropic
from anthropic.types import Message

import flowscope
from flowscope.core import semconv
from flowscope.testing import FakeProvider, Reply
from tests._llm_kit import ANTHROPIC_MODEL, CLAUDE_HAIKU_35, MSGS, Capture, attrs, cost_of, events


def client(fp: FakeProvider, **kw: object) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fp.anthropic_base_url, api_key="sk-ant-test", **kw)  # type: ignore[arg-type]


def aclient(fp: FakeProvider, **kw: object) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=fp.anthropic_base_url, api_key="sk-ant-test", **kw)  # type: ignore[arg-type]


CACHED = Reply(text="Paris", input_tokens=2000, cached_tokens=1500, cache_write_tokens=300, output_tokens=120)


def test_create_adds_cache_tokens_back(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(CACHED)
    with flowscope.run("claude") as run:
        m = client(fake_provider).messages.create(
            model=ANTHROPIC_MODEL, max_tokens=256, system="be brief", messages=MSGS
        )
    assert isinstance(m, Message)
    assert m.usage.input_tokens == 200  # what the wire says: uncached only
    span = cap.one_llm()
    a = attrs(span)
    assert span.name == f"chat {ANTHROPIC_MODEL}"
    assert a[semconv.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert a[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 2000
    assert a[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 1500
    assert a[semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == 300
    assert a[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 120
    assert a[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert a[semconv.GEN_AI_REQUEST_MAX_TOKENS] == 256
    want = CLAUDE_HAIKU_35.cost(2000, 120, cached=1500, write=300)
    assert cost_of(span) == want
    assert run.cost_usd == want
    # the per-kind breakdown adds up to the total
    parts = [semconv.COST_INPUT_USD, semconv.COST_CACHED_INPUT_USD, semconv.COST_CACHE_WRITE_USD,
             semconv.COST_OUTPUT_USD]
    from decimal import Decimal

    assert sum(Decimal(a[p]) for p in parts) == want


async def test_async_create(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="hi", input_tokens=50, output_tokens=5))
    m = await aclient(fake_provider).messages.create(model=ANTHROPIC_MODEL, max_tokens=10, messages=MSGS)
    assert isinstance(m, Message)
    assert cost_of(cap.one_llm()) == CLAUDE_HAIKU_35.cost(50, 5)


def test_stream_usage_is_overwritten_not_summed(cap: Capture, fake_provider: FakeProvider) -> None:
    # message_start reports the input and 1 output token; message_delta repeats the
    # cumulative counts. Adding them would double the input tokens.
    fake_provider.script(CACHED)
    stream = client(fake_provider).messages.create(
        model=ANTHROPIC_MODEL, max_tokens=256, messages=MSGS, stream=True
    )
    assert isinstance(stream, anthropic.Stream)
    kinds = [event.type for event in stream]
    assert kinds[0] == "message_start" and "message_delta" in kinds
    span = cap.one_llm()
    a = attrs(span)
    assert a[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 2000
    assert a[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 120
    assert a[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert semconv.USAGE_ESTIMATED not in a
    assert cost_of(span) == CLAUDE_HAIKU_35.cost(2000, 120, cached=1500, write=300)


def test_thinking_tokens_are_reasoning_inside_output(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="42", input_tokens=100, output_tokens=900, reasoning_tokens=800))
    client(fake_provider).messages.create(model=ANTHROPIC_MODEL, max_tokens=1000, messages=MSGS)
    a = attrs(cap.one_llm())
    assert a[semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 800
    assert cost_of(cap.one_llm()) == CLAUDE_HAIKU_35.cost(100, 900)


def test_stream_helper_sync(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(CACHED)
    with client(fake_provider).messages.stream(model=ANTHROPIC_MODEL, max_tokens=256, messages=MSGS) as s:
        final = s.get_final_message()
    assert final.content[0].text == "Paris"  # type: ignore[union-attr]
    assert cost_of(cap.one_llm()) == CLAUDE_HAIKU_35.cost(2000, 120, cached=1500, write=300)


async def test_stream_helper_async_and_async_stream(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(
        Reply(text="one", input_tokens=60, output_tokens=6), Reply(text="two", input_tokens=70, output_tokens=7)
    )
    c = aclient(fake_provider)
    async with c.messages.stream(model=ANTHROPIC_MODEL, max_tokens=64, messages=MSGS) as s:
        async for _ in s:
            pass
    raw = await c.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=MSGS, stream=True)
    assert isinstance(raw, anthropic.AsyncStream)
    async for _ in raw:
        pass
    spans = cap.llm()
    assert [cost_of(s) for s in spans] == [CLAUDE_HAIKU_35.cost(60, 6), CLAUDE_HAIKU_35.cost(70, 7)]


def test_stream_helper_left_early_ends_span(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="a long reply that is never fully read", input_tokens=40, output_tokens=9))
    with client(fake_provider).messages.stream(model=ANTHROPIC_MODEL, max_tokens=64, messages=MSGS) as s:
        next(iter(s))
    span = cap.one_llm()
    assert events(span, "flowscope.stream.abandoned")
    # message_start already carried the input tokens; the output is what arrived so far
    assert attrs(span)[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 40


def test_raw_stream_dropped_half_way(cap: Capture, fake_provider: FakeProvider) -> None:
    stream = client(fake_provider).messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=MSGS, stream=True)
    next(iter(stream))
    del stream
    gc.collect()
    assert events(cap.one_llm(), "flowscope.stream.abandoned")


def test_parse_and_raw_response(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="hello", input_tokens=11, output_tokens=1))
    raw = client(fake_provider).messages.with_raw_response.create(model=ANTHROPIC_MODEL, max_tokens=8, messages=MSGS)
    assert raw.parse().content[0].text == "hello"  # type: ignore[union-attr]
    assert cost_of(cap.one_llm()) == CLAUDE_HAIKU_35.cost(11, 1)


def test_clients_own_span_is_not_a_second_llm_call(cap: Capture, fake_provider: FakeProvider) -> None:
    client(fake_provider).messages.create(model=ANTHROPIC_MODEL, max_tokens=8, messages=MSGS)
    spans = cap.spans()
    own = [s for s in spans if s.name == "anthropic.messages.create"]
    ours = cap.one_llm()
    if own:  # anthropic>=2 traces its API calls itself
        assert attrs(own[0])[semconv.SPAN_KIND] == "http"
        assert own[0].parent is not None and own[0].parent.span_id == ours.context.span_id
