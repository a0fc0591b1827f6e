"""Turning a decoded OTLP request into ``otel_traces`` rows.

Two paths produce the same rows:

* the fast path (:meth:`RowBuilder.build`) leaves the request as protobuf.
  Python only stamps the project on each resource and rewrites the few spans
  that need Python (LLM spans to normalise and price, oversized values,
  attribute values that are not scalars or arrays of scalars); the request is
  re-serialised and ClickHouse parses it (``Protobuf`` format with the
  wire-compatible :data:`OTLP_SCHEMA`) into the ``otlp_ingest`` Null table,
  whose materialized view writes ``otel_traces``. No attribute of an ordinary
  span is touched in Python, which is what made row building the bottleneck.
* the reference path (:meth:`RowBuilder.build_rows`) builds column lists in
  Python, attribute by attribute. It is what :attr:`Batch.columns` returns
  for writers that still insert columns, and what tests compare the fast
  path against.

Values are stringified the way the OpenTelemetry Collector ClickHouse exporter
does it (``pcommon.Value.AsString``), so rows are indistinguishable whichever
of the two wrote them. The project comes from the API key, never from the
payload: a client cannot write into another project by claiming it.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from flowscope.core import semconv
from flowscope.core.normalize import INGEST_HINTS, normalize_attributes

from ..store.connection import protobuf_schema_settings
from . import otlp
from .limits import MAX_TIMESTAMP_NS, SpanLimiter, may_nest

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

INGEST_TABLE = "otlp_ingest"

# OTLP trace messages with the field numbers of opentelemetry-proto, reduced to
# what otel_traces stores, plus ``Row``: one span with its resource and scope,
# which Python assembles by concatenating the parts' own bytes (one ClickHouse
# row per span parses far faster than nested repeated messages). AnyValue's
# kvlist (and values nested inside arrays) are declared ``bytes``: same wire
# type, so any OTLP data parses, and spans that carry them are rewritten in
# Python first.
OTLP_SCHEMA = """syntax = "proto3";
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
message Resource { repeated KeyValue attributes = 1; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }
message InstrumentationScope { string name = 1; string version = 2; }
message Span {
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4;
  string name = 5; int32 kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9; repeated Event events = 11; repeated Link links = 13; Status status = 15;
}
message Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; }
message Link { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; repeated KeyValue attributes = 4; }
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue { oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3;
  double double_value = 4; ArrayValue array_value = 5; bytes kvlist_value = 6; bytes bytes_value = 7; } }
message ArrayValue { repeated ScalarValue values = 1; }
message ScalarValue { oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3;
  double double_value = 4; bytes array_value = 5; bytes kvlist_value = 6; bytes bytes_value = 7; } }
