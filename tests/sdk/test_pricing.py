"""Pricing engine against the real genai-prices data.

Expected costs are computed here from hand-written per-million-token prices
(checked against genai-prices 0.2.3 data), not read back from the catalog, so
a regression in our arithmetic or matching cannot hide behind itself.
"""

from __future__ import annotations

import hashlib
import json
import threading
import timeit
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from flowscope.core import pricing, semconv
from flowscope.core.pricing import Cost, PricingCatalog, Usage, format_usd
from flowscope.core.pricing import catalog as catalog_module

UTC = timezone.utc
M = Decimal(1_000_000)


def usd(tokens: int, per_mtok: str) -> Decimal:
    return Decimal(tokens) * Decimal(per_mtok) / M


@pytest.fixture(scope="module")
def catalog() -> PricingCatalog:
    return PricingCatalog()


@pytest.fixture
def reset_default(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(pricing.PRICING_FILE_ENV, raising=False)
    monkeypatch.setattr(catalog_module, "_default", None)
    yield
    catalog_module._default = None


def write(tmp_path: Path, name: str, content: str | dict) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


# --- catalog prices ---------------------------------------------------------


def test_gpt_4o_mini_dated_snapshot_with_cached_input(catalog: PricingCatalog) -> None:
    usage = Usage(input_tokens=12_000, output_tokens=800, cache_read_tokens=4_000)
    cost = catalog.price("gpt-4o-mini-2024-07-18", "openai", usage)
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per MTok
    assert cost.input_usd == usd(8_000, "0.15")
    assert cost.cached_input_usd == usd(4_000, "0.075")
    assert cost.cache_write_usd == 0
    assert cost.output_usd == usd(800, "0.60")
    assert cost.total_usd == usd(8_000, "0.15") + usd(4_000, "0.075") + usd(800, "0.60") == Decimal("0.00198")
    assert (cost.source, cost.provider, cost.model) == ("computed", "openai", "gpt-4o-mini")
    assert cost.pricing_version.startswith("genai-prices ")


def test_gpt_4o_and_its_differently_priced_first_snapshot(catalog: PricingCatalog) -> None:
    usage = Usage(input_tokens=1_000, output_tokens=1_000, cache_read_tokens=400)
    gpt4o = catalog.price("gpt-4o-2024-11-20", "openai", usage)
    assert gpt4o.model == "gpt-4o"
    assert gpt4o.total_usd == usd(600, "2.50") + usd(400, "1.25") + usd(1_000, "10")
    # gpt-4o-2024-05-13 is its own catalog entry ($5/$15) with no cached-input
    # price: cached tokens are then billed at the input price.
    first = catalog.price("gpt-4o-2024-05-13", "openai", usage)
    assert first.model == "gpt-4o-2024-05-13"
    assert first.cached_input_usd == usd(400, "5")
    assert first.total_usd == usd(1_000, "5") + usd(1_000, "15")


def test_reasoning_tokens_are_output_tokens_without_a_reasoning_price(catalog: PricingCatalog) -> None:
    usage = Usage(input_tokens=2_000, output_tokens=5_000, reasoning_tokens=4_000)
    cost = catalog.price("o3-mini-2025-01-31", "openai", usage)
    # o3-mini: $1.10 input, $4.40 output; reasoning is inside output_tokens
    assert cost.output_usd == usd(5_000, "4.40")
    assert cost.total_usd == usd(2_000, "1.10") + usd(5_000, "4.40")
    with_and_without = catalog.price("o3-mini", "openai", Usage(input_tokens=2_000, output_tokens=5_000))
    assert with_and_without.total_usd == cost.total_usd


def test_separate_reasoning_price_is_added_to_output(catalog: PricingCatalog) -> None:
    usage = Usage(input_tokens=1_000, output_tokens=3_000, reasoning_tokens=2_000)
    cost = catalog.price("sonar-deep-research", "perplexity", usage)
    # $2 input, $8 output, $3 reasoning per MTok
    assert cost.output_usd == usd(1_000, "8") + usd(2_000, "3")
    assert cost.total_usd == usd(1_000, "2") + usd(1_000, "8") + usd(2_000, "3")


def test_per_request_fee_is_in_total_only(catalog: PricingCatalog) -> None:
    cost = catalog.price("sonar", "perplexity", Usage(input_tokens=1_000, output_tokens=1_000))
    parts = cost.input_usd + cost.cached_input_usd + cost.cache_write_usd + cost.output_usd
    assert parts == usd(1_000, "1") + usd(1_000, "1")
    assert cost.total_usd == parts + Decimal("12") / 1000  # $12 per thousand requests


def test_anthropic_cache_write_and_read(catalog: PricingCatalog) -> None:
    # Anthropic reports input excluding cache; normalised: 1000 + 30000 + 5000.
    usage = Usage(
        input_tokens=36_000, output_tokens=1_200, cache_read_tokens=30_000, cache_write_tokens=5_000
    )
    cost = catalog.price("claude-3-5-haiku-20241022", "anthropic", usage)
    # claude-3-5-haiku: $0.80 input, $0.08 cache read, $1.00 cache write, $4 output
    assert cost.input_usd == usd(1_000, "0.80")
    assert cost.cached_input_usd == usd(30_000, "0.08")
    assert cost.cache_write_usd == usd(5_000, "1.00")
    assert cost.output_usd == usd(1_200, "4")
    assert cost.total_usd == Decimal("0.013")
    assert cost.model == "claude-3-5-haiku-latest"

    sonnet = catalog.price("claude-sonnet-4-20250514", "anthropic", usage)
    # claude-sonnet-4: $3 input, $0.30 cache read, $3.75 cache write, $15 output
    assert sonnet.total_usd == usd(1_000, "3") + usd(30_000, "0.30") + usd(5_000, "3.75") + usd(1_200, "15")
    assert sonnet.model == "claude-sonnet-4-0"


def test_context_tier_switches_on_total_input_including_cache(catalog: PricingCatalog) -> None:
    # claude-sonnet-4-5: above 200k input tokens every token pays the long-context rate
    # ($3 -> $6 input, $0.30 -> $0.60 read, $3.75 -> $7.50 write, $15 -> $22.50 output)
    at_threshold = Usage(input_tokens=200_000, output_tokens=1_000, cache_read_tokens=150_000)
    cost = catalog.price("claude-sonnet-4-5-20250929", "anthropic", at_threshold)
    assert cost.total_usd == usd(50_000, "3") + usd(150_000, "0.30") + usd(1_000, "15")

    above = Usage(input_tokens=200_001, output_tokens=1_000, cache_read_tokens=150_000, cache_write_tokens=1)
    cost = catalog.price("claude-sonnet-4-5", "anthropic", above)
    assert cost.input_usd == usd(50_000, "6")
    assert cost.cached_input_usd == usd(150_000, "0.60")
    assert cost.cache_write_usd == usd(1, "7.50")
    assert cost.output_usd == usd(1_000, "22.50")


def test_gemini_1_5_pro_tier_via_otel_provider_name(catalog: PricingCatalog) -> None:
    # gemini-1.5-pro: $1.25 / $5 up to 128k prompt tokens, $2.50 / $10 above
    small = catalog.price(
        "gemini-1.5-pro-002", "gcp.vertex_ai", Usage(input_tokens=128_000, output_tokens=500)
    )
    assert small.total_usd == usd(128_000, "1.25") + usd(500, "5")
    big = catalog.price("gemini-1.5-pro", "gcp.gemini", Usage(input_tokens=128_001, output_tokens=500))
    assert big.total_usd == usd(128_001, "2.50") + usd(500, "10")
    assert big.provider == "google"


def test_effective_date_selects_price_in_force(catalog: PricingCatalog) -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    # OpenAI cut o3 from $10/$40 to $2/$8 on 2025-06-10.
    before = catalog.price("o3-2025-04-16", "openai", usage, at=datetime(2025, 6, 9, 23, 59, tzinfo=UTC))
    after = catalog.price("o3-2025-04-16", "openai", usage, at=datetime(2025, 6, 10))
    assert before.total_usd == Decimal("50")
    assert after.total_usd == Decimal("10")
    # Default is now: long after the cut.
    assert catalog.price("o3", "openai", usage).total_usd == Decimal("10")


def test_date_removes_long_context_tier(catalog: PricingCatalog) -> None:
    # claude-sonnet-4-6 had a >200k tier until 2026-03-13, flat $3/$15 from then on.
    usage = Usage(input_tokens=300_000, output_tokens=10_000)
    old = catalog.price("claude-sonnet-4-6", "anthropic", usage, at=datetime(2026, 3, 12))
    new = catalog.price("claude-sonnet-4-6", "anthropic", usage, at=datetime(2026, 3, 13))
    assert old.total_usd == usd(300_000, "6") + usd(10_000, "22.5")
    assert new.total_usd == usd(300_000, "3") + usd(10_000, "15")


def test_time_of_day_price(catalog: PricingCatalog) -> None:
    # deepseek-chat: $0.27/$1.10 between 00:30 and 16:30 UTC, half price otherwise
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, cache_read_tokens=500_000)
    peak = catalog.price("deepseek-chat", "deepseek", usage, at=datetime(2026, 1, 1, 12, tzinfo=UTC))
    off = catalog.price("deepseek-chat", "deepseek", usage, at=datetime(2026, 1, 1, 20, tzinfo=UTC))
    assert peak.total_usd == usd(500_000, "0.27") + usd(500_000, "0.07") + usd(1_000_000, "1.10")
    assert off.total_usd == usd(500_000, "0.135") + usd(500_000, "0.035") + usd(1_000_000, "0.55")


