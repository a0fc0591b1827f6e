"""Billing dimensions beyond plain/cached/reasoning tokens (issue 15), through the real
``openai`` and ``anthropic`` clients against the fake provider, sync, async and streaming.

Expected costs are Decimal arithmetic from the providers' published per-million rates,
written out here: never the catalog code's own numbers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal

import anthropic
import openai
import pytest

from flowscope.core import pricing, semconv
from flowscope.core.normalize import normalize_attributes
from flowscope.testing import FakeProvider, Reply
from tests._llm_kit import ANTHROPIC_MODEL, MSGS, Capture, attrs, cost_of

M = Decimal(1_000_000)

# Claude 3.5 Haiku, anthropic.com/pricing: input $0.80, 5-minute cache writes $1 (1.25x),
# 1-hour cache writes $1.60 (2x), cache reads $0.08, output $4 per million tokens.
HAIKU_IN, HAIKU_W5M, HAIKU_W1H, HAIKU_READ, HAIKU_OUT = (
    Decimal("0.80"), Decimal("1.00"), Decimal("1.60"), Decimal("0.08"), Decimal("4"))

# 10k prompt tokens: 1k read from cache, 3k written (1k for 5 minutes, 2k for an hour).
ANTHROPIC_REPLY = dict(text="ok", input_tokens=10_000, cached_tokens=1_000, cache_write_tokens=3_000,
                       cache_write_1h_tokens=2_000, output_tokens=500)
ANTHROPIC_EXPECTED = (6_000 * HAIKU_IN + 1_000 * HAIKU_READ + 1_000 * HAIKU_W5M + 2_000 * HAIKU_W1H
                      + 500 * HAIKU_OUT) / M


def _ant(fp: FakeProvider) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fp.anthropic_base_url, api_key="k")


def _assert_anthropic_cache_writes(span_attrs) -> None:  # type: ignore[no-untyped-def]
    assert span_attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 10_000
    assert span_attrs["gen_ai.usage.cache_write.input_tokens"] == 3_000
    assert span_attrs["gen_ai.usage.cache_creation.input_tokens"] == 3_000
    assert span_attrs["flowscope.usage.cache_write_5m.input_tokens"] == 1_000
    assert span_attrs["flowscope.usage.cache_write_1h.input_tokens"] == 2_000
    assert Decimal(span_attrs[semconv.COST_CACHE_WRITE_USD]) == (1_000 * HAIKU_W5M + 2_000 * HAIKU_W1H) / M


def test_anthropic_cache_writes_by_lifetime_create(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(**ANTHROPIC_REPLY))
    _ant(fake_provider).messages.create(model=ANTHROPIC_MODEL, max_tokens=600, messages=MSGS)
    span = cap.one_llm()
    _assert_anthropic_cache_writes(attrs(span))
    assert cost_of(span) == ANTHROPIC_EXPECTED


def test_anthropic_cache_writes_by_lifetime_stream(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(**ANTHROPIC_REPLY))
    with _ant(fake_provider).messages.stream(model=ANTHROPIC_MODEL, max_tokens=600, messages=MSGS) as s:
        s.until_done()
    fake_provider.script(Reply(**ANTHROPIC_REPLY))
    for _ in _ant(fake_provider).messages.create(model=ANTHROPIC_MODEL, max_tokens=600, messages=MSGS,
                                                 stream=True):
        pass
    spans = cap.llm()
    assert len(spans) == 2
    for span in spans:
        _assert_anthropic_cache_writes(attrs(span))
        assert cost_of(span) == ANTHROPIC_EXPECTED


def test_anthropic_cache_writes_by_lifetime_async(cap: Capture, fake_provider: FakeProvider) -> None:
    client = anthropic.AsyncAnthropic(base_url=fake_provider.anthropic_base_url, api_key="k")

    async def go() -> None:
        fake_provider.script(Reply(**ANTHROPIC_REPLY))
        await client.messages.create(model=ANTHROPIC_MODEL, max_tokens=600, messages=MSGS)
        fake_provider.script(Reply(**ANTHROPIC_REPLY))
        async with client.messages.stream(model=ANTHROPIC_MODEL, max_tokens=600, messages=MSGS) as s:
            await s.until_done()

    asyncio.run(go())
    spans = cap.llm()
    assert len(spans) == 2
    for span in spans:
        _assert_anthropic_cache_writes(attrs(span))
        assert cost_of(span) == ANTHROPIC_EXPECTED


# --- OpenAI: prompt_tokens_details.cache_write_tokens (chat) / input_tokens_details (Responses) --

# A model priced by the user's own file, so that cache writes have a price distinct from input.
PRIVATE_IN, PRIVATE_READ, PRIVATE_WRITE, PRIVATE_OUT = (
    Decimal("2"), Decimal("0.5"), Decimal("2.5"), Decimal("8"))
OPENAI_EXPECTED = (500 * PRIVATE_IN + 200 * PRIVATE_READ + 300 * PRIVATE_WRITE + 100 * PRIVATE_OUT) / M


@pytest.fixture
def private_prices() -> Iterator[Capture]:
    cap = Capture(pricing={"models": [{"provider": "openai", "model": "acme-cache-model", "input_mtok": "2",
                                       "cached_input_mtok": "0.5", "cache_write_mtok": "2.5", "output_mtok": "8"}]})
    try:
        yield cap
    finally:
        cap.close()
        pricing.configure(None)


def test_openai_cache_writes_chat_responses_sync_async_stream(private_prices: Capture,
                                                               fake_provider: FakeProvider) -> None:
    reply = dict(text="ok", input_tokens=1_000, cached_tokens=200, cache_write_tokens=300, output_tokens=100)
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    aclient = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    for _ in range(6):
        fake_provider.script(Reply(**reply))
    client.chat.completions.create(model="acme-cache-model", messages=MSGS)
    for _ in client.chat.completions.create(model="acme-cache-model", messages=MSGS, stream=True,
                                            stream_options={"include_usage": True}):
        pass
    client.responses.create(model="acme-cache-model", input="hi")
    for _ in client.responses.create(model="acme-cache-model", input="hi", stream=True):
        pass

    async def go() -> None:
        await aclient.chat.completions.create(model="acme-cache-model", messages=MSGS)
        await aclient.responses.create(model="acme-cache-model", input="hi")

    asyncio.run(go())
    spans = private_prices.llm()
    assert len(spans) == 6
    for span in spans:
        a = attrs(span)
        assert a["gen_ai.usage.cache_write.input_tokens"] == 300, span.name
        assert a["gen_ai.usage.cache_read.input_tokens"] == 200
        assert cost_of(span) == OPENAI_EXPECTED, span.name


# --- ingest: either OTel name of cache writes, and the 1-hour part --------------------------


@pytest.mark.parametrize("name", ["gen_ai.usage.cache_write.input_tokens", "gen_ai.usage.cache_creation.input_tokens"])
def test_ingest_accepts_both_cache_write_names_and_prices_lifetimes(name: str) -> None:
    span = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": ANTHROPIC_MODEL, "gen_ai.usage.input_tokens": "10000",
            "gen_ai.usage.output_tokens": "500", "gen_ai.usage.cache_read.input_tokens": "1000",
            name: "3000", "flowscope.usage.cache_write_1h.input_tokens": "2000"}
    normalize_attributes(span)
    assert span["gen_ai.usage.cache_creation.input_tokens"] == "3000"
    assert span["gen_ai.usage.cache_write.input_tokens"] == "3000"
    assert span[semconv.COST_SOURCE] == "computed"
    assert Decimal(span[semconv.COST_USD]) == ANTHROPIC_EXPECTED
