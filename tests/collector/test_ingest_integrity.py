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
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
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


def _run_request(spans: list[tuple[bytes, bytes, bytes, str, dict[str, str]]], service: str) -> bytes:
    """One request of (trace id, span id, parent, name, attributes) spans, three hours ago
    (so the cost roll-up's whole hours hold them, not only the raw spans)."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    start = (time.time_ns() // 3_600_000_000_000 - 3) * 3_600_000_000_000 + 60_000_000_000
    for trace_id, span_id, parent, name, attrs in spans:
        span = ss.spans.add()
        span.trace_id, span.span_id, span.parent_span_id, span.name = trace_id, span_id, parent, name
        span.start_time_unix_nano, span.end_time_unix_nano = start, start + 1_000_000
        for key, value in attrs.items():
            a = span.attributes.add()
            a.key, a.value.string_value = key, value
    return req.SerializeToString()


def _run(trace_id: bytes) -> list[tuple[bytes, bytes, bytes, str, dict[str, str]]]:
    root, llm = os.urandom(8), os.urandom(8)
    run = {"flowscope.run.id": trace_id.hex()}
    return [
        (trace_id, root, b"", "invoke_workflow dedup", {**run, "flowscope.span.kind": "run",
                                                       "gen_ai.workflow.name": "dedup-flow"}),
        (trace_id, llm, root, "chat gpt-4o-mini", {
            **run, "flowscope.span.kind": "llm", "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": "1000",
            "gen_ai.usage.output_tokens": "100", "flowscope.cost.usd": "0.00021",
            "flowscope.cost.source": "provider"}),
    ]


def test_the_same_span_sent_twice_counts_once(col: CollectorProcess) -> None:
    """Once in one request (the span twice), again re-batched with other spans into another request,
    and once more as the very same request: the list, the costs and the tables the dashboards read
    count it once, exactly like a run sent once."""
    once_trace, twice_trace = os.urandom(16), os.urandom(16)
    once, twice = _run(once_trace), _run(twice_trace)
    bodies = [
        (_run_request(once, "dedup-once")),
        _run_request(twice + twice, "dedup-twice"),  # every span twice in one request
        _run_request(twice[::-1], "dedup-twice"),  # re-batched in another order: other bytes
        _run_request(twice, "dedup-twice"),
    ]
    for body in bodies:
        r = httpx.post(col.url + "/v1/traces", content=body, headers=PB, timeout=30)
        assert r.status_code == 200, r.text
    wait_drained(col, 60)

    runs = {r["service"]: r for r in col.get("/api/v1/runs?since=1d&limit=1000").json()["runs"]
            if r["service"] in ("dedup-once", "dedup-twice")}
    a, b = runs["dedup-once"], runs["dedup-twice"]
    for key in ("spans", "llm_calls", "input_tokens", "output_tokens", "cost_usd"):
        assert a[key] == b[key], f"runs list {key}: sent once {a[key]}, sent twice {b[key]}"
    assert a["spans"] == 2
    summary = col.get(f"/api/v1/runs/{twice_trace.hex()}").json()
    assert (summary["spans"], summary["cost_usd"]) == (a["spans"], a["cost_usd"])

    costs = {g["key"]: g for g in col.get("/api/v1/costs?group_by=service&since=1d").json()["groups"]}
    for key in ("llm_calls", "input_tokens", "output_tokens", "cost_usd"):
        assert costs["dedup-once"][key] == costs["dedup-twice"][key], f"costs {key}"
    assert costs["dedup-twice"]["llm_calls"] == 1
    # grouped by a span attribute, the costs read the raw spans' table, which keeps every copy
    by_run = {g["key"]: g for g in col.get("/api/v1/costs?group_by=attr:flowscope.run.id&since=1d").json()["groups"]}
    for key in ("llm_calls", "input_tokens", "output_tokens", "cost_usd"):
        assert by_run[once_trace.hex()][key] == by_run[twice_trace.hex()][key], f"costs by attribute {key}"

    col.stop()
    try:
        for table, expr in (("flowscope_spans", "count()"), ("flowscope_runs", "sum(Spans)"),
                            ("flowscope_costs_hourly", "sum(LlmCalls)")):
            got = chdb_query(col.data_dir, f"SELECT ServiceName, {expr} FROM {table} "
                                           f"WHERE ServiceName LIKE 'dedup-%' GROUP BY ServiceName")
            counts = dict(map(tuple, got))  # type: ignore[arg-type]
            assert counts["dedup-once"] == counts["dedup-twice"], f"{table}: {counts}"
    finally:
        col.start()


def _json_span(name: str, *, start: int, attrs: list[dict] | None = None) -> bytes:
    import orjson

    span = {"traceId": os.urandom(16).hex(), "spanId": os.urandom(8).hex(), "name": name,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 1000), "attributes": attrs or []}
    return orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})


def test_invalid_base64_bytes_value_is_refused_with_the_reason(col: CollectorProcess) -> None:
    """protobuf's JSON parser skips characters outside base64: "no base64!" was stored as other bytes, with 200."""
    now = time.time_ns()
    bad = _json_span("b", start=now, attrs=[{"key": "blob", "value": {"bytesValue": "no base64!"}}])
    r = httpx.post(col.url + "/v1/traces", content=bad, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text
    assert "not base64" in r.text
    good = _json_span("b", start=now, attrs=[{"key": "blob", "value": {"bytesValue": "aGVsbG8="}}])
    r = httpx.post(col.url + "/v1/traces", content=good, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text


def test_partial_success_is_the_requests_own(col: CollectorProcess) -> None:
    """Requests that store nothing all have the same (empty) rows: each still gets its own answer."""
    js = {"content-type": "application/json"}
    beyond_2262 = 2**63 + 5
    assert httpx.post(col.url + "/v1/traces", content=b"{}", headers=js, timeout=30).status_code == 200
    answers = []
    for name in ("first-refused", "second-refused"):
        r = httpx.post(col.url + "/v1/traces", content=_json_span(name, start=beyond_2262), headers=js, timeout=30)
        assert r.status_code == 200, r.text
        answers.append(r.json()["partialSuccess"]["errorMessage"])
    assert "first-refused" in answers[0] and "second-refused" not in answers[0]
    assert "second-refused" in answers[1], f"the second request got the first one's answer: {answers[1]!r}"


def test_run_ids_the_api_cannot_open_are_refused_with_the_reason(col: CollectorProcess) -> None:
    """A run id outside the API's pattern was stored (200) and then 422 on every run route: refuse it
    at ingest instead, per span (OTLP partial success), over protobuf and JSON alike."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    names = {"runid-ok": "run-ok_1:2.x", "runid-space": "order 42", "runid-slash": "a/b",
             "runid-long": "r" * 129, "runid-unicode": "ru\u00efn", "runid-int": None}
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    now = time.time_ns()
    for name, run in names.items():
        span = ss.spans.add()
        span.trace_id, span.span_id, span.name = os.urandom(16), os.urandom(8), name
        span.start_time_unix_nano, span.end_time_unix_nano = now, now + 1000
        a = span.attributes.add()
        a.key = "flowscope.run.id"
        if run is None:  # not a string: what the store makes of it (its decimal digits) is fine
            a.value.CopyFrom(AnyValue(int_value=4242))
        else:
            a.value.string_value = run
    r = httpx.post(col.url + "/v1/traces", content=req.SerializeToString(), headers=PB, timeout=30)
    assert r.status_code == 200, r.text
    resp = ExportTraceServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_spans == 4, resp
    message = resp.partial_success.error_message
    assert "'order 42' is not a run id" in message and "'a/b'" in message and "runid-long" in message
    assert "runid-ok" not in message and "runid-int" not in message
    assert col.get("/api/v1/runs/run-ok_1:2.x").status_code == 200
    col.wait_for_run("4242")
    js = {"content-type": "application/json"}
    r = httpx.post(col.url + "/v1/traces", headers=js, timeout=30, content=_json_span(
        "runid-json", start=now, attrs=[{"key": "flowscope.run.id", "value": {"stringValue": "x?y"}}]))
    assert r.status_code == 200 and r.json()["partialSuccess"]["rejectedSpans"] == "1", r.text


@pytest.mark.parametrize("query", [
    "since=99999999999d", "since=1500-01-01T00:00:00Z", "until=2300-01-01", "since=9999-12-31",
    *(f"cursor={__import__('base64').urlsafe_b64encode(raw.encode()).decode()}" for raw in
      ("NaN|r", "Infinity|r", "-inf|r", "1e400|r", "99999999999999999999999999|r", "sNaN|r")),
    "sort=cost&cursor=" + __import__("base64").urlsafe_b64encode(b"1e30|r").decode(),
    "sort=duration&cursor=" + __import__("base64").urlsafe_b64encode(b"1.5|r").decode(),
])
def test_hostile_list_parameters_get_422_with_the_reason(col: CollectorProcess, query: str) -> None:
    r = col.get("/api/v1/runs?" + query)
    assert r.status_code == 422, (query, r.status_code, r.text)
    assert "cursor" in r.text or "since" in r.text or "until" in r.text


def test_a_cursor_reused_with_another_sort_gets_422(col: CollectorProcess) -> None:
    for _ in range(3):
        r = httpx.post(col.url + "/v1/traces", content=_run_request(_run(os.urandom(16)), "cursor-svc"),
                       headers=PB, timeout=30)
        assert r.status_code == 200
    wait_drained(col, 60)
    page = col.get("/api/v1/runs?sort=cost&limit=1&since=1d").json()
    assert page["next_cursor"]
    assert col.get(f"/api/v1/runs?sort=cost&limit=1&since=1d&cursor={page['next_cursor']}").status_code == 200
    r = col.get(f"/api/v1/runs?sort=start&limit=1&since=1d&cursor={page['next_cursor']}")
    assert r.status_code == 422 and "sort=cost" in r.text, r.text
    r = col.get("/api/v1/costs?since=99999999999d")
    assert r.status_code == 422 and "since" in r.text, r.text


def test_wal_damage_keeps_every_intact_record_and_names_the_lost(tmp_path: Path) -> None:
    """kill -9 with requests acknowledged but not stored (ClickHouse unreachable), then on disk: a byte
    flipped in the middle of the newest segment and an older segment truncated to zero. The restarted
    collector stores every intact record (those after the flip too), names the lost ones, counts them."""
    from flowscope_collector.buffer.wal import WAL

    wal_dir, data = tmp_path / "wal", tmp_path / "data"
    acked = _acknowledged_then_killed(tmp_path, wal_dir, 16)

    wal = WAL(wal_dir)
    pending = wal.open().pending
    wal.close()
    assert [r.seq for r in pending] == list(range(1, 17))
    by_seg: dict[Path, list] = {}
    for rec in pending:
        by_seg.setdefault(rec.segment, []).append(rec)
    segs = sorted(by_seg)
    assert len(segs) >= 3 and len(by_seg[segs[-1]]) >= 2, {s.name: len(v) for s, v in by_seg.items()}
    newest = by_seg[segs[-1]]
    flipped = newest[0]
    raw = bytearray(flipped.segment.read_bytes())
    raw[flipped.offset + flipped.length // 2] ^= 0xFF  # damage in the middle: intact records follow it
    flipped.segment.write_bytes(bytes(raw))
    os.truncate(segs[0], 0)  # an older segment truncated to zero
    lost_seqs = {flipped.seq} | {r.seq for r in by_seg[segs[0]]}

    col = CollectorProcess(data, env={"FLOWSCOPE_WAL_DIR": str(wal_dir)}).start()
    try:
        wait_drained(col, 60)
        assert metric(col, "flowscope_wal_lost_requests") == len(lost_seqs)
        assert metric(col, "flowscope_wal_corruptions") == 1
        ready = col.get("/readyz").json()
        assert ready["wal_lost_requests"] == len(lost_seqs) and "write-ahead log" in ready["detail"]
    finally:
        col.stop()
    text = col.log.read_text()
    assert "are lost: seq" in text and str(flipped.seq) in text.split("are lost: seq", 1)[1].splitlines()[0]
    ids = _stored(data, "wal-svc")
    assert len(ids) == len(set(ids)), "spans stored twice"
    expected = set().union(*(acked[seq - 1] for seq in range(1, 17) if seq not in lost_seqs))
    assert set(ids) == expected, f"{len(expected - set(ids))} intact acknowledged spans lost"


def _acknowledged_then_killed(tmp_path: Path, wal_dir: Path, requests: int) -> dict[int, set[str]]:
    """Span ids of ``requests`` requests a collector acknowledged while ClickHouse was unreachable,
    by request (0-based; request i is log record i + 1), then kill -9: all of them only in the log."""
    import subprocess
    import sys

    port = free_port()
    env = {**os.environ, "FLOWSCOPE_GRPC_PORT": "off", "FLOWSCOPE_WAL_DIR": str(wal_dir),
           "FLOWSCOPE_CLICKHOUSE_DSN": f"http://127.0.0.1:{free_port()}", "FLOWSCOPE_ACK_WAIT_S": "0",
           "FLOWSCOPE_WAL_SEGMENT_BYTES": "6000"}
    log = open(tmp_path / "down.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "flowscope_collector", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    acked: dict[int, set[str]] = {}
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "down.log").read_text()
            time.sleep(0.1)
        for i in range(requests):
            body = _request("wal-svc", 10)
            r = httpx.post(url + "/v1/traces", content=body, headers=PB, timeout=30)
            assert r.status_code == 200, r.text
            acked[i] = _ids(body)
    finally:
        proc.kill()  # kill -9: nothing reached ClickHouse, everything is in the log
        proc.wait(30)
    return acked


@pytest.mark.parametrize("checkpoint", ["deleted", "garbage", "far-ahead"])
def test_an_untrusted_checkpoint_neither_drops_nor_doubles(tmp_path: Path, checkpoint: str) -> None:
    """Acknowledged requests in the log (stored and committed, or for far-ahead still pending); then
    the checkpoint is deleted, garbled or set far past the log: every span counted exactly once."""
    wal_dir, data = tmp_path / "wal", tmp_path / "data"
    acked = _acknowledged_then_killed(tmp_path, wal_dir, 6)
    if checkpoint != "far-ahead":  # stored and committed: a replay from 0 would store them again
        col = CollectorProcess(data, env={"FLOWSCOPE_WAL_DIR": str(wal_dir)}).start()
        try:
            wait_drained(col, 60)
            body = _request("wal-svc", 10)
            assert httpx.post(col.url + "/v1/traces", content=body, headers=PB, timeout=30).status_code == 200
            acked[len(acked)] = _ids(body)
            wait_drained(col, 60)
        finally:
            col.stop(kill=True)
    # far-ahead: all six only in the log, and the checkpoint says they are stored
    cp = wal_dir / "checkpoint.json"
    if checkpoint == "deleted":
        cp.unlink()
    elif checkpoint == "garbage":
        cp.write_bytes(b"\x00{not json")
    else:
        cp.write_text('{"committed": 1000000000, "intent": null}')
    col = CollectorProcess(data, env={"FLOWSCOPE_WAL_DIR": str(wal_dir)}).start()
    try:
        wait_drained(col, 60)
        assert metric(col, "flowscope_wal_lost_requests") == 0
    finally:
        col.stop()
    runs = chdb_query(data, "SELECT count(), uniqExact(SpanId) FROM flowscope_spans WHERE ServiceName = 'wal-svc'")
    expected = set().union(*acked.values())
    assert runs[0] == [len(expected), len(expected)], f"flowscope_spans {runs[0]}, sent {len(expected)}"
    costs = chdb_query(data, "SELECT sum(Spans) FROM flowscope_runs WHERE ServiceName = 'wal-svc'")
    assert costs[0][0] == len(expected)


@pytest.mark.parametrize("checkpoint", ["deleted", "garbage"])
def test_a_replay_after_a_lost_checkpoint_stores_each_row_once(tmp_path: Path, checkpoint: str) -> None:
    """Stored requests replayed because the checkpoint is gone regroup exactly as first inserted, under
    the same deduplication tokens (the intent journal), so even raw ``otel_traces`` holds each row once.
    Before, the replay grouped them anew under new tokens and ClickHouse stored them again."""
    data = tmp_path / "data"
    col = CollectorProcess(data, env={"FLOWSCOPE_WAL_SEGMENT_BYTES": "4000"})
    col.start()
    sent: set[str] = set()
    try:
        for _ in range(8):
            body = _request("ckpt-svc", 15)
            r = httpx.post(col.url + "/v1/traces", content=body, headers=PB, timeout=30)
            assert r.status_code == 200, r.text
            sent |= _ids(body)
        wait_drained(col)
    finally:
        col.stop(kill=True)  # kill -9 with everything stored
    ckpt = data / "flowscope-wal" / "checkpoint.json"
    if checkpoint == "deleted":
        ckpt.unlink()
    else:
        ckpt.write_text("{not json")
    col.start()
    try:
        wait_drained(col)
        assert metric(col, "flowscope_spans_replayed_total") > 0  # the log was replayed
    finally:
        col.stop()
    ids = _stored(data, "ckpt-svc")
    assert set(ids) == sent
    assert len(ids) == len(sent), f"{len(ids) - len(sent)} rows stored twice in otel_traces"