def test_price_context_selects_variant(catalog: PricingCatalog) -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    at = datetime(2026, 11, 1, tzinfo=UTC)
    standard = catalog.price("gpt-4o-2024-05-13", "openai", usage, at=at)
    priority = catalog.price(
        "gpt-4o-2024-05-13", "openai", usage, at=at, price_context={"service_tier": "priority"}
    )
    assert standard.total_usd == Decimal("20")  # $5 + $15
    assert priority.total_usd == Decimal("35")  # $8.75 + $26.25


@pytest.mark.parametrize(
    ("provider", "model", "expected_provider", "in_mtok", "out_mtok"),
    [
        ("azure.ai.openai", "gpt-4o", "azure", "2.5", "10"),  # Azure falls back to OpenAI prices
        ("aws.bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0", "aws", "3", "15"),
        ("gcp.vertex_ai", "claude-sonnet-4@20250514", "google", "3", "15"),
        ("x_ai", "grok-3", "x-ai", "3", "15"),
        ("mistral_ai", "mistral-large-latest", "mistral", None, None),
        (None, "gpt-4o-mini", "openai", "0.15", "0.60"),
        (None, "claude-3-5-haiku-latest", "anthropic", "0.80", "4"),
        (None, "openai/gpt-4o-mini", "openai", "0.15", "0.60"),
        ("openai", "GPT-4o-Mini", "openai", "0.15", "0.60"),
    ],
)
def test_provider_name_mapping(
    catalog: PricingCatalog,
    provider: str | None,
    model: str,
    expected_provider: str,
    in_mtok: str | None,
    out_mtok: str | None,
) -> None:
    cost = catalog.price(model, provider, Usage(input_tokens=1_000, output_tokens=100))
    assert cost.source == "computed"
    assert cost.provider == expected_provider
    if in_mtok is not None:
        assert cost.total_usd == usd(1_000, in_mtok) + usd(100, out_mtok)


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("totally-unknown-model", "openai"),
        ("totally-unknown-model", None),
        ("gpt-4o", "ollama"),  # unknown provider: no guessing from the model name
        ("", "openai"),
    ],
)
def test_unknown_is_unpriced_never_zero(catalog: PricingCatalog, model: str, provider: str | None) -> None:
    cost = catalog.price(model, provider, Usage(input_tokens=10, output_tokens=10))
    assert cost.total_usd is None
    assert cost.input_usd is cost.output_usd is cost.cached_input_usd is cost.cache_write_usd is None
    assert cost.source == "unpriced"
    assert not cost.priced
    assert cost.model is None
    assert cost.as_attributes() == {
        semconv.COST_SOURCE: semconv.COST_SOURCE_UNPRICED,
        semconv.PRICING_VERSION: catalog.version,
    }


