"""Acknowledged means stored: what the collector answers 200 to, ClickHouse must take.

Each trial here was found by sending hostile bytes to a real collector (OTLP/HTTP
and OTLP/gRPC on loopback, chDB underneath): the collector acknowledged the
request, ClickHouse then refused the insert and the writer set the request aside
in quarantine, so every span in it was lost after its client heard "accepted".
A test fails if any acknowledged span of these trials is quarantined, missing or
stored twice.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests._collector_kit import CollectorProcess, chdb_query, free_port
from tests.collector.test_faults import metric, wait_drained

PB = {"content-type": "application/x-protobuf"}
METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
DAY_NS = 86_400 * 10**9
# An unknown field 100 of wire type 3 (start group) holding a varint, closed by wire type 4 (end group).
GROUP = bytes([0xA3, 0x06, 0x08, 0x01, 0xA4, 0x06])


@pytest.fixture(scope="module")
def col(tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    proc = CollectorProcess(tmp_path_factory.mktemp("integrity") / "data",
                            env={"FLOWSCOPE_GRPC_PORT": str(port)}).start()
    proc.grpc_port = port  # type: ignore[attr-defined]
    yield proc
    proc.stop()


def _request(service: str, n: int, *, days_apart: bool = False, group: bool = False) -> bytes:
    """``n`` spans of ``service``; with ``group`` an unknown group field in the span, its
    attributes, events, resource and scope; with ``days_apart`` each span on its own day."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    ss.scope.name = "hostile"
    now = time.time_ns()
    for i in range(n):
        span = Span()
        span.trace_id, span.span_id, span.name = os.urandom(16), os.urandom(8), f"s{i}"
        start = now - i * DAY_NS if days_apart else now + i
        span.start_time_unix_nano, span.end_time_unix_nano = start, start + 1000
        a = span.attributes.add()
        a.key, a.value.string_value = "k", "v"
        ev = span.events.add()
        ev.name, ev.time_unix_nano = "e", start
        raw = span.SerializeToString()
        if group:  # unknown fields survive parsing and re-serialising: the group rides along
            attr = span.attributes[0].SerializeToString() + GROUP
            raw += GROUP + b"\x4a" + bytes([len(attr)]) + attr
        ss.spans.add().ParseFromString(raw)
    body = req.SerializeToString()
    if group:  # ... and at the request, resource-spans and resource level too
        r = ExportTraceServiceRequest.FromString(body)
        rs_raw = r.resource_spans[0].SerializeToString()
        res = r.resource_spans[0].resource.SerializeToString() + GROUP
        rs_raw = b"\x0a" + _varint(len(res)) + res + rs_raw + GROUP
        body = GROUP + b"\x0a" + _varint(len(rs_raw)) + rs_raw
    return body


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _ids(body: bytes) -> set[str]:
    req = ExportTraceServiceRequest.FromString(body)
    return {s.span_id.hex() for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans}


def _stored(data: Path, service: str) -> list[str]:
    return [r[0] for r in chdb_query(data, f"SELECT SpanId FROM otel_traces WHERE ServiceName = '{service}'")]


def _export_grpc(port: int, body: bytes) -> bytes:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary(METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        return call(body, timeout=30)


def test_nothing_acknowledged_ends_in_quarantine(col: CollectorProcess, tmp_path: Path) -> None:
    sent: dict[str, set[str]] = {}
    group_http = _request("group-http", 20, group=True)
    span = ExportTraceServiceRequest.FromString(group_http).resource_spans[0].scope_spans[0].spans[0]
    assert GROUP in span.SerializeToString()  # the group survives parsing: it really is on the wire
    r = httpx.post(col.url + "/v1/traces", content=group_http, headers=PB, timeout=30)
    assert r.status_code == 200, r.text
    sent["group-http"] = _ids(group_http)
    group_grpc = _request("group-grpc", 20, group=True)
    _export_grpc(col.grpc_port, group_grpc)  # type: ignore[attr-defined]
    sent["group-grpc"] = _ids(group_grpc)
    many_days = _request("many-days", 150, days_apart=True)  # 150 daily partitions in one request
    r = httpx.post(col.url + "/v1/traces", content=many_days, headers=PB, timeout=30)
    assert r.status_code == 200, r.text
    sent["many-days"] = _ids(many_days)
    wait_drained(col, 120)

    assert metric(col, "flowscope_spans_quarantined_total") == 0, col.log.read_text()[-3000:]
    quarantine = col.data_dir / "flowscope-wal" / "quarantine"
    assert not quarantine.exists() or not any(quarantine.iterdir())
    col.stop()
    try:
        for service, acked in sent.items():
            ids = _stored(col.data_dir, service)
            assert len(ids) == len(set(ids)), f"{service}: spans stored twice"
            assert acked == set(ids), f"{service}: {len(acked - set(ids))} acknowledged spans lost"
    finally:
        col.start()
