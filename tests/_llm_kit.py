"""Shared bits of the LLM-client tests: span capture with the real OTel SDK, and
list prices written by hand so the tests never trust the pricing engine they check."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import flowscope
from flowscope.core import semconv

M = Decimal(1_000_000)
MSGS = [{"role": "user", "content": "what is the capital of France"}]


@dataclass(frozen=True)
class Prices:
    """USD per million tokens, from the providers' public price pages."""

    input: Decimal
    output: Decimal
    cached: Decimal | None = None
    write: Decimal | None = None

    def cost(self, inp: int, out: int, cached: int = 0, write: int = 0) -> Decimal:
        cached_rate = self.cached if self.cached is not None else self.input
        write_rate = self.write if self.write is not None else self.input
        return ((inp - cached - write) * self.input + cached * cached_rate + write * write_rate
                + out * self.output) / M


GPT_4O_MINI = Prices(Decimal("0.15"), Decimal("0.60"), cached=Decimal("0.075"))
CLAUDE_HAIKU_35 = Prices(Decimal("0.80"), Decimal("4.00"), cached=Decimal("0.08"), write=Decimal("1.00"))
EMBEDDING_3_SMALL = Prices(Decimal("0.02"), Decimal(0))

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-haiku-20241022"


class Capture:
    """flowscope initialised with an in-memory exporter; global state reset on exit."""

    def __init__(self, instrument: list[str] | None = None, **init_kwargs: Any) -> None:
        self.exporter = InMemorySpanExporter()
        flowscope.init(service_name="tests", exporter=self.exporter,
                       instrument=instrument or ["openai", "anthropic"], **init_kwargs)

    def spans(self) -> list[ReadableSpan]:
        assert flowscope.force_flush()
        return list(self.exporter.get_finished_spans())

    def llm(self) -> list[ReadableSpan]:
        spans = [s for s in self.spans() if attrs(s).get(semconv.SPAN_KIND) == semconv.KIND_LLM]
        return sorted(spans, key=lambda s: s.start_time or 0)

    def one_llm(self) -> ReadableSpan:
        spans = self.llm()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def clear(self) -> None:
        flowscope.force_flush()
        self.exporter.clear()

    def close(self) -> None:
        flowscope.force_flush()
        flowscope.cache.disable()
        flowscope.metrics.disable()


def capture(instrument: list[str] | None = None, **init_kwargs: Any) -> Iterator[Capture]:
    cap = Capture(instrument, **init_kwargs)
    try:
        yield cap
    finally:
        cap.close()


def attrs(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


def cost_of(span: ReadableSpan) -> Decimal:
    return Decimal(str(attrs(span)[semconv.COST_USD]))


def events(span: ReadableSpan, name: str) -> list[Mapping[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == name]