def test_zero_usage_on_known_model_is_zero_not_unpriced(catalog: PricingCatalog) -> None:
    cost = catalog.price("gpt-4o", "openai", Usage())
    assert cost.total_usd == Decimal(0)
    assert cost.source == "computed"


def test_usage_mapping_accepts_otel_names(catalog: PricingCatalog) -> None:
    attrs = {
        semconv.GEN_AI_USAGE_INPUT_TOKENS: 1_000,
        semconv.GEN_AI_USAGE_OUTPUT_TOKENS: "200",
        semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 400.0,
        "service.name": "ignored",
    }
    cost = pricing.price("gpt-4o-mini", "openai", attrs)
    assert cost.total_usd == usd(600, "0.15") + usd(400, "0.075") + usd(200, "0.60")
    assert catalog.price("gpt-4o-mini", "openai", {"input_tokens": 1_000}).total_usd == usd(1_000, "0.15")


def test_inconsistent_or_invalid_usage_raises(catalog: PricingCatalog) -> None:
    with pytest.raises(ValueError, match="input_tokens must include cached tokens"):
        catalog.price("claude-sonnet-4", "anthropic", Usage(input_tokens=10, cache_read_tokens=100))
    with pytest.raises(ValueError, match="reasoning"):
        catalog.price("o3-mini", "openai", Usage(output_tokens=1, reasoning_tokens=2))
    with pytest.raises(ValueError):
        Usage(input_tokens=-1)
    with pytest.raises(TypeError):
        Usage(input_tokens=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Usage.from_mapping({"input_tokens": 1.5})


def test_as_attributes_are_normalised_decimal_strings(catalog: PricingCatalog) -> None:
    cost = catalog.price("gpt-4o-mini", "openai", Usage(input_tokens=1_000, output_tokens=850))
    assert cost.as_attributes() == {
        semconv.COST_USD: "0.00066",
        semconv.COST_INPUT_USD: "0.00015",
        semconv.COST_CACHED_INPUT_USD: "0",
        semconv.COST_CACHE_WRITE_USD: "0",
        semconv.COST_OUTPUT_USD: "0.00051",
        semconv.COST_SOURCE: "computed",
        semconv.PRICING_VERSION: catalog.version,
    }


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        (Decimal("0.000660000"), "0.00066"),
        (Decimal("6.6E-4"), "0.00066"),
        (Decimal("1E+2"), "100"),
        (Decimal("0E-8"), "0"),
        (Decimal("-0"), "0"),
        (Decimal("12.50"), "12.5"),
        (Decimal("0.000000000000123"), "0.000000000000123"),
        (Decimal("123456789.123456789123456789"), "123456789.123456789123456789"),
    ],
)
def test_format_usd(value: Decimal | None, text: str | None) -> None:
    assert format_usd(value) == text


