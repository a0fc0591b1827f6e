"""Turning a decoded OTLP request into ``otel_traces`` columns.

Values are stringified the way the OpenTelemetry Collector ClickHouse exporter
does it (``pcommon.Value.AsString``), so rows are indistinguishable whichever
of the two wrote them. The project comes from the API key, never from the
payload: a client cannot write into another project by claiming it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from flowscope import semconv
from flowscope.normalize import normalize_attributes
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

COLUMNS = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
    "Events.Timestamp",
    "Events.Name",
    "Events.Attributes",
    "Links.TraceId",
    "Links.SpanId",
    "Links.TraceState",
    "Links.Attributes",
)

_SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
_STATUS = ("Unset", "Ok", "Error")


@dataclass
class Limits:
    max_attributes: int = 256
    max_events: int = 256
    max_value_chars: int = 64 * 1024
    truncation_marker: str = "…[truncated]"


@dataclass
class Batch:
    """Column-oriented rows ready for ``client.insert(..., column_oriented=True)``."""

    columns: list[list[Any]] = field(default_factory=lambda: [[] for _ in COLUMNS])
    spans: int = 0
    truncated_values: int = 0

    def extend(self, other: Batch) -> None:
        for mine, theirs in zip(self.columns, other.columns):
            mine.extend(theirs)
        self.spans += other.spans
        self.truncated_values += other.truncated_values


def _native(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "bool_value":
        return v.bool_value
    if which == "int_value":
        return v.int_value
    if which == "double_value":
        return v.double_value
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if which == "array_value":
        return [_native(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _native(kv.value) for kv in v.kvlist_value.values}
    return None


def _float_str(d: float) -> str:
    if d == int(d) and abs(d) < 1e16:
        return str(int(d)) if d != 0 or str(d)[0] != "-" else "0"
    return repr(d)


def value_str(v: AnyValue) -> str:
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "int_value":
        return str(v.int_value)
    if which == "bool_value":
        return "true" if v.bool_value else "false"
    if which == "double_value":
        return _float_str(v.double_value)
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if which is None:
        return ""
    return json.dumps(_native(v), separators=(",", ":"), ensure_ascii=False)


class RowBuilder:
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()

    def _attrs(self, kvs: Any, batch: Batch) -> dict[str, str]:
        lim = self.limits
        out: dict[str, str] = {}
        for i, kv in enumerate(kvs):
            if i >= lim.max_attributes:
                out["flowscope.dropped_attributes"] = str(len(kvs) - lim.max_attributes)
                break
            s = value_str(kv.value)
            if len(s) > lim.max_value_chars:
                s = s[: lim.max_value_chars] + lim.truncation_marker
                batch.truncated_values += 1
            out[kv.key] = s
        return out

    def build(self, req: ExportTraceServiceRequest, project: str) -> Batch:
        batch = Batch()
        (ts_c, tid_c, sid_c, pid_c, tstate_c, name_c, kind_c, svc_c, rattr_c, sname_c, sver_c, attr_c,
         dur_c, status_c, smsg_c, ets_c, ename_c, eattr_c, ltid_c, lsid_c, lts_c, lattr_c) = batch.columns
        max_events = self.limits.max_events
        for rs in req.resource_spans:
            rattrs = self._attrs(rs.resource.attributes, batch)
            rattrs[semconv.PROJECT] = project
            service = rattrs.get(semconv.SERVICE_NAME, "")
            for ss in rs.scope_spans:
                scope_name = ss.scope.name
                scope_version = ss.scope.version
                for span in ss.spans:
                    attrs = normalize_attributes(self._attrs(span.attributes, batch))
                    start = span.start_time_unix_nano
                    end = span.end_time_unix_nano
                    ts_c.append(start)
                    tid_c.append(span.trace_id.hex())
                    sid_c.append(span.span_id.hex())
                    pid_c.append(span.parent_span_id.hex())
                    tstate_c.append(span.trace_state)
                    name_c.append(span.name)
                    kind_c.append(_SPAN_KINDS[span.kind] if 0 <= span.kind < 6 else "Unspecified")
                    svc_c.append(service)
                    rattr_c.append(rattrs)
                    sname_c.append(scope_name)
                    sver_c.append(scope_version)
                    attr_c.append(attrs)
                    dur_c.append(end - start if end > start else 0)
                    status_c.append(_STATUS[span.status.code] if 0 <= span.status.code < 3 else "Unset")
                    smsg_c.append(span.status.message)
                    events = span.events[:max_events]
                    ets_c.append([e.time_unix_nano for e in events])
                    ename_c.append([e.name for e in events])
                    eattr_c.append([self._attrs(e.attributes, batch) for e in events])
                    ltid_c.append([link.trace_id.hex() for link in span.links])
                    lsid_c.append([link.span_id.hex() for link in span.links])
                    lts_c.append([link.trace_state for link in span.links])
                    lattr_c.append([self._attrs(link.attributes, batch) for link in span.links])
                    batch.spans += 1
        return batch
