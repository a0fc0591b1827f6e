"""No client can starve the others, whatever it sends or however slowly.

Each trial was found against a real collector on loopback: slow uploads that
declared large bodies held the whole in-flight byte budget, ``/v1/metrics``
read a body whole before checking its size, a small gzip body inflated into a
huge decode, and one project's flood filled the buffer so that another
project's small requests got 429. The collector here has ClickHouse
unreachable, so every acknowledged span stays in the write-ahead log and the
buffer only fills: what a test sees is admission's decision alone.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from flowscope_collector.admission import Admission, Refused
from flowscope_collector.ingest import otlp
from flowscope_collector.ingest.limits import LimitReport, RequestLimits, enforce
from flowscope_collector.settings import CollectorSettings
from tests._collector_kit import CollectorProcess, free_port, otlp_body

KEYS = {p: f"key-{p}-0123456789" for p in ("slow", "other", "flood", "small", "bomb", "victim")}
PB = {"content-type": "application/x-protobuf"}


def _auth(project: str, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[project]}", **headers}


@pytest.fixture(scope="module")
def down(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("fair")
    proc = CollectorProcess(data / "data", dsn=f"http://127.0.0.1:{free_port()}", env={
        "FLOWSCOPE_API_KEYS": ",".join(f"{k}={p}" for p, k in KEYS.items()),
        "FLOWSCOPE_ACK_WAIT_S": "0",
        "FLOWSCOPE_MAX_BODY_BYTES": "1000000",
        "FLOWSCOPE_MAX_INFLIGHT_BYTES": "1000000",
        "FLOWSCOPE_MAX_PENDING_SPANS": "1000",
        "FLOWSCOPE_BODY_TIMEOUT_S": "3",
        "FLOWSCOPE_BODY_IDLE_TIMEOUT_S": "2",
    }).start()
    yield proc
    proc.stop()


def _post(col: CollectorProcess, project: str, body: bytes, path: str = "/v1/traces", **headers: str) -> httpx.Response:
    return httpx.post(col.url + path, content=body, headers=_auth(project, **PB, **headers), timeout=60)


def _slow_upload(col: CollectorProcess, project: str, declared: int, sent: bytes,
                 path: str = "/v1/traces") -> socket.socket:
    """A client that declares ``declared`` bytes, sends ``sent`` and then nothing."""
    s = socket.create_connection(("127.0.0.1", col.port), timeout=30)
    s.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
               f"Authorization: Bearer {KEYS[project]}\r\nContent-Length: {declared}\r\n\r\n").encode() + sent)
    return s


def _status(s: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_slow_uploads_hold_only_the_bytes_they_sent(down: CollectorProcess) -> None:
    """Declared lengths are not counted: four uploads declaring the whole budget leave room for others."""
    slow = [_slow_upload(down, "slow", 1_000_000, b"\x0a" * 100) for _ in range(4)]
    try:
        time.sleep(1)  # let the collector start receiving them (a head start, not an assertion)
        r = _post(down, "other", otlp_body(5))
        assert r.status_code == 200, r.text
    finally:
        for s in slow:
            s.close()


def test_a_trickling_body_is_cut_off_with_408(down: CollectorProcess) -> None:
    s = _slow_upload(down, "slow", 50_000, b"\x0a" * 10)
    try:
        assert _status(s) == 408  # before: the collector waited for the rest for ever
    finally:
        s.close()


def test_metrics_refuses_a_body_over_the_limit_before_reading_it(down: CollectorProcess) -> None:
    """``/v1/metrics`` read a 256 MB body whole before checking its size (+450 MB RSS); now it never reads it."""
    s = _slow_upload(down, "other", 200_000_000, b"", path="/v1/metrics")
    try:
        assert _status(s) == 413
    finally:
        s.close()
    chunks = (b"\x0a" * 100_000 for _ in range(20))  # no Content-Length: capped while reading
    r = httpx.post(down.url + "/v1/metrics", content=chunks, headers=_auth("other", **PB), timeout=60)
    assert r.status_code == 413 and "limit" in r.json()["error"]


def _attribute_bomb(n: int) -> bytes:
    attrs = [{"key": "a", "value": {"stringValue": "b"}}] * n
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "0" * 31 + "1", "spanId": "0" * 15 + "1", "name": "bomb",
        "startTimeUnixNano": "1", "endTimeUnixNano": "2", "attributes": attrs}]}]}]}
    return gzip.compress(orjson.dumps(doc))


def test_a_gzip_bomb_of_tiny_attributes_is_refused_and_stalls_no_one(down: CollectorProcess) -> None:
    """A few kB inflating to megabytes of attributes: 413 at inflation, while others are answered."""
    bomb = _attribute_bomb(100_000)
    assert len(bomb) < 40_000
    results: dict[str, int] = {}

    def send(name: str, project: str, body: bytes, encoding: str | None) -> None:
        headers = {"content-type": "application/json" if encoding else PB["content-type"],
                   **({"content-encoding": encoding} if encoding else {})}
        r = httpx.post(down.url + "/v1/traces", content=body, headers=_auth(project, **headers), timeout=120)
        results[name] = r.status_code
        if encoding:
            assert "inflation limit" in r.json()["error"], r.text

    threads = [threading.Thread(target=send, args=(f"bomb{i}", "bomb", bomb, "gzip")) for i in range(4)]
    threads.append(threading.Thread(target=send, args=("victim", "victim", otlp_body(3), None)))
    for t in threads:
        t.start()
    assert httpx.get(down.url + "/healthz", timeout=60).status_code == 200
    for t in threads:
        t.join()
    assert results == {**{f"bomb{i}": 413 for i in range(4)}, "victim": 200}


def test_one_projects_flood_leaves_room_for_another(down: CollectorProcess) -> None:
    """Before: the flood filled the whole buffer and the other project's requests got 429."""
    refused = None
    for _ in range(20):
        r = _post(down, "flood", otlp_body(100))
        if r.status_code == 429:
            refused = r
            break
        assert r.status_code == 200, r.text
    assert refused is not None and refused.headers["retry-after"]
    assert "share of the buffer" in refused.json()["error"]
    for _ in range(5):
        r = _post(down, "small", otlp_body(20))
        assert r.status_code == 200, r.text