def test_matches_genai_prices_totals_across_catalog(catalog: PricingCatalog) -> None:
    """Our per-type split must add up to genai-prices' own total for every model."""
    from genai_prices import types as gp
    from genai_prices.data import providers

    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    usages = [
        Usage(
            input_tokens=1_000,
            output_tokens=500,
            cache_read_tokens=200,
            cache_write_tokens=100,
            reasoning_tokens=50,
        ),
        Usage(
            input_tokens=300_000, output_tokens=2_000, cache_read_tokens=100_000, cache_write_tokens=50_000
        ),
    ]
    checked = 0
    for provider in providers:
        for model in provider.models:
            model_price = model.get_prices(at)
            for u in usages:
                expected = model_price.calc_price(
                    gp.Usage(
                        input_tokens=u.input_tokens,
                        output_tokens=u.output_tokens,
                        cache_read_tokens=u.cache_read_tokens,
                        cache_write_tokens=u.cache_write_tokens,
                        output_reasoning_tokens=u.reasoning_tokens,
                    )
                )["total_price"]
                got = catalog._compute(model_price.__dict__, u, provider.id, model.id).total_usd
                assert got == expected, (provider.id, model.id, u)
                checked += 1
    assert checked > 1_000


# --- overrides --------------------------------------------------------------

