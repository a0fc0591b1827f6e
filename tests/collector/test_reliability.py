"""The durable buffer and the request limits.

The write-ahead log is exercised on real files (torn tails, a disk that says
no, segment clean-up, the insert intent that makes replays idempotent); the
limits against a real collector process over HTTP.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from flowscope_collector.buffer.wal import WAL, Intent, WALError
from tests._collector_kit import CollectorProcess, chdb_query, otlp_body

PB = {"content-type": "application/x-protobuf"}


def _digest(i: int) -> bytes:
    return i.to_bytes(4, "big") * 8


# --- write-ahead log ---------------------------------------------------------------


def test_wal_recovers_every_acknowledged_record_in_order(tmp_path: Path) -> None:
    wal = WAL(tmp_path)
    assert wal.open().pending == []
    recs = [wal.append(f"p{i % 2}", _digest(i), i + 1, f"payload {i}".encode() * (i + 1)) for i in range(50)]
    for r in recs:
        r.durable.result(5)
    wal.close()

    again = WAL(tmp_path)
    rec = again.open()
    assert [r.seq for r in rec.pending] == [r.seq for r in recs]
    assert [(r.project, r.digest, r.spans) for r in rec.pending] == [(r.project, r.digest, r.spans) for r in recs]
    assert [again.read(r) for r in rec.pending] == [f"payload {i}".encode() * (i + 1) for i in range(50)]
    assert rec.intent is None and rec.truncated_bytes == 0
    assert again.append("p", _digest(99), 1, b"x").seq == recs[-1].seq + 1  # numbering carries on
    again.close()


def test_wal_cuts_a_torn_tail_and_keeps_appending(tmp_path: Path) -> None:
    wal = WAL(tmp_path)
    wal.open()
    for i in range(3):
        wal.append("p", _digest(i), 1, b"ok %d" % i).durable.result(5)
    wal.close()
    seg = sorted(tmp_path.glob("*.wal"))[-1]
    good = seg.stat().st_size
    with open(seg, "ab") as f:  # a crash in the middle of writing a fourth record
        f.write(b"\x40\x00\x00\x00\x12\x34\x56\x78partial")

    again = WAL(tmp_path)
    rec = again.open()
    assert [again.read(r) for r in rec.pending] == [b"ok 0", b"ok 1", b"ok 2"]
    assert rec.truncated_bytes == len(b"\x40\x00\x00\x00\x12\x34\x56\x78partial")
    assert seg.stat().st_size == good
    again.append("p", _digest(3), 1, b"ok 3").durable.result(5)
    again.close()
    third = WAL(tmp_path)
    assert [third.read(r) for r in third.open().pending] == [b"ok 0", b"ok 1", b"ok 2", b"ok 3"]
    third.close()


def test_wal_detects_a_corrupted_record(tmp_path: Path) -> None:
    wal = WAL(tmp_path)
    wal.open()
    for i in range(3):
        wal.append("p", _digest(i), 1, b"record %d" % i).durable.result(5)
    wal.close()
    seg = sorted(tmp_path.glob("*.wal"))[-1]
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0xFF  # flip bits in the last record's payload
    seg.write_bytes(bytes(data))
    again = WAL(tmp_path)
    assert [again.read(r) for r in again.open().pending] == [b"record 0", b"record 1"]  # CRC caught it
    again.close()


def test_wal_deletes_stored_segments_and_remembers_recent_digests(tmp_path: Path) -> None:
    wal = WAL(tmp_path, segment_bytes=200)
    wal.open()
    recs = [wal.append("p", _digest(i), 1, b"x" * 100) for i in range(20)]
    for r in recs:
        r.durable.result(5)
    assert len(list(tmp_path.glob("*.wal"))) >= 10
    wal.begin(Intent(recs[0].seq, recs[-1].seq, "tok"))
    wal.commit(recs[-1].seq, sum(r.disk_bytes for r in recs))
    assert wal.disk_bytes == 0
    # the newest sealed segment and the active one stay, for duplicate detection
    assert len(list(tmp_path.glob("*.wal"))) == 2
    wal.close()
    again = WAL(tmp_path, segment_bytes=200)
    rec = again.open()
    assert rec.pending == [] and rec.intent is None
    assert {r.digest for r in rec.committed} <= {_digest(i) for i in range(20)}
    assert rec.committed and rec.committed[-1].digest == _digest(19)
    again.close()


def test_wal_intent_survives_a_crash(tmp_path: Path) -> None:
    wal = WAL(tmp_path)
    wal.open()
    recs = [wal.append("p", _digest(i), 2, b"y") for i in range(5)]
    recs[-1].durable.result(5)
    wal.begin(Intent(recs[0].seq, recs[3].seq, "token-abc"))
    wal.close()  # no commit: as if killed during the insert
    again = WAL(tmp_path)
    rec = again.open()
    assert rec.intent == Intent(recs[0].seq, recs[3].seq, "token-abc")
    assert len(rec.pending) == 5
    again.commit(recs[3].seq, 0)
    again.close()
    third = WAL(tmp_path)
    rec = third.open()
    assert rec.intent is None and [r.seq for r in rec.pending] == [recs[4].seq]
    third.close()


def test_wal_is_locked_against_a_second_collector(tmp_path: Path) -> None:
    wal = WAL(tmp_path)
    wal.open()
    with pytest.raises(WALError, match="another collector"):
        WAL(tmp_path).open()
    wal.close()
    WAL(tmp_path).open()  # released on close (and by the kernel on kill -9)


def test_wal_groups_fsyncs_across_threads(tmp_path: Path) -> None:
    wal = WAL(tmp_path)
    wal.open()
    recs = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(25):
            r = wal.append("p", _digest(t * 100 + i), 1, b"z" * 64)
            with lock:
                recs.append(r)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in recs:
        r.durable.result(10)
    assert len(recs) == 200
    print(f"200 appends, {wal.fsyncs} fsyncs")
    assert wal.fsyncs <= 200
    wal.close()


def test_wal_refuses_cleanly_when_the_disk_is_full(tmp_path: Path) -> None:
    """A write the disk refuses leaves no half record: what was acknowledged stays readable."""
    code = textwrap.dedent(f"""
        import resource, signal
        from flowscope_collector.buffer.wal import WAL, WALError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        wal = WAL({str(tmp_path)!r}, fsync=True)
        wal.open()
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, resource.RLIM_INFINITY))
        ok = 0
        try:
            for i in range(1000):
                wal.append("p", bytes(32), 1, b"%04d" % i + b"." * 200).durable.result(5)
                ok += 1
        except WALError as exc:
            print("refused:", exc)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        wal.append("p", bytes(32), 1, b"after").durable.result(5)
        wal.close()
        print(ok)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "refused:" in out.stdout
    ok = int(out.stdout.strip().splitlines()[-1])
    assert 0 < ok < 1000
    wal = WAL(tmp_path)
    rec = wal.open()
    payloads = [wal.read(r) for r in rec.pending]
    assert rec.truncated_bytes == 0
    assert payloads == [b"%04d" % i + b"." * 200 for i in range(ok)] + [b"after"]
    wal.close()


