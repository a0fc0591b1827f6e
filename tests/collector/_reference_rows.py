"""The ``otel_traces`` rows of a request, built column by column in Python: the oracle for ingest.

The collector never builds rows this way: it frames protobuf rows and lets
ClickHouse parse them (``flowscope_collector.ingest.rows``). This is the
plain, attribute-by-attribute statement of what those rows must hold, kept
here so ``test_api_ingest`` can compare what ClickHouse stored against it.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flowscope.core import semconv
from flowscope.core.normalize import normalize_attributes
from flowscope_collector.ingest.limits import RequestLimits
from flowscope_collector.ingest.values import value_str

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


def _attrs(kvs: Any, lim: RequestLimits) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, kv in enumerate(kvs):
        if i >= lim.max_attributes:
            out["flowscope.dropped_attributes"] = str(len(kvs) - lim.max_attributes)
            break
        s = value_str(kv.value)
        if len(s) > lim.max_value_chars:
            s = s[: lim.max_value_chars] + lim.truncation_marker
        out[kv.key] = s
    return out


def reference_columns(req: ExportTraceServiceRequest, project: str,
                      lim: RequestLimits | None = None) -> list[list[Any]]:
    """Column lists in :data:`COLUMNS` order, one entry per span of ``req``."""
    lim = lim or RequestLimits()
    columns: list[list[Any]] = [[] for _ in COLUMNS]
    (ts_c, tid_c, sid_c, pid_c, tstate_c, name_c, kind_c, svc_c, rattr_c, sname_c, sver_c, attr_c,
     dur_c, status_c, smsg_c, ets_c, ename_c, eattr_c, ltid_c, lsid_c, lts_c, lattr_c) = columns
    for rs in req.resource_spans:
        rattrs = _attrs(rs.resource.attributes, lim)
        rattrs[semconv.PROJECT] = project
        service = rattrs.get(semconv.SERVICE_NAME, "")
        for ss in rs.scope_spans:
            for span in ss.spans:
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                ts_c.append(start)
                tid_c.append(span.trace_id.hex())
                sid_c.append(span.span_id.hex())
                pid_c.append(span.parent_span_id.hex())
                tstate_c.append(span.trace_state)
                name_c.append(span.name)
                kind_c.append(_SPAN_KINDS[span.kind] if 0 <= span.kind < 6 else "Unspecified")
                svc_c.append(service)
                rattr_c.append(rattrs)
                sname_c.append(ss.scope.name)
                sver_c.append(ss.scope.version)
                attr_c.append(normalize_attributes(_attrs(span.attributes, lim), parent_span_id=span.parent_span_id,
                                                   span_name=span.name))
                dur_c.append(end - start if end > start else 0)
                status_c.append(_STATUS[span.status.code] if 0 <= span.status.code < 3 else "Unset")
                smsg_c.append(span.status.message)
                events = span.events[:lim.max_events]
                ets_c.append([e.time_unix_nano for e in events])
                ename_c.append([e.name for e in events])
                eattr_c.append([_attrs(e.attributes, lim) for e in events])
                ltid_c.append([link.trace_id.hex() for link in span.links])
                lsid_c.append([link.span_id.hex() for link in span.links])
                lts_c.append([link.trace_state for link in span.links])
                lattr_c.append([_attrs(link.attributes, lim) for link in span.links])
    return columns