OVERRIDES = {
    "_comment": "team prices",
    "models": [
        {
            "provider": "openai",
            "model": "my-ft-model",
            "match": ["my-ft-model", "ft:gpt-4o-mini:acme:*"],
            "input_mtok": "0.30",
            "cached_input_mtok": "0.15",
            "cache_write_mtok": "0.375",
            "output_mtok": "1.20",
            "reasoning_mtok": None,
            "tiers": [{"above_input_tokens": 200000, "input_mtok": "0.60", "output_mtok": "2.40"}],
        },
        # replaces a catalog model, and has a price history
        {"provider": "openai", "model": "gpt-4o-mini", "input_mtok": "1", "output_mtok": "2"},
        {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "input_mtok": "3",
            "output_mtok": "4",
            "effective_from": "2030-01-01",
        },
        # only from a date on: before it the catalog price applies
        {
            "model": "claude-3-5-haiku-latest",
            "match": ["claude-3-5-haiku*"],
            "input_mtok": "9",
            "output_mtok": "9",
            "effective_from": "2030-01-01T00:00:00Z",
        },
        # self-hosted, provider unknown to the catalog, with a separate reasoning price
        {
            "provider": "ollama",
            "model": "qwq",
            "input_mtok": "0.01",
            "output_mtok": "0.02",
            "reasoning_mtok": "0.005",
        },
    ],
}


def test_override_adds_model_with_tiers_and_glob(tmp_path: Path) -> None:
    path = write(tmp_path, "prices.json", OVERRIDES)
    catalog = PricingCatalog(path)
    usage = Usage(input_tokens=10_000, output_tokens=1_000, cache_read_tokens=2_000, cache_write_tokens=1_000)
    cost = catalog.price("my-ft-model", "openai", usage)
    assert cost.input_usd == usd(7_000, "0.30")
    assert cost.cached_input_usd == usd(2_000, "0.15")
    assert cost.cache_write_usd == usd(1_000, "0.375")
    assert cost.output_usd == usd(1_000, "1.20")
    assert (cost.model, cost.provider) == ("my-ft-model", "openai")

    glob = catalog.price("ft:gpt-4o-mini:acme:xyz123", None, Usage(input_tokens=200_001, output_tokens=10))
    assert glob.total_usd == usd(200_001, "0.60") + usd(10, "2.40")
    # unchanged prices keep their base value in the tier
    tier_cached = catalog.price(
        "my-ft-model", "openai", Usage(input_tokens=300_000, cache_read_tokens=100_000)
    )
    assert tier_cached.cached_input_usd == usd(100_000, "0.15")
    assert tier_cached.input_usd == usd(200_000, "0.60")

    # the provider must agree when both sides name one
    assert catalog.price("my-ft-model", "anthropic", usage).total_usd is None

    qwq = catalog.price("qwq", "ollama", Usage(input_tokens=1_000, output_tokens=1_000, reasoning_tokens=600))
    assert qwq.total_usd == usd(1_000, "0.01") + usd(400, "0.02") + usd(600, "0.005")


def test_override_replaces_catalog_and_keeps_history(tmp_path: Path) -> None:
    catalog = PricingCatalog(write(tmp_path, "prices.json", OVERRIDES))
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert (
        catalog.price("gpt-4o-mini-2024-07-18", "openai", usage).total_usd is not None
    )  # not overridden alias
    assert catalog.price("gpt-4o-mini", "openai", usage, at=datetime(2026, 1, 1)).total_usd == Decimal("3")
    assert catalog.price("gpt-4o-mini", None, usage, at=datetime(2030, 1, 1)).total_usd == Decimal("7")
    # before its effective_from the catalog price is used
    haiku = catalog.price("claude-3-5-haiku-20241022", "anthropic", usage, at=datetime(2029, 12, 31))
    assert haiku.total_usd == Decimal("4.8")  # catalog $0.80 + $4
    assert haiku.model == "claude-3-5-haiku-latest"
    haiku = catalog.price("claude-3-5-haiku-20241022", "anthropic", usage, at=datetime(2030, 1, 1))
    assert haiku.total_usd == Decimal("18")
    assert haiku.model == "claude-3-5-haiku-latest"
    assert haiku.provider == "anthropic"


