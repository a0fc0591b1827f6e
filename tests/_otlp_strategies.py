"""Hypothesis strategies for OTLP trace requests, shared by the fuzzing and the limits tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

# --- strategies for structurally valid requests full of edge values ---------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_u64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1]))
_i64 = st.integers(-(2**63), 2**63 - 1)
_id = st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=20))


def _valid_id(size: int) -> Any:
    return st.binary(min_size=size, max_size=size)

_scalar = st.one_of(
    _text.map(lambda s: ("string_value", s)),
    st.booleans().map(lambda b: ("bool_value", b)),
    _i64.map(lambda i: ("int_value", i)),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: ("double_value", f)),
    st.binary(max_size=40).map(lambda b: ("bytes_value", b)),
)
_value: Any = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: ("array", xs)),
        st.lists(st.tuples(_text, inner), max_size=4).map(lambda kvs: ("kvlist", kvs)),
    ),
    max_leaves=12,
)


def _fill(v: AnyValue, spec: Any) -> None:
    kind, payload = spec
    if kind == "array":
        v.array_value.SetInParent()
        for item in payload:
            _fill(v.array_value.values.add(), item)
    elif kind == "kvlist":
        v.kvlist_value.SetInParent()
        for key, item in payload:
            kv = v.kvlist_value.values.add()
            kv.key = key
            _fill(kv.value, item)
    else:
        setattr(v, kind, payload)


_attrs = st.lists(st.tuples(st.one_of(_text, st.sampled_from(
    ["flowscope.run.id", "flowscope.cost.usd", "gen_ai.usage.input_tokens", "flowscope.node.step",
     "flowscope.span.kind", "gen_ai.request.model", "flowscope.state.seq"])), _value), max_size=6)


@st.composite
def requests(draw: Any, valid_ids: bool = False) -> ExportTraceServiceRequest:
    """Requests full of edge values; ``valid_ids``: ids of the right length (else mostly wrong)."""
    ids = _valid_id if valid_ids else (lambda size: _id)
    times = st.one_of(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), _u64) if valid_ids else _u64
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs = req.resource_spans.add()
        for key, val in draw(_attrs):
            kv = rs.resource.attributes.add()
            kv.key = key
            _fill(kv.value, val)
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add()
            ss.scope.name = draw(_text)
            for _ in range(draw(st.integers(0, 3))):
                span = ss.spans.add()
                span.trace_id, span.span_id = draw(ids(16)), draw(ids(8))
                span.parent_span_id = draw(st.one_of(st.just(b""), ids(8)))
                span.name = draw(_text)
                span.kind = draw(st.integers(-3, 9))
                span.start_time_unix_nano, span.end_time_unix_nano = draw(times), draw(times)
                span.status.code = draw(st.integers(-1, 5))
                span.status.message = draw(_text)
                for key, val in draw(_attrs):
                    kv = span.attributes.add()
                    kv.key = key
                    _fill(kv.value, val)
                for _ in range(draw(st.integers(0, 2))):
                    ev = span.events.add()
                    ev.name = draw(st.one_of(_text, st.just("flowscope.state")))
                    ev.time_unix_nano = draw(times)
                    for key, val in draw(_attrs):
                        kv = ev.attributes.add()
                        kv.key = key
                        _fill(kv.value, val)
                for _ in range(draw(st.integers(0, 2))):
                    link = span.links.add()
                    link.trace_id, link.span_id = draw(ids(16)), draw(ids(8))
    return req
