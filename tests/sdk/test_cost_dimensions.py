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


# --- service tiers: the tier served selects the price; a tier the catalog cannot price is partial --

# platform.openai.com/docs/pricing, gpt-5 per million tokens: (input, cached input, output)
GPT5 = {"default": (Decimal("1.25"), Decimal("0.125"), Decimal("10")),
        "flex": (Decimal("0.625"), Decimal("0.0625"), Decimal("5")),
        "priority": (Decimal("2.50"), Decimal("0.25"), Decimal("20"))}
TIER_REPLY = dict(text="ok", input_tokens=2_000, cached_tokens=500, output_tokens=300)


def _gpt5(tier: str) -> Decimal:
    inp, cached, out = GPT5[tier]
    return (1_500 * inp + 500 * cached + 300 * out) / M


@pytest.mark.parametrize("tier", ["default", "flex", "priority"])
def test_openai_service_tier_selects_the_price(cap: Capture, fake_provider: FakeProvider, tier: str) -> None:
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    aclient = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    for _ in range(5):
        fake_provider.script(Reply(**TIER_REPLY, service_tier=tier))
    client.chat.completions.create(model="gpt-5", messages=MSGS, service_tier=tier)
    for _ in client.chat.completions.create(model="gpt-5", messages=MSGS, service_tier=tier, stream=True,
                                            stream_options={"include_usage": True}):
        pass
    client.responses.create(model="gpt-5", input="hi", service_tier=tier)
    for _ in client.responses.create(model="gpt-5", input="hi", service_tier=tier, stream=True):
        pass

    async def go() -> None:
        await aclient.chat.completions.create(model="gpt-5", messages=MSGS, service_tier=tier)

    asyncio.run(go())
    spans = cap.llm()
    assert len(spans) == 5
    for span in spans:
        a = attrs(span)
        assert a["flowscope.response.service_tier"] == tier, span.name
        assert a[semconv.COST_SOURCE] == "computed"
        assert cost_of(span) == _gpt5(tier), span.name


def test_openai_tier_without_a_catalog_price_is_partial(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(**TIER_REPLY, service_tier="scale"))
    openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k").chat.completions.create(
        model="gpt-5", messages=MSGS)
    a = attrs(cap.one_llm())
    assert a["flowscope.response.service_tier"] == "scale"
    assert a[semconv.COST_SOURCE] == "partial"
    assert a["flowscope.cost.unpriced_parts"] == "service_tier:scale"
    assert Decimal(a[semconv.COST_USD]) == _gpt5("default")  # the part we know: a lower bound


def test_anthropic_priority_tier_is_partial_not_guessed(cap: Capture, fake_provider: FakeProvider) -> None:
    reply = dict(text="ok", input_tokens=1_000, output_tokens=100, service_tier="priority")
    fake_provider.script(Reply(**reply))
    _ant(fake_provider).messages.create(model=ANTHROPIC_MODEL, max_tokens=200, messages=MSGS)
    fake_provider.script(Reply(**reply))
    with _ant(fake_provider).messages.stream(model=ANTHROPIC_MODEL, max_tokens=200, messages=MSGS) as s:
        s.until_done()
    for span in cap.llm():
        a = attrs(span)
        assert a["flowscope.response.service_tier"] == "priority"
        assert a[semconv.COST_SOURCE] == "partial"
        assert a["flowscope.cost.unpriced_parts"] == "service_tier:priority"
        assert Decimal(a[semconv.COST_USD]) == (1_000 * HAIKU_IN + 100 * HAIKU_OUT) / M


def test_anthropic_batch_tier_priced_at_the_batch_rate(cap: Capture, fake_provider: FakeProvider) -> None:
    # Claude Sonnet 4.5 batch: half of $3 / $15 per million tokens
    fake_provider.script(Reply(text="ok", input_tokens=1_000, output_tokens=100, service_tier="batch"))
    _ant(fake_provider).messages.create(model="claude-sonnet-4-5", max_tokens=200, messages=MSGS)
    a = attrs(cap.one_llm())
    assert a["flowscope.response.service_tier"] == "batch" and a[semconv.COST_SOURCE] == "computed"
    assert Decimal(a[semconv.COST_USD]) == (1_000 * Decimal("1.50") + 100 * Decimal("7.50")) / M


