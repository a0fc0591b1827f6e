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

import re
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from flowscope.core import semconv
from flowscope.core.ids import match_run_id_bytes

from .framing import read_varint
from .values import value_str

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
    """Apply ``limits`` to ``req`` in place and say what was cut or refused.

    The reference: every value of every span is looked at in Python. Ingest
    uses :class:`SpanLimiter` instead (the same result, see the tests), which
    only looks inside the rare span that could break a limit.
    """
    lim = SpanLimiter(limits)
    for rs in req.resource_spans:
        lim.resource(rs)
        for ss in rs.scope_spans:
            lim.scope(ss)
            for i in reversed([i for i, span in enumerate(ss.spans) if lim.refuse(span)]):
                del ss.spans[i]
            for span in ss.spans:
                lim.span(span)
    return lim.finish()


class SpanLimiter:
    """:func:`enforce`, one resource, scope and span at a time, with a fast pass for spans that fit.

    Walking every attribute in Python cost ~12 µs per span, as much as the
    rest of ingest together. A span whose serialised form is shorter than
    every string limit cannot hold an over-long string; if it also has few
    enough attributes, events and links, sane timestamps and no nested
    values, nothing in it can change, and :meth:`fits` says so from a few
    length fields and one byte search (~1 µs).
    """

    def __init__(self, limits: RequestLimits) -> None:
        self.limits = limits
        self._e = _Enforcer(limits)
        self._reasons: list[str] = []
        # No string of a span this short can exceed a string or array limit
        # (an array item takes at least two bytes).
        self.small = min(limits.max_name_chars, limits.max_value_chars, 2 * limits.max_array_items)

    @property
    def report(self) -> LimitReport:
        return self._e.report

    def resource(self, rs: Any) -> None:
        self._e.attributes(rs.resource)

    def scope(self, ss: Any) -> None:
        e, lim = self._e, self.limits
        e.attributes(ss.scope)
        if len(ss.scope.name) > lim.max_name_chars:
            ss.scope.name = e.text(ss.scope.name, lim.max_name_chars)
        if len(ss.scope.version) > lim.max_name_chars:
            ss.scope.version = e.text(ss.scope.version, lim.max_name_chars)

    def fits(self, span: Any, raw: bytes, nested: bool | None = None) -> bool:
        """True when :meth:`span` and :meth:`refuse` would change nothing (``raw``: the serialised span).

        ``nested`` is :func:`may_nest` of ``raw`` if the caller has it. False
        only costs the slow path; it is never wrong the other way.
        """
        lim = self.limits
        if len(raw) > self.small:
            return False
        if (len(span.attributes) > lim.max_attributes or len(span.events) > lim.max_events
                or len(span.links) > lim.max_links
                or span.start_time_unix_nano > MAX_TIMESTAMP_NS or span.end_time_unix_nano > MAX_TIMESTAMP_NS):
            return False
        for ev in span.events:
            if len(ev.attributes) > lim.max_attributes or ev.time_unix_nano > MAX_TIMESTAMP_NS:
                return False
        for link in span.links:
            if len(link.attributes) > lim.max_attributes:
                return False
        if not (may_nest(raw) if nested is None else nested):
            return True
        return max_depth(span) <= lim.max_depth

    def refuse(self, span: Any) -> bool:
        """True (and counted, with a reason) for a span storage cannot hold; the caller drops it."""
        bad = _run_id_problem(_run_id_of(span)) or _bad_timestamp(span)
        if bad:
            self.reject(span, bad)
        return bad is not None

    def reject(self, span: Any, reason: str) -> None:
        """Count ``span`` as refused, for ``reason`` (the first five reasons go back to the client)."""
        self.report.rejected_spans += 1
        if len(self._reasons) < 5:
            self._reasons.append(f"span {span.name[:100]!r}: {reason}")

    def span(self, span: Any) -> None:
        """Cut ``span`` (in place) to the limits."""
        e, lim, rep = self._e, self.limits, self._e.report
        # Assign only what changes: setting a field of ``status`` would make an
        # absent status present, and the request would no longer be the one sent.
        if len(span.name) > lim.max_name_chars:
            span.name = e.text(span.name, lim.max_name_chars)
        if len(span.trace_state) > lim.max_name_chars:
            span.trace_state = e.text(span.trace_state, lim.max_name_chars)
        if len(span.status.message) > lim.max_value_chars:
            span.status.message = e.text(span.status.message, lim.max_value_chars)
        e.attributes(span)
        if len(span.events) > lim.max_events:
            extra = len(span.events) - lim.max_events
            del span.events[lim.max_events:]
            span.dropped_events_count += extra
            rep.dropped_events += extra
        for ev in span.events:
            if len(ev.name) > lim.max_name_chars:
                ev.name = e.text(ev.name, lim.max_name_chars)
            e.attributes(ev)
        if len(span.links) > lim.max_links:
            extra = len(span.links) - lim.max_links
            del span.links[lim.max_links:]
            span.dropped_links_count += extra
            rep.dropped_links += extra
        for link in span.links:
            if len(link.trace_state) > lim.max_name_chars:
                link.trace_state = e.text(link.trace_state, lim.max_name_chars)
            e.attributes(link)

    def finish(self) -> LimitReport:
        rep = self.report
        reasons = list(self._reasons)
        if rep.rejected_spans:
            reasons.insert(0, f"{rep.rejected_spans} spans refused")
        rep.reasons = reasons
        return rep


