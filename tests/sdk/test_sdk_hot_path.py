"""The per-call shortcuts of the SDK give exactly what the long way gives.

Each shortcut on the LLM-call path (memoised prices, attributes set without
the SDK's re-validation, start attributes set just after start, the scrubber's
pre-check, the response reader) is checked here against the path it replaces,
and the price memo against every way a price can change: a reload, a dated
override crossing its effective date, time-of-day catalog prices.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    DEFAULT_ON,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from pydantic import ConfigDict

from flowscope import _otel
from flowscope._export import (
    _SECRET_VALUE,
    REDACTED,
    _may_hold_secret,
    scrub_attributes,
    scrub_span,
)
from flowscope.core import pricing, semconv
from flowscope.core.pricing import PricingCatalog, Usage
from flowscope.core.pricing import catalog as catalog_module
from flowscope.instrumentation._call import get
from flowscope.testing import FakeProvider, Reply
from tests._llm_kit import MSGS, Capture, attrs, capture

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def catalog() -> PricingCatalog:
    return PricingCatalog()


@pytest.fixture
def cap() -> Iterator[Capture]:
    yield from capture()
    pricing.configure(None)


# --- the price memo ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "provider", "usage"),
    [
        ("gpt-4o-mini-2024-07-18", "openai", Usage(input_tokens=1_000, output_tokens=200, cache_read_tokens=300)),
        ("gpt-4o-mini", "openai", Usage(input_tokens=9, output_tokens=7)),
        ("gpt-4o", "azure.ai.openai", Usage(input_tokens=5_000, output_tokens=50)),
        ("claude-3-5-haiku-latest", "anthropic",
         Usage(input_tokens=3_000, output_tokens=10, cache_read_tokens=1_000, cache_write_tokens=500)),
        ("gemini-1.5-pro", "gcp.gemini", Usage(input_tokens=128_001, output_tokens=500)),
        ("o3", "openai", Usage(input_tokens=100, output_tokens=900, reasoning_tokens=800)),
        ("openai/gpt-4o-mini", None, Usage(input_tokens=10)),
        ("no-such-model-anywhere", "openai", Usage(input_tokens=10)),
        ("gpt-4o-mini", "openai", Usage()),
    ],
)
def test_memoised_price_equals_the_uncached_computation(
    catalog: PricingCatalog, model: str, provider: str | None, usage: Usage
) -> None:
    # ``at`` given: the price in force is resolved afresh, never from the memo
    expected = catalog.price(model, provider, usage, at=dt.datetime.now(UTC))
    for _ in range(2):  # the first fills the memo, the second is served from it
        cost, cost_attrs = catalog.price_attributes(model, provider, usage)
        assert cost == expected
        assert dict(cost_attrs) == expected.as_attributes()
        assert catalog.price(model, provider, usage) == expected
        assert pricing.format_usd(cost.total_usd) == cost_attrs.get(semconv.COST_USD)


def test_memoised_attributes_cannot_be_changed_by_a_caller(catalog: PricingCatalog) -> None:
    _, cost_attrs = catalog.price_attributes("gpt-4o-mini", "openai", Usage(input_tokens=10))
    with pytest.raises(TypeError):
        cost_attrs[semconv.COST_USD] = "0"  # type: ignore[index]


def _at(monkeypatch: pytest.MonkeyPatch, when: dt.datetime) -> None:
    monkeypatch.setattr(catalog_module, "_now", lambda: when)


def test_dated_override_switches_price_at_its_effective_date(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = PricingCatalog({"models": [
        {"provider": "openai", "model": "acme-llm", "input_mtok": "1", "output_mtok": "2"},
        {"provider": "openai", "model": "acme-llm", "input_mtok": "3", "output_mtok": "4",
         "effective_from": "2030-01-01"},
    ]})
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    _at(monkeypatch, dt.datetime(2029, 12, 31, 23, 59, tzinfo=UTC))
    for _ in range(2):
        assert catalog.price("acme-llm", "openai", usage).total_usd == Decimal("3")
        assert catalog.price_attributes("acme-llm", "openai", usage)[1][semconv.COST_USD] == "3"
    _at(monkeypatch, dt.datetime(2030, 1, 1, tzinfo=UTC))  # same catalog, same usage: a stale memo would say 3
    assert catalog.price("acme-llm", "openai", usage).total_usd == Decimal("7")
    assert catalog.price_attributes("acme-llm", "openai", usage)[1][semconv.COST_USD] == "7"


def test_override_from_a_date_leaves_the_catalog_price_until_then(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = PricingCatalog({"models": [
        {"provider": "openai", "model": "gpt-4o-mini", "input_mtok": "10", "output_mtok": "10",
         "effective_from": "2030-01-01"},
    ]})
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    _at(monkeypatch, dt.datetime(2029, 6, 1, tzinfo=UTC))
    for _ in range(2):
        assert catalog.price_attributes("gpt-4o-mini", "openai", usage)[0].total_usd == Decimal("0.75")
    _at(monkeypatch, dt.datetime(2030, 6, 1, tzinfo=UTC))
    assert catalog.price_attributes("gpt-4o-mini", "openai", usage)[0].total_usd == Decimal("20")


def test_time_of_day_catalog_price_follows_the_clock(
    catalog: PricingCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # deepseek-chat: $0.27/$1.10 between 00:30 and 16:30 UTC, half price otherwise
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    _at(monkeypatch, dt.datetime(2026, 1, 1, 12, tzinfo=UTC))
    for _ in range(2):
        assert catalog.price_attributes("deepseek-chat", "deepseek", usage)[0].total_usd == Decimal("1.37")
    _at(monkeypatch, dt.datetime(2026, 1, 1, 20, tzinfo=UTC))
    assert catalog.price_attributes("deepseek-chat", "deepseek", usage)[0].total_usd == Decimal("0.685")
    assert catalog.price("deepseek-chat", "deepseek", usage).total_usd == Decimal("0.685")


def test_each_catalog_keeps_its_own_prices() -> None:
    usage = Usage(input_tokens=1_000_000)
    cheap = PricingCatalog({"models": [{"model": "acme-llm", "input_mtok": "1", "output_mtok": "1"}]})
    dear = PricingCatalog({"models": [{"model": "acme-llm", "input_mtok": "5", "output_mtok": "5"}]})
    for _ in range(2):
        assert cheap.price_attributes("acme-llm", None, usage)[0].total_usd == Decimal("1")
        assert dear.price_attributes("acme-llm", None, usage)[0].total_usd == Decimal("5")


def test_inconsistent_usage_is_still_refused(catalog: PricingCatalog) -> None:
    with pytest.raises(ValueError, match="cache_read_tokens"):
        catalog.price_attributes("gpt-4o-mini", "openai", Usage(input_tokens=1, cache_read_tokens=2))


def test_reloaded_prices_reach_the_next_llm_span(fake_provider: FakeProvider, cap: Capture) -> None:
    fake_provider.script(Reply(text="a", input_tokens=1_000, output_tokens=100),
                         Reply(text="b", input_tokens=1_000, output_tokens=100))
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    pricing.configure({"models": [{"provider": "openai", "model": "gpt-4o-mini", "input_mtok": "1",
                                   "output_mtok": "2"}]})
    client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    pricing.configure({"models": [{"provider": "openai", "model": "gpt-4o-mini", "input_mtok": "10",
                                   "output_mtok": "20"}]})
    client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    first, second = cap.llm()
    assert attrs(first)[semconv.COST_USD] == "0.0012"
    assert attrs(second)[semconv.COST_USD] == "0.012"
    assert attrs(first)[semconv.PRICING_VERSION] != attrs(second)[semconv.PRICING_VERSION]


def test_usage_still_checks_types_and_signs() -> None:
    class Count:
        def __index__(self) -> int:
            return 7

    assert Usage(input_tokens=Count()).input_tokens == 7  # type: ignore[arg-type]
    assert Usage(input_tokens=None).input_tokens == 0  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Usage(output_tokens=True)
    with pytest.raises(TypeError):
        Usage(output_tokens=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Usage(cache_read_tokens=-1)


# --- attributes set without re-validation ----------------------------------------------


def _span_pair(limits: SpanLimits | None = None) -> tuple[Any, Any]:
    tracer = TracerProvider(span_limits=limits).get_tracer("t") if limits else TracerProvider().get_tracer("t")
    return tracer.start_span("slow"), tracer.start_span("fast")


@pytest.mark.parametrize(
    "values",
    [
        {"s": "x", "i": 3, "f": 1.5, "b": False, "t": ("a", "b")},
        {"l": ["a", "b"], "n": [1, 2], "mixed": ("a", 1)},  # not in stored form: the ordinary way
        {"obj": Decimal("1.5"), "none": None},
    ],
)
def test_fast_attributes_equal_the_sdk_ones(values: dict[str, Any]) -> None:
    slow, fast = _span_pair()
    slow.set_attributes({"pre": 1})
    fast.set_attributes({"pre": 1})
    slow.set_attributes(values)
    _otel.set_attributes(fast, values)
    assert dict(fast.attributes) == dict(slow.attributes)
    assert fast._attributes.dropped == slow._attributes.dropped


@pytest.mark.parametrize("limits", [SpanLimits(max_span_attributes=3), SpanLimits(max_span_attribute_length=2)])
def test_fast_attributes_respect_span_limits(limits: SpanLimits) -> None:
    slow, fast = _span_pair(limits)
    values = {f"k{i}": f"value{i}" for i in range(5)}
    slow.set_attributes(values)
    _otel.set_attributes(fast, values)
    assert dict(fast.attributes) == dict(slow.attributes)
    assert len(fast.attributes) <= 3 or all(len(v) <= 2 for v in fast.attributes.values())


def test_fast_attributes_leave_an_ended_span_alone() -> None:
    _, span = _span_pair()
    span.end()
    _otel.set_attributes(span, {"late": "x"})
    assert "late" not in span.attributes


# --- start attributes set just after start ---------------------------------------------


class _Recorder:
    """A span processor (or sampler) that keeps what it was shown at span start."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.seen.append(dict(span.attributes or {}))

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class _RecordingSampler(Sampler):
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: Any = None,
                      attributes: Mapping[str, Any] | None = None, links: Any = None,
                      trace_state: Any = None) -> SamplingResult:
        self.seen.append(dict(attributes or {}))
        return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return "recording"