message Row { Resource resource = 1; InstrumentationScope scope = 2; Span span = 3; }
"""

_SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
_STATUS = ("Unset", "Ok", "Error")


def _key(name: str) -> bytes:
    """A KeyValue.key as it appears on the wire (tag, length, bytes)."""
    raw = name.encode()
    assert len(raw) < 128
    return b"\x0a" + bytes([len(raw)]) + raw


# Byte patterns over one serialised span. A false positive only sends a span
# down the (correct, slower) Python path; the patterns are chosen so that
# there are no false negatives for what they guard.
_K_KIND = _key(semconv.SPAN_KIND)
_K_KIND_LLM = _K_KIND + b"\x12\x05\x0a\x03" + semconv.KIND_LLM.encode()
_K_COST_SOURCE = _key(semconv.COST_SOURCE)
_K_PROVIDER = _key(semconv.GEN_AI_PROVIDER_NAME)
_K_SYSTEM = _key(semconv.GEN_AI_SYSTEM)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


def _varint_slow(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


# Every span and row is length-prefixed: a table covers the lengths spans have.
_VARINTS = [_varint_slow(n) for n in range(1 << 14)]


def _varint(n: int) -> bytes:
    return _VARINTS[n] if n < 16384 else _varint_slow(n)


@dataclass
class Limits:
    max_attributes: int = 256
    max_events: int = 256
    max_value_chars: int = 64 * 1024
    truncation_marker: str = "…[truncated]"


@dataclass
class Batch:
    """Spans ready to insert.

    ``payloads`` are chunks of ClickHouse ``Protobuf`` input (length-delimited
    ``Row`` messages, one per span) that :meth:`insert` sends as they are;
    ``columns`` is the same data as Python column lists, built from the
    (project-stamped, rewritten) requests only if a writer asks for it.
    """

    payloads: list[bytes] = field(default_factory=list)
    requests: list[tuple[ExportTraceServiceRequest, str, Limits]] = field(default_factory=list)
    project: str | None = None  # of payloads read back from the write-ahead log (no requests)
    spans: int = 0
    truncated_values: int = 0
    python_spans: int = 0  # spans that needed the Python rewrite
    _columns: list[list[Any]] | None = field(default=None, repr=False)

    @property
    def columns(self) -> list[list[Any]]:
        """Column-oriented rows for ``client.insert(..., column_oriented=True)`` (the slow path)."""
        if self._columns is None:
            merged = _empty_columns()
            requests = self.requests
            if not requests and self.project is not None:
                requests = [(ExportTraceServiceRequest.FromString(rows_to_request(p)), self.project, Limits())
                            for p in self.payloads]
            for req, project, limits in requests:
                for mine, theirs in zip(merged, RowBuilder(limits).build_rows(req, project).columns):
                    mine.extend(theirs)
            self._columns = merged
        return self._columns

    @classmethod
    def from_rows(cls, body: bytes, project: str) -> Batch:
        """A batch of rows as :meth:`RowBuilder.build` framed them (read back from the write-ahead log)."""
        return cls(payloads=[body], project=project, spans=sum(1 for _ in _frames(body)))

    def extend(self, other: Batch) -> None:
        self.payloads.extend(other.payloads)
        self.requests.extend(other.requests)
        self.spans += other.spans
        self.truncated_values += other.truncated_values
        self.python_spans += other.python_spans
        self._columns = None

    def body(self) -> bytes:
        """The insert body: every payload, in order."""
        return b"".join(self.payloads)

    def insert(self, client: Client, table: str, settings: dict[str, Any] | None = None) -> None:
        """Insert through ClickHouse's own OTLP parsing.

        ``table`` is the ``otel_traces`` table (``db.otel_traces``); the
        payloads go to the ``otlp_ingest`` table next to it. ``settings``
        (deduplication token etc.) apply to the insert as usual.
        """
        if not self.payloads:
            return
        db = table.rsplit(".", 1)[0] if "." in table else None
        target = f"{db}.{INGEST_TABLE}" if db else INGEST_TABLE
        client.raw_insert(target, insert_block=self.body(), fmt="Protobuf",
                          settings={**protobuf_schema_settings(client, OTLP_SCHEMA, "Row"), **(settings or {})})


# A write-ahead log record holding rows (not an OTLP request) starts with this:
# 0xff is a protobuf tag with wire type 7, which no valid message starts with.
WAL_ROWS = b"\xffFR1"


def wal_payload(batch: Batch) -> bytes:
    """What the write-ahead log keeps for a built request: its rows, already checked, limited and stamped.

    Keeping the rows instead of the request spares re-serialising every
    request (~16% of the collector's Python time under load) and rebuilding
    on replay.
    """
    return WAL_ROWS + batch.body()


def batch_from_wal(payload: bytes, project: str, build: Callable[[ExportTraceServiceRequest], Batch]) -> Batch:
    """The batch of a log record; ``build`` handles records of an OTLP request (older collectors wrote those)."""
    if payload[:4] == WAL_ROWS:
        return Batch.from_rows(payload[4:], project)
    return build(ExportTraceServiceRequest.FromString(payload))


def as_otlp_request(payload: bytes) -> bytes:
    """A log record as a serialised ``ExportTraceServiceRequest`` (for people: quarantine files)."""
    return rows_to_request(payload[4:]) if payload[:4] == WAL_ROWS else payload


def _read_varint(body: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    value, shift = 0, 0
    while True:
        b = body[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _frames(body: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each length-delimited row in ``body``."""
    pos, n = 0, len(body)
    while pos < n:
        length, pos = _read_varint(body, pos)
        if pos + length > n:
            raise ValueError("truncated row framing")
        yield pos, pos + length
        pos += length


def rows_to_request(body: bytes) -> bytes:
    """Rows (``Row``: resource = 1, scope = 2, span = 3) back into an OTLP request, one resource per row.

    ``Row``'s resource and scope fields have ResourceSpans' and ScopeSpans'
    field numbers, so each row only needs re-wrapping: the span moves into a
    ScopeSpans next to the scope, which moves into a ResourceSpans.
    """
    out: list[bytes] = []
    for start, end in _frames(body):
        resource = scope = span = b""
        pos = start
        while pos < end:
            tag = body[pos]
            length, pos = _read_varint(body, pos + 1)
            part = body[pos:pos + length]
            pos += length
            if tag == 0x0A:
                resource = part
            elif tag == 0x12:
                scope = part
            elif tag == 0x1A:
                span = part
        scope_spans = _field(0x0A, scope) + _field(0x12, span)
        out.append(_field(0x0A, _field(0x0A, resource) + _field(0x12, scope_spans)))
    return b"".join(out)


def _empty_columns() -> list[list[Any]]:
    return [[] for _ in COLUMNS]


@dataclass
class Rows:
    """Reference-path output: column lists in :data:`COLUMNS` order."""

    columns: list[list[Any]] = field(default_factory=_empty_columns)
    spans: int = 0
    truncated_values: int = 0


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
    if d != d:  # NaN: spelled as the OTel Collector exporter spells it (Go)
        return "NaN"
    if d in (math.inf, -math.inf):
        return "+Inf" if d > 0 else "-Inf"
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

    def _attrs(self, kvs: Any, batch: Batch | Rows) -> dict[str, str]:
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

    # --- fast path ------------------------------------------------------------------

    def build(self, req: ExportTraceServiceRequest, project: str, limiter: SpanLimiter | None = None) -> Batch:
        """Check, limit and stamp the spans, rewrite those that need Python, and frame one row per span.

        Raises ``otlp.OTLPError`` for a span the store cannot represent (ids
        of the wrong length). With ``limiter`` the request limits are applied
        on the way and refused spans are removed from ``req``. The request is
        changed in place, so :attr:`Batch.columns` and a later
        ``SerializeToString`` see the data stored.

        Nearly every span is *plain*: read off its serialised bytes, its ids
        and times are fine, it is too short to hold an over-long value, its
        tag bytes bound its attribute, event and link counts, and it has no
        nested values. Such a span costs a serialisation and a few byte
        searches (~4 µs); upb's accessors (~0.3 µs each) and the limiter's
        walk over every attribute are kept for the rest.
        """
        batch = Batch()
        out: list[bytes] = []
        lim = self.limits
        small, max_attrs, max_events = lim.max_value_chars, lim.max_attributes, lim.max_events
        max_links = 1 << 30
        if limiter is not None:
            small = min(small, limiter.small)
            max_attrs = min(max_attrs, limiter.limits.max_attributes)
            max_events = min(max_events, limiter.limits.max_events)
            max_links = limiter.limits.max_links
        # Below these sizes no count can exceed its limit (a repeated entry takes two bytes or more).
        few_entries = 2 * min(max_attrs, max_events) + 2
        few_links = 2 * max_links + 2
        for rs in req.resource_spans:
            if limiter is not None:
                limiter.resource(rs)
            rattrs = self._attrs(rs.resource.attributes, batch)
            rattrs[semconv.PROJECT] = project
            _set_strings(rs.resource.attributes, rattrs)
            resource = _field(0x0A, rs.resource.SerializeToString())
            for ss in rs.scope_spans:
                if limiter is not None:
                    limiter.scope(ss)
                prefix = resource + _field(0x12, ss.scope.SerializeToString())
                refused: list[int] = []
                for i, span in enumerate(ss.spans):
                    raw = span.SerializeToString()
                    n = len(raw)
                    nested = may_nest(raw)
                    plain = (n <= small and not nested and _plain_header(raw)
                             and (n < few_entries or (raw.count(b"\x4a") <= max_attrs  # span attributes
                                                      and raw.count(b"\x5a") <= max_events  # events
                                                      and raw.count(b"\x1a") <= max_attrs  # event attributes
                                                      and raw.count(b"\x22") <= max_attrs))  # link attributes
                             and (n < few_links or raw.count(b"\x6a") <= max_links)
                             and (b"\x5a" not in raw or _event_times_ok(span)))
                    if not plain:
                        otlp.check_span(span)
                        if limiter is not None and not limiter.fits(span, raw, nested):
                            if limiter.refuse(span):
                                refused.append(i)
                                continue
                            limiter.span(span)
                            raw = span.SerializeToString()
                            nested = may_nest(raw)
                    if self._needs_python(span, raw, nested, plain):
                        self._rewrite(span, batch)
                        raw = span.SerializeToString()
                        batch.python_spans += 1
                    head = _varint(len(raw))
                    out += (_varint(len(prefix) + 1 + len(head) + len(raw)), prefix, b"\x1a", head, raw)
                    batch.spans += 1
                for i in reversed(refused):
                    del ss.spans[i]
        batch.payloads.append(b"".join(out))
        batch.requests.append((req, project, self.limits))
        return batch

    def _needs_python(self, span: Any, raw: bytes, nested: bool, plain: bool = False) -> bool:
        if plain:
            return _foreign_or_unpriced(raw)
        lim = self.limits
        if len(span.attributes) > lim.max_attributes or len(span.events) > lim.max_events:
            return True
        for e in span.events:
            if len(e.attributes) > lim.max_attributes:
                return True
        for link in span.links:
            if len(link.attributes) > lim.max_attributes:
                return True
        if len(raw) > lim.max_value_chars:  # could hold a value over the limit
            return True
        if nested and _not_flat(span):
            return True
        return _foreign_or_unpriced(raw)

    def _rewrite(self, span: Any, batch: Batch) -> None:
        """Replace the span's attributes with the normalised, limited string map the reference path stores."""
        _set_strings(span.attributes, normalize_attributes(self._attrs(span.attributes, batch), parent_span_id=span.parent_span_id))
        if len(span.events) > self.limits.max_events:
            del span.events[self.limits.max_events:]
        for e in span.events:
            _set_strings(e.attributes, self._attrs(e.attributes, batch))
        for link in span.links:
            _set_strings(link.attributes, self._attrs(link.attributes, batch))

    # --- reference path ---------------------------------------------------------------

    def build_rows(self, req: ExportTraceServiceRequest, project: str) -> Rows:
        """Column lists built in Python, attribute by attribute."""
        batch = Rows()
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
                    attrs = normalize_attributes(self._attrs(span.attributes, batch), parent_span_id=span.parent_span_id)
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


def _foreign_or_unpriced(raw: bytes) -> bool:
    """An LLM span normalisation would change: unpriced, or perhaps a foreign producer's."""
    if _K_KIND in raw:
        if _K_KIND_LLM not in raw:
            return False  # a run, node or tool span: normalisation leaves it alone
        return _K_COST_SOURCE not in raw or (_K_SYSTEM in raw and _K_PROVIDER not in raw)
    # Four searches instead of one per hint; the rare match is confirmed below.
    if b"gen_ai." in raw or b"llm." in raw:
        return True
    return (b"span.kind" in raw or b"graph" in raw) and any(hint in raw for hint in INGEST_HINTS)


# _foreign_or_unpriced's four probes must catch every hint.
assert all(any(p in h for p in (b"gen_ai.", b"llm.", b"span.kind", b"graph")) for h in INGEST_HINTS)


def _plain_header(raw: bytes) -> bool:
    """Ids of the right length and storable start/end times, read off a serialised span.

    upb writes fields in field-number order: trace_id (1), span_id (2),
    trace_state (3), parent_span_id (4), name (5), kind (6), start (7) and
    end (8, fixed64) come first. False when the layout is anything else
    (long names, no ids...): the caller then asks the accessors.
    """
    if raw[:2] != b"\x0a\x10" or raw[18:20] != b"\x12\x08":
        return False
    pos, n = 28, len(raw)
    if pos < n and raw[pos] == 0x1A:  # trace_state
        if raw[pos + 1] >= 0x80:
            return False
        pos += 2 + raw[pos + 1]
    if pos < n and raw[pos] == 0x22:  # parent_span_id
        if raw[pos + 1] != 8:
            return False
        pos += 10
    if pos < n and raw[pos] == 0x2A:  # name
        if raw[pos + 1] >= 0x80:
            return False
        pos += 2 + raw[pos + 1]
    if pos < n and raw[pos] == 0x30:  # kind
        if raw[pos + 1] >= 0x80:
            return False
        pos += 2
    if pos < n and raw[pos] == 0x39:  # start: a fixed64 past 2**63 - 1 has its top bit set
        if raw[pos + 8] >= 0x80:
            return False
        pos += 9
    return not (pos < n and raw[pos] == 0x41 and raw[pos + 8] >= 0x80)  # end


def _event_times_ok(span: Any) -> bool:
    return all(ev.time_unix_nano <= MAX_TIMESTAMP_NS for ev in span.events)


def _not_flat(span: Any) -> bool:
    """A value ClickHouse's side cannot store as the exporter does: a kvlist, or an array holding arrays or kvlists."""
    for owner in (span, *span.events, *span.links):
        for kv in owner.attributes:
            which = kv.value.WhichOneof("value")
            if which == "kvlist_value":
                return True
            if which == "array_value":
                for item in kv.value.array_value.values:
                    if item.WhichOneof("value") in ("array_value", "kvlist_value"):
                        return True
    return False


def _set_strings(kvs: Any, values: dict[str, str]) -> None:
    del kvs[:]
    kvs.extend(KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in values.items())