# An attribute (of the span, an event or a link) whose value is an array
# (AnyValue field 5) or a kvlist (field 6): KeyValue.value's tag, its length,
# then the AnyValue's tag. The span id (tag 0x12 too) is skipped by starting
# the search past it; a false match only costs a precise look.
_ARRAY_OR_KVLIST = re.compile(rb"\x12[\x80-\xff]{0,4}[\x00-\x7f][\x2a\x32]")


def may_nest(raw: bytes) -> bool:
    """False when no attribute of the serialised span ``raw`` holds an array or a kvlist (~1 µs)."""
    start = 28 if raw[:2] == b"\x0a\x10" and raw[18:20] == b"\x12\x08" else 0
    return _ARRAY_OR_KVLIST.search(raw, start) is not None


def _depth(v: AnyValue) -> int:
    which = v.WhichOneof("value")
    if which == "array_value":
        return 1 + max((_depth(x) for x in v.array_value.values), default=0)
    if which == "kvlist_value":
        return 1 + max((_depth(kv.value) for kv in v.kvlist_value.values), default=0)
    return 0


def max_depth(span: Any) -> int:
    """Deepest array/kvlist nesting among the span's attribute values (1: a flat array or kvlist)."""
    owners = [span, *span.events, *span.links]
    return max((_depth(kv.value) for o in owners for kv in o.attributes), default=0)


K_RUN_ID = semconv.RUN_ID.encode()
# flowscope.run.id as a span attribute of under 128 bytes: Span.attributes (tag 9, a one-byte
# length), KeyValue.key (tag 1, 16 bytes), then KeyValue.value (tag 2). Nested kvlists (tag 1),
# event (tag 3) and link (tag 4) attributes do not match.
_K_RUN_ID_KV = b"\x0a" + bytes([len(K_RUN_ID)]) + K_RUN_ID + b"\x12"
_KV_LEN = len(_K_RUN_ID_KV)


def _varint_at(raw: bytes, pos: int) -> tuple[int, int]:
    """:func:`.framing.read_varint`, but ``-1`` for a varint cut off by the end of ``raw`` (hostile input)."""
    try:
        return read_varint(raw, pos)
    except IndexError:
        return -1, len(raw)


def _run_id_of(span: Any) -> bytes | None:
    for kv in span.attributes:
        if kv.key == semconv.RUN_ID:
            return value_str(kv.value).encode("utf-8", "surrogatepass")
    return None


def _run_id_problem(value: bytes | None) -> str | None:
    if not value or match_run_id_bytes(value):  # none, or empty: the trace id stands in
        return None
    shown = value[:80].decode("utf-8", "replace")
    return (f"flowscope.run.id {shown!r} is not a run id: 1-128 characters of A-Z a-z 0-9 _ - : . "
            "(it could never be opened)")


def bad_run_id(span: Any, raw: bytes) -> str | None:
    """Why the span's ``flowscope.run.id`` cannot be stored as a run id (None: it can, or it has none).

    A run named outside :data:`flowscope.core.ids.RUN_ID_PATTERN` was stored but could never
    be opened; such a span is refused instead, with the reason. Read off the serialised span
    ``raw`` in the usual case (a short string value), from the attributes otherwise.
    """
    at = raw.find(_K_RUN_ID_KV)
    if at < 0 and K_RUN_ID not in raw:
        return None  # no run id anywhere in the span
    if at >= 2 and raw[at - 2] == 0x4A and raw[at - 1] < 0x80:
        p = at + _KV_LEN
        # the usual value: AnyValue and its string_value (tag 1) with one-byte lengths, read inline
        # (this runs for every span: function calls here showed in the ingest benchmark)
        if p + 2 < len(raw) and raw[p] < 0x80 and raw[p + 1] == 0x0A and raw[p + 2] + 2 <= raw[p]:
            value = raw[p + 3:p + 3 + raw[p + 2]]
            return None if not value or match_run_id_bytes(value) else _run_id_problem(value)
        length, pos = _varint_at(raw, p)
        if length >= 0 and pos < len(raw) and raw[pos] == 0x0A:
            size, start = _varint_at(raw, pos + 1)
            if size >= 0 and start + size <= pos + length:
                return _run_id_problem(raw[start:start + size])
    return _run_id_problem(_run_id_of(span))


def _bad_timestamp(span: Any) -> str | None:
    if span.start_time_unix_nano > MAX_TIMESTAMP_NS or span.end_time_unix_nano > MAX_TIMESTAMP_NS:
        return "start/end time beyond year 2262 cannot be stored"
    for ev in span.events:
        if ev.time_unix_nano > MAX_TIMESTAMP_NS:
            return f"event {ev.name[:100]!r} time beyond year 2262 cannot be stored"
    return None