def test_standard_tier_is_the_list_price(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="ok", input_tokens=1_000, output_tokens=100))  # "standard"
    _ant(fake_provider).messages.create(model=ANTHROPIC_MODEL, max_tokens=200, messages=MSGS)
    a = attrs(cap.one_llm())
    assert a["flowscope.response.service_tier"] == "standard" and a[semconv.COST_SOURCE] == "computed"
    assert Decimal(a[semconv.COST_USD]) == (1_000 * HAIKU_IN + 100 * HAIKU_OUT) / M


@pytest.mark.parametrize("key", ["flowscope.response.service_tier", "openai.response.service_tier"])
def test_ingest_prices_a_foreign_span_at_its_service_tier(key: str) -> None:
    span = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-5",
            "gen_ai.usage.input_tokens": "2000", "gen_ai.usage.cache_read.input_tokens": "500",
            "gen_ai.usage.output_tokens": "300", key: "flex"}
    normalize_attributes(span)
    assert span[semconv.COST_SOURCE] == "computed"
    assert Decimal(span[semconv.COST_USD]) == _gpt5("flex")


# --- modalities: audio and image tokens at their own rates; no rate = partial, part named ------

# platform.openai.com/docs/pricing, per million tokens. gpt-audio: text $2.50 in / $10 out,
# audio $32 in / $64 out. gpt-image-1: text $5 in, image $10 in, $40 out.
AUDIO_REPLY = dict(text="ok", input_tokens=1_000, audio_input_tokens=400, output_tokens=500,
                   audio_output_tokens=300)


def test_openai_audio_tokens_at_audio_rates(cap: Capture, fake_provider: FakeProvider) -> None:
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    aclient = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    for _ in range(3):
        fake_provider.script(Reply(**AUDIO_REPLY))
    client.chat.completions.create(model="gpt-audio", messages=MSGS)
    for _ in client.chat.completions.create(model="gpt-audio", messages=MSGS, stream=True,
                                            stream_options={"include_usage": True}):
        pass

    async def go() -> None:
        await aclient.chat.completions.create(model="gpt-audio", messages=MSGS)

    asyncio.run(go())
    expected = (600 * Decimal("2.50") + 400 * Decimal("32") + 200 * Decimal("10") + 300 * Decimal("64")) / M
    spans = cap.llm()
    assert len(spans) == 3
    for span in spans:
        a = attrs(span)
        assert a["flowscope.usage.audio.input_tokens"] == 400
        assert a["flowscope.usage.audio.output_tokens"] == 300
        assert a[semconv.COST_SOURCE] == "computed"
        assert cost_of(span) == expected


def test_audio_without_a_catalog_rate_is_partial_with_the_part_named(cap: Capture,
                                                                     fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(**AUDIO_REPLY))
    openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k").chat.completions.create(
        model="gpt-4o-audio-preview", messages=MSGS)
    a = attrs(cap.one_llm())
    assert a[semconv.COST_SOURCE] == "partial"
    assert a["flowscope.cost.unpriced_parts"] == "input_audio_tokens,output_audio_tokens"
    # the text-rate figure is kept, marked: gpt-4o-audio-preview text $2.50 / $10
    assert Decimal(a[semconv.COST_USD]) == (1_000 * Decimal("2.50") + 500 * Decimal("10")) / M


def test_openai_image_input_tokens_at_the_image_rate_responses(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="ok", input_tokens=1_000, image_input_tokens=600, output_tokens=100))
    openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k").responses.create(
        model="gpt-image-1", input="draw")
    a = attrs(cap.one_llm())
    assert a["flowscope.usage.image.input_tokens"] == 600
    assert a[semconv.COST_SOURCE] == "computed"
    assert Decimal(a[semconv.COST_USD]) == (400 * Decimal("5") + 600 * Decimal("10") + 100 * Decimal("40")) / M


# --- model ids with provider prefixes and routing decoration resolve to the catalog model ------

HAIKU_1K_100 = (1_000 * HAIKU_IN + 100 * HAIKU_OUT) / M
MINI_1K_100 = (1_000 * Decimal("0.15") + 100 * Decimal("0.60")) / M  # gpt-4o-mini $0.15 / $0.60


