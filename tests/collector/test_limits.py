"""Request limits and row building on the ingest path match the attribute-by-attribute reference.

The collector applies limits and builds rows in one pass that reads nearly
every span off its bytes (``RowBuilder.build`` with a ``SpanLimiter``). The
reference is ``limits.enforce`` over every value, then the row builder. For
any request, both must refuse the same requests with the same reason, leave
the same request behind, report the same cuts and frame the same rows; and
the rows kept in the write-ahead log must turn back into that request.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks.otlp_data import Generator
from benchmarks.otlp_data import requests as realistic_requests
from flowscope_collector.ingest import otlp
from flowscope_collector.ingest.batch import Batch
from flowscope_collector.ingest.limits import RequestLimits, SpanLimiter, enforce
from flowscope_collector.ingest.records import as_otlp_request, batch_from_wal, wal_payload
from flowscope_collector.ingest.rows import RowBuilder
from tests._otlp_strategies import requests

TIGHT = RequestLimits(max_attributes=3, max_events=1, max_links=1, max_value_chars=24, max_name_chars=12,
                      max_array_items=2, max_depth=1)
# Long strings allowed, so short spans take the byte-level path while their counts and depth break limits.
COUNTS = RequestLimits(max_attributes=3, max_events=1, max_links=1, max_value_chars=4096, max_name_chars=4096,
                       max_array_items=2048, max_depth=1)
DEFAULT = RequestLimits()


def _builder(lim: RequestLimits) -> RowBuilder:
    return RowBuilder(lim)


class _NoBuilding(RowBuilder):
    def build(self, *args: Any, **kwargs: Any) -> Any:
        pytest.fail("rows were taken for a request")


def _reference(req: ExportTraceServiceRequest, lim: RequestLimits) -> tuple[Any, ...]:
    try:
        otlp.validate(req, 10**6)
    except otlp.OTLPError as exc:
        return ("refused", exc.status, exc.message)
    report = enforce(req, lim)
    batch = _builder(lim).build(req, "proj")
    return ("ok", req.SerializeToString(deterministic=True), batch.body(), batch.spans, _counts(report))


def _fast(req: ExportTraceServiceRequest, lim: RequestLimits) -> tuple[Any, ...]:
    limiter = SpanLimiter(lim)
    try:
        otlp.count_spans(req, 10**6)
        batch = _builder(lim).build(req, "proj", limiter)
    except otlp.OTLPError as exc:
        return ("refused", exc.status, exc.message)
    report = limiter.finish()
    return ("ok", req.SerializeToString(deterministic=True), batch.body(), batch.spans, _counts(report))


def _counts(report: Any) -> tuple[Any, ...]:
    return (report.truncated_values, report.dropped_attributes, report.dropped_events, report.dropped_links,
            report.rejected_spans, report.message)


def _same(req: ExportTraceServiceRequest, lim: RequestLimits) -> tuple[Any, ...]:
    a, b = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    a.CopyFrom(req)
    b.CopyFrom(req)
    ref, fast = _reference(a, lim), _fast(b, lim)
    assert fast[0] == ref[0], (fast, ref)
    if ref[0] == "refused":
        assert fast == ref
    else:
        assert fast[1] == ref[1], "the requests left behind differ"
        assert fast[2] == ref[2], "the rows differ"
        assert fast[3:] == ref[3:], f"reports differ: {fast[3:]} vs {ref[3:]}"
    return ref


PROPS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@PROPS
@given(req=requests(valid_ids=True), lim=st.sampled_from([DEFAULT, TIGHT, COUNTS]))
def test_fast_limits_and_rows_match_the_reference(req: ExportTraceServiceRequest, lim: RequestLimits) -> None:
    _same(req, lim)


@PROPS
@given(req=requests(valid_ids=False))
def test_invalid_ids_are_refused_alike(req: ExportTraceServiceRequest) -> None:
    _same(req, DEFAULT)


def _span_breaking(limit: str) -> ExportTraceServiceRequest:
    """A short, plain span, changed to break one limit (or none)."""
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    span = ss.spans.add(trace_id=b"t" * 16, span_id=b"s" * 8, parent_span_id=b"p" * 8, name="plain", kind=3,
                        start_time_unix_nano=1_700_000_000 * 10**9, end_time_unix_nano=1_700_000_001 * 10**9)
    span.attributes.add(key="a").value.int_value = 1
    ev = span.events.add(time_unix_nano=1_700_000_000 * 10**9, name="e")
    ev.attributes.add(key="k").value.string_value = "v"
    link = span.links.add(trace_id=b"u" * 16, span_id=b"v" * 8)
    link.attributes.add(key="k").value.bool_value = True
    if limit == "attributes":
        for i in range(3):
            span.attributes.add(key=f"x{i}").value.int_value = i
    elif limit == "events":
        span.events.add(time_unix_nano=1, name="second")
    elif limit == "links":
        span.links.add(trace_id=b"w" * 16, span_id=b"x" * 8)
    elif limit == "event attributes":
        for i in range(3):
            ev.attributes.add(key=f"x{i}").value.int_value = i
    elif limit == "link attributes":
        for i in range(3):
            link.attributes.add(key=f"x{i}").value.int_value = i
    elif limit == "depth":
        span.attributes[0].value.array_value.values.add().array_value.values.add().int_value = 1
    elif limit == "kvlist":
        span.attributes[0].value.kvlist_value.values.add(key="inner").value.int_value = 1
    elif limit == "start":
        span.start_time_unix_nano = 2**63
    elif limit == "end":
        span.end_time_unix_nano = 2**64 - 1
    elif limit == "event time":
        ev.time_unix_nano = 2**63
    elif limit == "trace id":
        span.trace_id = b"t" * 15
    elif limit == "span id":
        span.span_id = b""
    elif limit == "parent id":
        span.parent_span_id = b"p" * 9
    elif limit == "long value":
        span.attributes[0].value.string_value = "v" * 5000
    elif limit == "long name":
        span.name = "n" * 5000
    return req


@pytest.mark.parametrize("limit", ["none", "attributes", "events", "links", "event attributes", "link attributes",
                                   "depth", "kvlist", "start", "end", "event time", "trace id", "span id",
                                   "parent id", "long value", "long name"])
def test_each_limit_is_noticed_on_a_short_span(limit: str) -> None:
    ref = _same(_span_breaking(limit), COUNTS)
    assert (ref[0] == "refused") == (limit.endswith(" id"))
    if limit in ("start", "end", "event time"):
        assert ref[-1][4] == 1  # the span is refused, the request is not


@pytest.mark.parametrize("lim", [DEFAULT, TIGHT, COUNTS], ids=["default limits", "tight limits", "tight counts"])
def test_realistic_requests_match_and_mostly_skip_python(lim: RequestLimits) -> None:
    reqs = list(realistic_requests(Generator(11), 30, start_ns=time.time_ns() - 3600 * 10**9,
                                   span_ns=3600 * 10**9, batch_spans=500))
    for req in reqs:
        assert _same(req, lim)[0] == "ok"
    if lim is DEFAULT:  # with room to spare, only unpriced/foreign LLM spans go through Python
        batch = Batch()
        for req in reqs:
            batch.extend(_builder(lim).build(req, "proj", SpanLimiter(lim)))
        assert batch.spans > 1000 and batch.python_spans == 0


@PROPS
@given(req=requests(valid_ids=True))
def test_rows_in_the_log_read_back_as_the_stored_request(req: ExportTraceServiceRequest) -> None:
    limiter = SpanLimiter(DEFAULT)
    try:
        batch = _builder(DEFAULT).build(req, "proj", limiter)
    except otlp.OTLPError:
        return
    payload = wal_payload(batch)
    again = batch_from_wal(payload, "proj", _NoBuilding())
    assert again.body() == batch.body() and again.spans == batch.spans
    back = ExportTraceServiceRequest.FromString(as_otlp_request(payload))
    assert _flat(back) == _flat(req)


def test_records_of_older_collectors_are_requests() -> None:
    req = next(iter(realistic_requests(Generator(3), 2, start_ns=time.time_ns(), span_ns=10**9, batch_spans=50)))
    old = req.SerializeToString()
    built = batch_from_wal(old, "proj", _builder(DEFAULT))
    assert built.spans == sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
    assert as_otlp_request(old) == old


def _flat(req: ExportTraceServiceRequest) -> list[tuple[bytes, bytes, bytes]]:
    """(resource, scope, span) of every span, however the request groups them."""
    return [(rs.resource.SerializeToString(deterministic=True), ss.scope.SerializeToString(deterministic=True),
             span.SerializeToString(deterministic=True))
            for rs in req.resource_spans for ss in rs.scope_spans for span in ss.spans]