def test_memory_above_the_limit_is_a_retryable_503(tmp_path: Path) -> None:
    col = CollectorProcess(tmp_path / "data", dsn=f"http://127.0.0.1:{free_port()}",
                           env={"FLOWSCOPE_MAX_MEMORY_BYTES": "1", "FLOWSCOPE_ACK_WAIT_S": "0"}).start()
    try:
        r = httpx.post(col.url + "/v1/traces", content=otlp_body(2), headers=PB, timeout=30)
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
        assert "memory" in r.json()["error"]
        assert col.get("/healthz").status_code == 200
    finally:
        col.stop()


def test_one_project_cannot_take_every_decode_slot() -> None:
    adm = Admission(CollectorSettings(max_concurrent_decodes=4, decode_wait_s=0.2))
    held = [adm.decoding("a") for _ in range(2)]
    for h in held:
        h.__enter__()
    try:
        with pytest.raises(Refused) as refused, adm.decoding("a"):
            pass
        assert refused.value.status == 503 and refused.value.retry_after_s
        with adm.decoding("b"):  # another project still finds one
            pass
    finally:
        for h in held:
            h.__exit__(None, None, None)


def test_a_lone_project_gets_the_whole_buffer(tmp_path: Path) -> None:
    """Shares keep room for other projects; without API keys there is only ``default``, and halving its buffer,
    bytes in flight and decode slots would only turn spans away (429) sooner. Keys for two projects share."""
    from flowscope_collector.server.app import create_app

    lone = create_app(CollectorSettings(dsn=f"chdb://{tmp_path}/a")).state.collector.admission
    assert (lone.project_pending_spans, lone.project_decode_slots) == (lone.max_pending_spans, lone.decode_slots)
    assert lone.project_inflight_bytes == lone.max_inflight_bytes
    held = [lone.decoding("default") for _ in range(lone.decode_slots)]
    for h in held:
        h.__enter__()
    for h in held:
        h.__exit__(None, None, None)
    # one ingest project and an operator key: still one project to fill the buffer
    one = create_app(CollectorSettings(dsn=f"chdb://{tmp_path}/b", api_keys="key-one-1=acme,key-ops-2=ops:operator"))
    assert one.state.collector.admission.project_pending_spans == lone.max_pending_spans
    two = create_app(CollectorSettings(dsn=f"chdb://{tmp_path}/c", api_keys="key-one-1=acme,key-two-2=globex"))
    shared = two.state.collector.admission
    assert shared.project_pending_spans == shared.max_pending_spans // 2
    assert shared.project_decode_slots == shared.decode_slots // 2


def _hex(n: int, i: int) -> str:
    return f"{i + 1:0{n}x}"


def test_json_caps_cut_while_decoding_exactly_as_the_limiter_does() -> None:
    """Cutting the JSON document first gives the very request (and counts) that cutting after parsing gives."""
    limits = RequestLimits(max_attributes=16, max_events=8, max_links=4, max_array_items=10)

    def attrs(n: int) -> list[dict[str, object]]:
        return [{"key": f"k{i}", "value": {"stringValue": "v"}} for i in range(n)]

    nested = {"arrayValue": {"values": [{"kvlistValue": {"values": [
        {"key": f"n{i}", "value": {"arrayValue": {"values": [{"intValue": "1"}] * 30}}} for i in range(30)]}}] * 30}}
    doc = {"resourceSpans": [{"resource": {"attributes": attrs(40)}, "scopeSpans": [{
        "scope": {"name": "s", "attributes": attrs(17)},
        "spans": [{"traceId": _hex(32, i), "spanId": _hex(16, i), "name": f"s{i}", "startTimeUnixNano": "1",
                   "endTimeUnixNano": "2", "droppedAttributesCount": 3,
                   "attributes": [*attrs(50), {"key": "deep", "value": nested}],
                   "events": [{"name": "e", "timeUnixNano": "1", "attributes": attrs(20)}] * 12,
                   "links": [{"traceId": _hex(32, 9), "spanId": _hex(16, 9), "attributes": attrs(30)}] * 7}
                  for i in range(3)]}]}]}
    body = orjson.dumps(doc)
    before = otlp.parse(body, otlp.JSON)
    report_after = enforce(before, limits)
    report = LimitReport()
    capped = otlp.parse(body, otlp.JSON, limits, report)
    report_capped = enforce(capped, limits)
    assert capped == before
    for field in ("dropped_attributes", "dropped_events", "dropped_links", "truncated_values"):
        assert getattr(report, field) + getattr(report_capped, field) == getattr(report_after, field), field
