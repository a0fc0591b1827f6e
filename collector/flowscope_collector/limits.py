"""Per-span limits applied to a decoded request before it is written anywhere.

Enforcing them on the protobuf, ahead of the write-ahead log, bounds what one
request can cost us on disk, in memory and in ClickHouse, whatever a client
sends. Over-long strings are cut and marked, surplus attributes, events and
links are dropped and counted in OTLP's own ``dropped_*_count`` fields (so the
loss is visible, not silent), and spans ClickHouse could not store at all
(timestamps past year 2262) are refused individually and reported back as an
OTLP partial success.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

# DateTime64(9) holds nanoseconds in an Int64.
MAX_TIMESTAMP_NS = (1 << 63) - 1
DROPPED_ATTRIBUTES = "flowscope.dropped_attributes"


@dataclass(frozen=True)
class RequestLimits:
    max_attributes: int = 256
    max_events: int = 256
    max_links: int = 128
    max_value_chars: int = 64 * 1024
    max_name_chars: int = 1024
    max_array_items: int = 1024
    max_depth: int = 8
    truncation_marker: str = "…[truncated]"


@dataclass
class LimitReport:
    truncated_values: int = 0
    dropped_attributes: int = 0
    dropped_events: int = 0
    dropped_links: int = 0
    rejected_spans: int = 0
    reasons: list[str] | None = None

    @property
    def message(self) -> str:
        return "; ".join(self.reasons or [])


class _Enforcer:
    def __init__(self, limits: RequestLimits) -> None:
        self.lim = limits
        self.report = LimitReport()

    def text(self, s: str, limit: int) -> str:
        if len(s) <= limit:
            return s
        self.report.truncated_values += 1
        return s[:limit] + self.lim.truncation_marker

    def value(self, v: AnyValue, depth: int) -> None:
        which = v.WhichOneof("value")
        lim = self.lim
        if which == "string_value":
            if len(v.string_value) > lim.max_value_chars:
                v.string_value = self.text(v.string_value, lim.max_value_chars)
        elif which == "bytes_value":
            if len(v.bytes_value) > lim.max_value_chars:
                self.report.truncated_values += 1
                v.bytes_value = v.bytes_value[: lim.max_value_chars]
        elif which in ("array_value", "kvlist_value"):
            if depth >= lim.max_depth:
                self.report.truncated_values += 1
                v.string_value = f"[nested deeper than {lim.max_depth} levels]"
                return
            items: Any = v.array_value.values if which == "array_value" else v.kvlist_value.values
            if len(items) > lim.max_array_items:
                self.report.truncated_values += 1
                del items[lim.max_array_items:]
            for item in items:
                if which == "array_value":
                    self.value(item, depth + 1)
                else:
                    if len(item.key) > lim.max_name_chars:
                        item.key = self.text(item.key, lim.max_name_chars)
                    self.value(item.value, depth + 1)

    def attributes(self, owner: Any) -> None:
        kvs = owner.attributes
        lim = self.lim
        if len(kvs) > lim.max_attributes:
            # Keep room for one attribute saying how many were dropped, so the
            # loss shows in storage, not only in OTLP's dropped count.
            keep = max(0, lim.max_attributes - 1)
            extra = len(kvs) - keep
            del kvs[keep:]
            owner.dropped_attributes_count += extra
            self.report.dropped_attributes += extra
            if lim.max_attributes:
                marker = kvs.add()
                marker.key, marker.value.string_value = DROPPED_ATTRIBUTES, str(extra)
        for kv in kvs:
            if len(kv.key) > lim.max_name_chars:
                kv.key = self.text(kv.key, lim.max_name_chars)
            self.value(kv.value, 0)


def enforce(req: ExportTraceServiceRequest, limits: RequestLimits) -> LimitReport:
    """Apply ``limits`` to ``req`` in place and say what was cut or refused."""
    e = _Enforcer(limits)
    rep = e.report
    reasons: list[str] = []
    for rs in req.resource_spans:
        e.attributes(rs.resource)
        for ss in rs.scope_spans:
            e.attributes(ss.scope)
            ss.scope.name = e.text(ss.scope.name, limits.max_name_chars)
            ss.scope.version = e.text(ss.scope.version, limits.max_name_chars)
            for i in range(len(ss.spans) - 1, -1, -1):
                bad = _bad_timestamp(ss.spans[i])
                if bad:
                    rep.rejected_spans += 1
                    if len(reasons) < 5:
                        reasons.append(f"span {ss.spans[i].name[:100]!r}: {bad}")
                    del ss.spans[i]
            for span in ss.spans:
                span.name = e.text(span.name, limits.max_name_chars)
                span.trace_state = e.text(span.trace_state, limits.max_name_chars)
                span.status.message = e.text(span.status.message, limits.max_value_chars)
                e.attributes(span)
                if len(span.events) > limits.max_events:
                    extra = len(span.events) - limits.max_events
                    del span.events[limits.max_events:]
                    span.dropped_events_count += extra
                    rep.dropped_events += extra
                for ev in span.events:
                    ev.name = e.text(ev.name, limits.max_name_chars)
                    e.attributes(ev)
                if len(span.links) > limits.max_links:
                    extra = len(span.links) - limits.max_links
                    del span.links[limits.max_links:]
                    span.dropped_links_count += extra
                    rep.dropped_links += extra
                for link in span.links:
                    link.trace_state = e.text(link.trace_state, limits.max_name_chars)
                    e.attributes(link)
    if rep.rejected_spans:
        reasons.insert(0, f"{rep.rejected_spans} spans refused")
    rep.reasons = reasons
    return rep


def _bad_timestamp(span: Any) -> str | None:
    if span.start_time_unix_nano > MAX_TIMESTAMP_NS or span.end_time_unix_nano > MAX_TIMESTAMP_NS:
        return "start/end time beyond year 2262 cannot be stored"
    for ev in span.events:
        if ev.time_unix_nano > MAX_TIMESTAMP_NS:
            return f"event {ev.name[:100]!r} time beyond year 2262 cannot be stored"
    return None