@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        ("anthropic", "anthropic/claude-3-5-haiku-20241022", HAIKU_1K_100),
        ("openai", "openai/gpt-4o-mini", MINI_1K_100),
        ("openai", "gpt-4o-mini:nitro", MINI_1K_100),
        (None, "openai/gpt-4o-mini:floor", MINI_1K_100),
        ("aws.bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0", HAIKU_1K_100),
        (None, "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
               "us.anthropic.claude-3-5-haiku-20241022-v1:0", HAIKU_1K_100),
    ],
)
def test_decorated_model_ids_resolve(provider: str | None, model: str, expected: Decimal) -> None:
    cost = pricing.PricingCatalog().price(model, provider, pricing.Usage(input_tokens=1_000, output_tokens=100))
    assert cost.total_usd == expected, (cost.provider, cost.model)


# --- context tiers: over the threshold every token pays the tier rate, at the boundary not yet ---

# Claude Sonnet 4.5: $3 / $15 per million up to 200K prompt tokens; above, $6 / $22.50.
@pytest.mark.parametrize(("prompt", "rates"), [(200_000, ("3", "15")), (200_001, ("6", "22.50"))])
def test_long_context_tier_at_the_boundary(cap: Capture, fake_provider: FakeProvider, prompt: int,
                                           rates: tuple[str, str]) -> None:
    fake_provider.script(Reply(text="ok", input_tokens=prompt, output_tokens=1_000))
    _ant(fake_provider).messages.create(model="claude-sonnet-4-5", max_tokens=2_000, messages=MSGS)
    assert cost_of(cap.one_llm()) == (prompt * Decimal(rates[0]) + 1_000 * Decimal(rates[1])) / M


# --- provider-reported cost (OpenRouter / LiteLLM proxy usage.cost) kept beside the computed one --


def test_router_reported_cost_is_the_cost_with_the_computed_beside(cap: Capture,
                                                                   fake_provider: FakeProvider) -> None:
    import flowscope

    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    with flowscope.run("router-billed") as run:
        fake_provider.script(Reply(text="ok", input_tokens=1_000, output_tokens=100, provider_cost="0.000321"))
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSGS)
        fake_provider.script(Reply(text="ok", input_tokens=1_000, output_tokens=100, provider_cost="0.000321"))
        for _ in client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSGS, stream=True,
                                                stream_options={"include_usage": True}):
            pass
        fake_provider.script(Reply(text="ok", input_tokens=1_000, output_tokens=100, provider_cost="0.0005"))
        client.chat.completions.create(model="acme/unknown-routed-model", messages=MSGS)
    spans = cap.llm()
    assert len(spans) == 3
    for span in spans[:2]:
        a = attrs(span)
        assert a[semconv.COST_SOURCE] == "provider"
        assert Decimal(a[semconv.COST_USD]) == Decimal("0.000321")
        assert Decimal(a["flowscope.cost.computed_usd"]) == MINI_1K_100
        assert "flowscope.pricing.version" in a
    unknown = attrs(spans[2])
    assert unknown[semconv.COST_SOURCE] == "provider" and Decimal(unknown[semconv.COST_USD]) == Decimal("0.0005")
    assert "flowscope.cost.computed_usd" not in unknown
    assert run.cost_usd == Decimal("0.000321") * 2 + Decimal("0.0005") and run.unpriced_calls == 0


def test_ingest_keeps_a_reported_cost_and_computes_beside_it() -> None:
    span = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": "1000", "gen_ai.usage.output_tokens": "100", "gen_ai.usage.cost": "0.0009"}
    normalize_attributes(span)
    assert span[semconv.COST_SOURCE] == "provider" and Decimal(span[semconv.COST_USD]) == Decimal("0.0009")
    assert Decimal(span["flowscope.cost.computed_usd"]) == MINI_1K_100


# --- server-side tool fees, per request -----------------------------------------------------

# Anthropic web search: $10 per 1,000 searches; web fetch: no fee beyond its tokens.
# OpenAI Responses tools: web search $10 per 1,000 calls, file search $2.50 per 1,000 calls.
THOUSAND = Decimal(1_000)


