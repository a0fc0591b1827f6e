"""flowscope._otel: every shortcut through the OTel SDK's internals agrees with the public call,
and falls back to it when the internals are not what it expects.

These run against the installed opentelemetry-sdk (``>=1.30`` is supported; CI installs the
newest), through the real SDK: if a release changes a private shape, the shortcut must
still give the public result, and these tests say which one broke.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)

from flowscope import _otel
from flowscope._export import BoundedBatchProcessor
from flowscope.processor import RunAttributesProcessor

ATTRS = {"a": "x", "b": 1, "c": 2.5, "d": True, "e": ("p", "q")}


def provider(*processors: SpanProcessor, sampler: Sampler | None = None, limits: SpanLimits | None = None):
    tp = TracerProvider(sampler=sampler, span_limits=limits)
    for p in processors:
        tp.add_span_processor(p)
    return tp


def finished_attributes(tp: TracerProvider, fill: Any) -> dict[str, Any]:
    exporter = InMemorySpanExporter()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    span = tp.get_tracer("t").start_span("s")
    fill(span)
    span.end()
    return dict(exporter.get_finished_spans()[0].attributes or {})


@pytest.mark.parametrize("limits", [None, SpanLimits(max_span_attributes=3), SpanLimits(max_attribute_length=1)])
def test_set_attributes_stores_what_the_public_call_stores(limits: SpanLimits | None) -> None:
    """The fast path (no limits) and the fallback (a count or length limit) both equal set_attributes."""
    fast = finished_attributes(provider(limits=limits), lambda s: _otel.set_attributes(s, ATTRS))
    public = finished_attributes(provider(limits=limits), lambda s: s.set_attributes(ATTRS))
    assert fast == public
    if limits is None:
        assert fast == ATTRS


def test_set_attributes_takes_the_public_path_for_values_it_does_not_know() -> None:
    odd = {"list": ["a", 1], "none": None, "bytes": b"x"}
    fast = finished_attributes(provider(), lambda s: _otel.set_attributes(s, odd))
    public = finished_attributes(provider(), lambda s: s.set_attributes(odd))
    assert fast == public


def test_set_attributes_on_an_ended_span_changes_nothing() -> None:
    exporter = InMemorySpanExporter()
    tp = provider(SimpleSpanProcessor(exporter))
    span = tp.get_tracer("t").start_span("s")
    span.end()
    _otel.set_attributes(span, {"late": "x"})
    assert "late" not in (exporter.get_finished_spans()[0].attributes or {})


def test_set_attributes_on_a_non_sdk_span_uses_the_public_call() -> None:
    seen: dict[str, Any] = {}

    class Foreign(trace.NonRecordingSpan):
        def set_attributes(self, attributes: Any) -> None:
            seen.update(attributes)

    _otel.set_attributes(Foreign(trace.INVALID_SPAN_CONTEXT), ATTRS)
    assert seen == ATTRS


def test_attribute_dict_and_store_read_the_sdk_span_or_fall_back() -> None:
    exporter = InMemorySpanExporter()
    tp = provider(SimpleSpanProcessor(exporter))
    tp.get_tracer("t").start_span("s", attributes=ATTRS).end()
    span = exporter.get_finished_spans()[0]
    store = _otel.span_attribute_store(span)
    assert dict(_otel.attribute_dict(store)) == ATTRS
    plain = {"k": "v"}
    assert _otel.attribute_dict(plain) is plain


class Peeking(SpanProcessor):
    """A processor that reads attributes at start: LLM attributes must be there already."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.seen.append(dict(span.attributes or {}))


class Picky(Sampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return ALWAYS_ON.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "picky"


@pytest.mark.parametrize(
    ("processors", "sampler", "defer"),
    [
        ((RunAttributesProcessor(), BoundedBatchProcessor(InMemorySpanExporter())), None, True),
        ((SimpleSpanProcessor(InMemorySpanExporter()),), ParentBased(TraceIdRatioBased(1.0)), True),
        ((RunAttributesProcessor(), Peeking()), None, False),  # a processor that may read them at start
        ((RunAttributesProcessor(),), Picky(), False),  # a sampler that may decide on them
    ],
)
def test_start_attributes_are_deferred_only_when_nobody_could_read_them(
    processors: tuple[SpanProcessor, ...], sampler: Sampler | None, defer: bool
) -> None:
    tp = provider(*processors, sampler=sampler)
    real, deferred = _otel.start_policy(tp.get_tracer("t"))
    assert deferred is defer
    assert real is not None


def test_start_policy_of_a_tracer_without_sdk_internals_is_the_public_path() -> None:
    tracer = trace.NoOpTracer()
    assert _otel.start_policy(tracer) == (tracer, False)


def test_span_processors_and_has_processor() -> None:
    run_proc = RunAttributesProcessor()
    tp = provider(run_proc)
    assert run_proc in _otel.span_processors(tp)
    assert _otel.has_processor(tp, RunAttributesProcessor)
    assert _otel.span_processors(trace.NoOpTracerProvider()) == ()


def test_detach_in_another_context_does_not_log(caplog: pytest.LogCaptureFixture) -> None:
    import contextvars

    caplog.set_level(logging.DEBUG, logger="opentelemetry.context")
    token = otel_context.attach(otel_context.set_value("k", 1))
    contextvars.copy_context().run(_otel.detach, token)  # a token from another context: refused quietly
    _otel.detach(token)
    assert not [r for r in caplog.records if "Failed to detach" in r.getMessage()]


def test_suppress_instrumentation_sets_the_key_instrumentations_check() -> None:
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    token = _otel.suppress_instrumentation()
    try:
        assert token is not None and not is_instrumentation_enabled()
    finally:
        _otel.detach(token)
    assert is_instrumentation_enabled()


def test_record_error_uses_the_exception_code_as_error_type() -> None:
    class Cancelled(Exception):
        code = "TRACE_CANCELLED"

    exporter = InMemorySpanExporter()
    tp = provider(SimpleSpanProcessor(exporter))
    for exc in (ValueError("bad"), Cancelled("x")):
        span = tp.get_tracer("t").start_span("s")
        _otel.end_span(span, exc)
    a, b = exporter.get_finished_spans()
    assert a.attributes["error.type"] == "ValueError" and a.status.description == "ValueError: bad"
    assert b.attributes["error.type"] == "TRACE_CANCELLED"