def test_override_version_hashes_file_content(tmp_path: Path) -> None:
    path = write(tmp_path, "prices.json", OVERRIDES)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    catalog = PricingCatalog(path)
    assert catalog.version.endswith(f"+override:{digest}")
    assert catalog.version.startswith("genai-prices ")
    cost = catalog.price("my-ft-model", "openai", Usage(input_tokens=1))
    assert cost.as_attributes()[semconv.PRICING_VERSION] == catalog.version
    assert PricingCatalog(OVERRIDES).version.startswith("genai-prices ")
    assert "+override:" in PricingCatalog(OVERRIDES).version


def test_toml_override(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "prices.toml",
        """
[[models]]
provider = "anthropic"
model = "claude-internal"
input_mtok = "2.5"
output_mtok = 12.5
cache_write_mtok = "3"

[[models.tiers]]
above_input_tokens = 1000
input_mtok = "5"
""",
    )
    catalog = PricingCatalog(path)
    cost = catalog.price(
        "claude-internal", "anthropic", Usage(input_tokens=1_000, output_tokens=10, cache_write_tokens=100)
    )
    assert cost.total_usd == usd(900, "2.5") + usd(100, "3") + usd(10, "12.5")
    assert catalog.price("claude-internal", "anthropic", Usage(input_tokens=1_001)).total_usd == usd(
        1_001, "5"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"invalid JSON at line 1"),
        ({"model": []}, r"unknown top-level key"),
        ({"models": {}}, r'"models" must be a list'),
        ({"models": [{"input_mtok": "1", "output_mtok": "1"}]}, r'models\[0\]: "model" must be'),
        (
            {
                "models": [
                    {"model": "a", "input_mtok": "1", "output_mtok": "1"},
                    {"model": "b", "input_mtok": "abc", "output_mtok": "1"},
                ]
            },
            r"models\[1\] \(model 'b'\): input_mtok must be a decimal",
        ),
        ({"models": [{"model": "a", "input_mtok": "-1", "output_mtok": "1"}]}, r"non-negative"),
        ({"models": [{"model": "a", "input_mtok": "1"}]}, r'"output_mtok" is required'),
        (
            {"models": [{"model": "a", "input_mtok": "1", "output_mtok": "1", "inptu_mtok": "1"}]},
            r"unknown key\(s\) \['inptu_mtok'\]",
        ),
        (
            {
                "models": [
                    {"model": "a", "input_mtok": "1", "output_mtok": "1", "effective_from": "yesterday"}
                ]
            },
            r"effective_from must be an ISO date",
        ),
        (
            {
                "models": [
                    {"model": "a", "input_mtok": "1", "output_mtok": "1"},
                    {"model": "A", "input_mtok": "2", "output_mtok": "2"},
                ]
            },
            r"models\[1\].*duplicate",
        ),
        (
            {
                "models": [
                    {
                        "model": "a",
                        "input_mtok": "1",
                        "output_mtok": "1",
                        "tiers": [
                            {"above_input_tokens": 10, "input_mtok": "2"},
                            {"above_input_tokens": 5, "input_mtok": "3"},
                        ],
                    }
                ]
            },
            r"tiers\[1\]: tiers must have strictly increasing",
        ),
        (
            {
                "models": [
                    {
                        "model": "a",
                        "input_mtok": "1",
                        "output_mtok": "1",
                        "tiers": [{"above_input_tokens": 10, "reasoning_mtok": "2"}],
                    }
                ]
            },
            r"no base price",
        ),
        (
            {
                "models": [
                    {
                        "model": "a",
                        "input_mtok": "1",
                        "output_mtok": "1",
                        "cache_read_mtok": "1",
                        "cached_input_mtok": "1",
                    }
                ]
            },
            r"not both",
        ),
    ],
)
def test_bad_override_file_names_file_and_entry(tmp_path: Path, content: str | dict, message: str) -> None:
    path = write(tmp_path, "bad-prices.json", content)
    with pytest.raises(ValueError, match=message) as excinfo:
        PricingCatalog(path)
    assert str(path) in str(excinfo.value)