def test_anthropic_server_tool_use_priced_per_request(cap: Capture, fake_provider: FakeProvider) -> None:
    reply = dict(text="ok", input_tokens=1_000, output_tokens=100, web_search_requests=3, web_fetch_requests=2)
    fake_provider.script(Reply(**reply))
    _ant(fake_provider).messages.create(model=ANTHROPIC_MODEL, max_tokens=200, messages=MSGS)
    fake_provider.script(Reply(**reply))
    with _ant(fake_provider).messages.stream(model=ANTHROPIC_MODEL, max_tokens=200, messages=MSGS) as s:
        s.until_done()
    spans = cap.llm()
    assert len(spans) == 2
    for span in spans:
        a = attrs(span)
        assert a["flowscope.usage.web_search.requests"] == 3 and a["flowscope.usage.web_fetch.requests"] == 2
        assert Decimal(a["flowscope.cost.tool_usd"]) == 3 * Decimal("10") / THOUSAND
        assert cost_of(span) == HAIKU_1K_100 + 3 * Decimal("10") / THOUSAND


def test_openai_responses_search_calls_priced_per_request(cap: Capture, fake_provider: FakeProvider) -> None:
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    for _ in range(2):
        fake_provider.script(Reply(text="ok", input_tokens=1_000, output_tokens=100, web_search_requests=2,
                                   file_search_requests=1))
    client.responses.create(model="gpt-4o-mini", input="search")
    for _ in client.responses.create(model="gpt-4o-mini", input="search", stream=True):
        pass
    fees = 2 * Decimal("10") / THOUSAND + 1 * Decimal("2.50") / THOUSAND
    spans = cap.llm()
    assert len(spans) == 2
    for span in spans:
        a = attrs(span)
        assert a["flowscope.usage.web_search.requests"] == 2 and a["flowscope.usage.file_search.requests"] == 1
        assert cost_of(span) == MINI_1K_100 + fees


# --- OpenAI Batch API discount, Azure deployment names ------------------------------------------


def test_openai_batch_tier_priced_at_the_batch_rate(cap: Capture, fake_provider: FakeProvider) -> None:
    # gpt-4o-mini through the Batch API: half of $0.15 / $0.60 per million tokens
    fake_provider.script(Reply(text="ok", input_tokens=1_000, output_tokens=100, service_tier="batch"))
    openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k").chat.completions.create(
        model="gpt-4o-mini", messages=MSGS)
    a = attrs(cap.one_llm())
    assert a["flowscope.response.service_tier"] == "batch" and a[semconv.COST_SOURCE] == "computed"
    assert Decimal(a[semconv.COST_USD]) == (1_000 * Decimal("0.075") + 100 * Decimal("0.30")) / M


@pytest.fixture
def azure_deployments() -> Iterator[Capture]:
    cap = Capture(pricing={"aliases": {"Prod-Chat": "gpt-4o-mini", "eu-embed": "text-embedding-3-small"},
                           "models": []})
    try:
        yield cap
    finally:
        cap.close()
        pricing.configure(None)


def test_azure_deployment_names_priced_as_the_model_they_deploy(azure_deployments: Capture,
                                                               fake_provider: FakeProvider) -> None:
    # Azure OpenAI reports the deployment's name; the pricing file says which model it deploys (gpt-4o-mini)
    fake_provider.script(Reply(text="ok", input_tokens=1_000, output_tokens=100, model="prod-chat"))
    openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k").chat.completions.create(
        model="prod-chat", messages=MSGS)
    a = attrs(azure_deployments.one_llm())
    assert a[semconv.COST_SOURCE] == "computed"
    assert Decimal(a[semconv.COST_USD]) == (1_000 * Decimal("0.15") + 100 * Decimal("0.60")) / M
    # the collector prices a foreign Azure span the same way
    span = {"gen_ai.operation.name": "chat", "gen_ai.system": "az.ai.openai", "gen_ai.request.model": "PROD-CHAT",
            "gen_ai.usage.input_tokens": "1000", "gen_ai.usage.output_tokens": "100"}
    normalize_attributes(span)
    assert Decimal(span[semconv.COST_USD]) == (1_000 * Decimal("0.15") + 100 * Decimal("0.60")) / M
    assert pricing.get_catalog().output_limit("prod-chat", "azure") == 16_384


@pytest.mark.parametrize("aliases", [["prod-chat"], {"prod-chat": ""}, {"prod-chat": 4}])
def test_bad_aliases_are_refused_naming_the_file(aliases: object) -> None:
    with pytest.raises(pricing.PricingFileError, match="aliases"):
        pricing.PricingCatalog({"aliases": aliases, "models": []})