def test_samplers_that_ignore_attributes_are_recognised() -> None:
    assert _otel._sampler_ignores_attributes(DEFAULT_ON)
    assert _otel._sampler_ignores_attributes(ParentBased(TraceIdRatioBased(0.5)))
    assert not _otel._sampler_ignores_attributes(_RecordingSampler())
    assert not _otel._sampler_ignores_attributes(ParentBased(_RecordingSampler()))


def _chat(fake_provider: FakeProvider) -> None:
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)


def test_a_foreign_span_processor_sees_the_start_attributes(fake_provider: FakeProvider, cap: Capture) -> None:
    provider = trace.get_tracer_provider()
    multi = provider._active_span_processor  # type: ignore[attr-defined]
    saved = multi._span_processors
    recorder = _Recorder()
    multi.add_span_processor(recorder)
    try:
        _chat(fake_provider)
    finally:
        multi._span_processors = saved
    llm_starts = [a for a in recorder.seen if a.get(semconv.SPAN_KIND) == semconv.KIND_LLM]
    assert llm_starts and llm_starts[0][semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert llm_starts[0][semconv.GEN_AI_OPERATION_NAME] == "chat"


def test_a_foreign_sampler_sees_the_start_attributes(fake_provider: FakeProvider, cap: Capture) -> None:
    tracer, _ = _otel.start_policy(_otel.tracer())
    saved = tracer.sampler
    sampler = _RecordingSampler()
    tracer.sampler = sampler
    try:
        _chat(fake_provider)
    finally:
        tracer.sampler = saved
    assert sampler.seen and sampler.seen[0][semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    span = cap.one_llm()
    assert attrs(span)[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"


def test_deferred_start_attributes_end_up_on_the_span(fake_provider: FakeProvider, cap: Capture) -> None:
    _, defer = _otel.start_policy(_otel.tracer())
    assert defer  # flowscope's own processors and the default sampler
    _chat(fake_provider)
    a = attrs(cap.one_llm())
    assert a[semconv.GEN_AI_OPERATION_NAME] == "chat"
    assert a[semconv.GEN_AI_PROVIDER_NAME] == "openai"
    assert a[semconv.SPAN_KIND] == semconv.KIND_LLM
    assert a[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert a[semconv.SERVER_ADDRESS]


# --- the scrubber's pre-check ------------------------------------------------------------

_SECRETS = st.sampled_from([
    "sk-" + "a" * 16, "sk-proj-" + "Ab_9" * 5, "Bearer abcdefgh", "bEaReR\tabc.def~ghi", "BEARER zzzzzzzz==",
    "AKIA" + "Q" * 16, "AIza" + "x" * 35, "xoxb-0123456789", "xoxp-" + "a-" * 8, "ghp_" + "A" * 30,
    "gho_" + "b" * 36,
])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), _SECRETS, st.text(max_size=40))
def test_every_secret_passes_the_precheck(before: str, secret: str, after: str) -> None:
    text = before + " " + secret + " " + after
    if _SECRET_VALUE.search(text):
        assert _may_hold_secret(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_the_precheck_never_hides_a_match(text: str) -> None:
    if _SECRET_VALUE.search(text):
        assert _may_hold_secret(text)


@pytest.mark.parametrize(
    ("values", "changed"),
    [
        ({"gen_ai.response.id": "chatcmpl-a73e429978604d45b034413612a1d", "n": 3}, {}),
        ({"note": "key sk-" + "a" * 20}, {"note": "key " + REDACTED}),
        ({"reasons": ("stop", "Bearer abcdefghij")}, {"reasons": ("stop", REDACTED)}),
        ({"http.request.header.authorization": "short"}, {"http.request.header.authorization": REDACTED}),
        ({"x": "ghp_" + "A" * 30 + " and high"}, {"x": REDACTED + " and high"}),
    ],
)
def test_spans_are_scrubbed_exactly_as_before(values: dict[str, Any], changed: dict[str, Any]) -> None:
    span = TracerProvider().get_tracer("t").start_span("s", attributes=values)
    span.add_event("e", {"ev": "Bearer abcdefghij"})
    span.end()
    out, n = scrub_span(span._readable_span())
    assert dict(out.attributes) == {**values, **changed}
    assert dict(out.events[0].attributes) == {"ev": REDACTED}
    assert n == len(changed) + 1


def test_message_content_still_reaches_the_redact_hook() -> None:
    seen = []

    def redact(key: str, value: Any) -> Any:
        seen.append(key)
        return "hidden"

    out, n = scrub_attributes({"gen_ai.input.messages": "[]", "other": "x"}, redact)
    assert out == {"gen_ai.input.messages": "hidden", "other": "x"} and n == 1
    assert seen == ["gen_ai.input.messages"]


# --- reading responses -------------------------------------------------------------------


class _Model(openai.BaseModel):
    model_config = ConfigDict(extra="allow")

    a: int = 1
    b: Any = None
    _hidden: int = 5

    @property
    def double(self) -> int:
        return self.a * 2

    def method(self) -> int:
        return 3


@pytest.mark.parametrize("name", ["a", "b", "double", "extra_field", "missing", "_hidden", "model_fields_set"])
def test_get_reads_models_like_getattr(name: str) -> None:
    obj = _Model.model_validate({"a": 4, "extra_field": "x"})
    assert get(obj, name) == getattr(obj, name, None)
    assert get(obj, "method")() == 3
    assert get({"a": 1}, "a") == 1 and get(None, "a") is None
