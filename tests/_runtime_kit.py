"""In-memory span capture for the runtime tests: the real OTel SDK with an in-memory exporter.

Finished spans are turned into the same ``SpanRecord`` / ``StateEvent`` types the
collector builds from ClickHouse rows, so ``flowscope.core.views`` answers both the
same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import flowscope
from flowscope.core import semconv, views


class MemoryKit:
    def __init__(self, instrument: bool | list[str] = True, **init_kwargs: Any) -> None:
        # A fresh exporter every time: init() again shuts the previous one down.
        self.exporter = InMemorySpanExporter()
        flowscope.init(service_name="tests", exporter=self.exporter, instrument=instrument, **init_kwargs)

    def spans(self) -> list[ReadableSpan]:
        assert flowscope.force_flush()
        return list(self.exporter.get_finished_spans())

    def clear(self) -> None:
        flowscope.force_flush()
        self.exporter.clear()

    def run_spans(self, run_id: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if (s.attributes or {}).get(semconv.RUN_ID) == run_id]

    def runs(self, flow: str | None = None) -> list[ReadableSpan]:
        out = [s for s in self.spans() if (s.attributes or {}).get(semconv.SPAN_KIND) == semconv.KIND_RUN]
        if flow is not None:
            out = [s for s in out if (s.attributes or {}).get(semconv.GEN_AI_WORKFLOW_NAME) == flow]
        return sorted(out, key=lambda s: s.start_time or 0)

    def view(self, run_id: str) -> views.RunView:
        spans = self.run_spans(run_id)
        return views.RunView(run_id, [record(s) for s in spans], state_events(spans))


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def record(span: ReadableSpan) -> views.SpanRecord:
    ctx = span.get_span_context()
    parent = span.parent.span_id if span.parent is not None else 0
    status = {0: "Unset", 1: "Ok", 2: "Error"}[span.status.status_code.value]
    return views.record_from_attributes(
        trace_id=f"{ctx.trace_id:032x}",
        span_id=f"{ctx.span_id:016x}",
        parent_span_id=f"{parent:016x}" if parent else "",
        name=span.name,
        start_ns=span.start_time or 0,
        duration_ns=(span.end_time or 0) - (span.start_time or 0),
        status=status,
        status_message=span.status.description or "",
        attributes=attrs(span),
        service="tests",
    )


def state_events(spans: Iterable[ReadableSpan]) -> list[views.StateEvent]:
    """Like the collector's materialized view: the event's step, else its span's."""
    out = []
    for span in spans:
        a = attrs(span)
        for ev in span.events:
            if ev.name != semconv.EVENT_STATE:
                continue
            ea = dict(ev.attributes or {})
            if semconv.NODE_STEP not in ea:
                ea[semconv.NODE_STEP] = a.get(semconv.NODE_STEP, -1)
            out.append(views.state_event_from_attributes(ea, str(a.get(semconv.NODE_NAME, ""))))
    return out


def nodes(spans: Iterable[ReadableSpan]) -> list[ReadableSpan]:
    """Node spans in run order (step, then attempt)."""
    ns = [s for s in spans if attrs(s).get(semconv.SPAN_KIND) == semconv.KIND_NODE]
    return sorted(ns, key=lambda s: (attrs(s)[semconv.NODE_STEP], attrs(s)[semconv.NODE_ATTEMPT], s.start_time))


def parent_of(span: ReadableSpan, spans: Iterable[ReadableSpan]) -> ReadableSpan | None:
    if span.parent is None:
        return None
    for s in spans:
        if s.get_span_context().span_id == span.parent.span_id:
            return s
    return None


def children(span: ReadableSpan, spans: Iterable[ReadableSpan]) -> list[ReadableSpan]:
    sid = span.get_span_context().span_id
    return sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == sid), key=lambda s: s.start_time or 0
    )


def llm_spans(spans: Iterable[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if attrs(s).get(semconv.SPAN_KIND) == semconv.KIND_LLM]