def test_missing_override_file_is_a_value_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ValueError, match=r"nope\.json"):
        PricingCatalog(missing)


def test_cache_read_alias_accepted(tmp_path: Path) -> None:
    catalog = PricingCatalog(
        {"models": [{"model": "x", "input_mtok": "1", "cache_read_mtok": "0.1", "output_mtok": 2}]}
    )
    cost = catalog.price("x", "whatever", Usage(input_tokens=1_000, cache_read_tokens=1_000))
    assert cost.cached_input_usd == usd(1_000, "0.1")


# --- process-wide default ---------------------------------------------------


def test_get_catalog_honours_env_and_configure_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reset_default: None
) -> None:
    path = write(tmp_path, "prices.json", OVERRIDES)
    monkeypatch.setenv(pricing.PRICING_FILE_ENV, str(path))
    default = pricing.get_catalog()
    assert pricing.get_catalog() is default
    assert "+override:" in default.version
    assert pricing.price("my-ft-model", "openai", {"input_tokens": 100_000}).total_usd == Decimal("0.03")

    replaced = pricing.configure(
        {"models": [{"model": "my-ft-model", "input_mtok": "5", "output_mtok": "5"}]}
    )
    assert pricing.get_catalog() is replaced
    assert pricing.price("my-ft-model", "openai", {"input_tokens": 100_000}).total_usd == Decimal("0.5")

    with pytest.raises(ValueError):
        pricing.configure(write(tmp_path, "broken.json", "[]"))
    assert pricing.get_catalog() is replaced  # a bad file leaves the previous catalog in place

    monkeypatch.delenv(pricing.PRICING_FILE_ENV)
    plain = pricing.configure()
    assert "+override" not in plain.version


# --- speed and threads ------------------------------------------------------


def test_cached_lookup_is_fast(catalog: PricingCatalog) -> None:
    usage = Usage(input_tokens=1_000, output_tokens=200, cache_read_tokens=300)
    catalog.price("gpt-4o-mini-2024-07-18", "openai", usage)  # warm the lookup cache
    runs = timeit.repeat(
        lambda: catalog.price("gpt-4o-mini-2024-07-18", "openai", usage), number=2_000, repeat=5
    )
    per_call_us = min(runs) / 2_000 * 1e6
    assert per_call_us < 50, f"{per_call_us:.1f} µs per price()"


def test_thread_safe(catalog: PricingCatalog) -> None:
    models = [
        ("gpt-4o", "openai"),
        ("claude-sonnet-4", "anthropic"),
        ("gemini-1.5-pro", "gcp.gemini"),
        ("nope", None),
        ("grok-3", "x_ai"),
    ]
    usage = Usage(input_tokens=5_000, output_tokens=500)
    fresh = PricingCatalog()
    expected = {m: catalog.price(m[0], m[1], usage).total_usd for m in models}
    errors: list[BaseException] = []
    results: list[tuple[tuple[str, str | None], Decimal | None]] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        try:
            barrier.wait()
            for _ in range(200):
                for m in models:
                    results.append((m, fresh.price(m[0], m[1], usage).total_usd))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 8 * 200 * len(models)
    assert all(total == expected[m] for m, total in results)


def test_cost_is_frozen_and_decimal() -> None:
    cost = pricing.price("gpt-4o", "openai", Usage(input_tokens=3))
    assert isinstance(cost, Cost)
    assert all(isinstance(v, Decimal) for v in (cost.total_usd, cost.input_usd, cost.output_usd))
    with pytest.raises(AttributeError):
        cost.total_usd = Decimal(1)  # type: ignore[misc]