# --- a real collector: duplicates across restarts, limits ------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory):
    env = {
        "FLOWSCOPE_MAX_BODY_BYTES": str(256 * 1024),
        "FLOWSCOPE_MAX_DECOMPRESSED_BYTES": str(1024 * 1024),
        "FLOWSCOPE_MAX_SPANS_PER_REQUEST": "500",
        "FLOWSCOPE_MAX_ATTRIBUTES": "16",
        "FLOWSCOPE_MAX_VALUE_CHARS": "1000",
    }
    proc = CollectorProcess(tmp_path_factory.mktemp("limited") / "data", env=env).start()
    yield proc
    proc.stop()


def _post(c: CollectorProcess, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(c.url + "/v1/traces", content=body, headers=headers or PB, timeout=30)


def test_body_too_large_is_413(limited: CollectorProcess) -> None:
    r = _post(limited, b"\x00" * (300 * 1024))
    assert r.status_code == 413 and "limit" in r.json()["error"]


def test_gzip_bomb_is_413_without_inflating_it(limited: CollectorProcess) -> None:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join(comp.compress(b"\x00" * (1 << 20)) for _ in range(200)) + comp.flush()  # 200 MiB inflated
    assert len(bomb) < 256 * 1024
    r = _post(limited, bomb, {**PB, "content-encoding": "gzip"})
    assert r.status_code == 413 and "decompressed" in r.json()["error"]
    assert limited.get("/healthz").status_code == 200


@pytest.mark.parametrize("ctype", ["text/plain", "application/xml", ""])
def test_wrong_content_type_is_415(limited: CollectorProcess, ctype: str) -> None:
    r = _post(limited, otlp_body(1), {"content-type": ctype})
    assert r.status_code == 415 and "Content-Type" in r.json()["error"]


def test_unknown_content_encoding_is_415(limited: CollectorProcess) -> None:
    r = _post(limited, otlp_body(1), {**PB, "content-encoding": "br"})
    assert r.status_code == 415 and "Content-Encoding" in r.json()["error"]


@pytest.mark.parametrize("body,ctype,reason", [
    (b"\xff\xff\xff\xff", "application/x-protobuf", "protobuf"),
    (b"{not json", "application/json", "JSON"),
    (b"[1, 2]", "application/json", "object"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', "application/json", "hex"),
    (gzip.compress(b"x", mtime=0)[:-4], "application/x-protobuf", "gzip"),
])
def test_malformed_bodies_are_400_with_the_reason(limited: CollectorProcess, body: bytes, ctype: str,
                                                   reason: str) -> None:
    headers = {"content-type": ctype}
    if reason == "gzip":
        headers["content-encoding"] = "gzip"
    r = _post(limited, body, headers)
    assert r.status_code == 400, r.text
    assert reason in r.json()["error"]


def test_too_many_spans_is_413(limited: CollectorProcess) -> None:
    r = _post(limited, otlp_body(501))
    assert r.status_code == 413 and "500 per request" in r.json()["error"]


def test_spans_past_2262_are_refused_as_partial_success(limited: CollectorProcess) -> None:
    req = ExportTraceServiceRequest.FromString(otlp_body(3, run_id="far-future", service="limits"))
    req.resource_spans[0].scope_spans[0].spans[1].end_time_unix_nano = (1 << 64) - 1
    r = _post(limited, req.SerializeToString())
    assert r.status_code == 200
    resp = ExportTraceServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_spans == 1
    assert "2262" in resp.partial_success.error_message


def test_stored_values_are_truncated_in_clickhouse(tmp_path: Path) -> None:
    """Read the raw row back: the limits hold in storage, not only in the API's view."""
    env = {"FLOWSCOPE_MAX_ATTRIBUTES": "8", "FLOWSCOPE_MAX_VALUE_CHARS": "100", "FLOWSCOPE_MAX_EVENTS": "4"}
    c = CollectorProcess(tmp_path / "data", env=env).start()
    try:
        attrs = {"big": "B" * 500, **{f"x{i}": "1" for i in range(20)}}
        req = ExportTraceServiceRequest.FromString(otlp_body(1, run_id="trunc", service="trunc", attrs=attrs))
        span = req.resource_spans[0].scope_spans[0].spans[0]
        for i in range(10):
            span.events.add().name = f"ev{i}"
        assert _post(c, req.SerializeToString()).status_code == 200
        c.wait_for_run("trunc", spans=1)
    finally:
        c.stop()
    rows = chdb_query(tmp_path / "data", "SELECT SpanAttributes, length(Events.Name) FROM otel_traces "
                                          "WHERE ServiceName = 'trunc'")
    assert len(rows) == 1
    span_attrs, n_events = rows[0]
    span_attrs = span_attrs if isinstance(span_attrs, dict) else json.loads(str(span_attrs).replace("'", '"'))
    assert len(span_attrs) == 8  # 22 sent: 7 kept + the count of the dropped
    assert span_attrs["flowscope.dropped_attributes"] == "15"
    assert span_attrs["big"] == "B" * 100 + "…[truncated]"
    assert n_events == 4


def test_a_retry_after_restart_is_not_stored_twice(tmp_path: Path) -> None:
    """An exporter that never got our answer sends again, to a restarted collector."""
    data = tmp_path / "data"
    c = CollectorProcess(data).start()
    body = otlp_body(7, run_id="retry-after-restart", service="dup")
    try:
        assert _post(c, body).status_code == 200
        c.stop()
        c.start()
        assert _post(c, body).status_code == 200  # same bytes again
        assert _post(c, body).status_code == 200
        metrics = c.get("/metrics").text
        assert "flowscope_duplicate_requests_total 2" in metrics
    finally:
        c.stop()
    assert chdb_query(data, "SELECT count() FROM otel_traces WHERE ServiceName = 'dup'") == [[7]]
