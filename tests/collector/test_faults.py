"""Injected faults: kill -9, ClickHouse outages, an insert that lands and then fails, overload.

Every collector here is a real process on loopback with its own chDB
directory. Failures are injected at the ClickHouse client boundary: the
collector runs with the real clickhouse-connect client wrapped by
:class:`FaultyClient`, which consults files in a control directory that the
test creates and removes (``down``: every call fails like an unreachable
server; ``fail-after-insert``: the insert lands, then the call fails as if the
connection broke before the answer; ``kill-after-insert``: the insert lands,
then the process is SIGKILLed before it can record that; ``slow-ms-per-insert``:
each insert takes that long; ``refuse``: inserts containing its text fail as
ClickHouse fails on data it cannot parse). Counting is done on the raw ``otel_traces`` rows,
not through the API (which de-duplicates by span id), so a doubled row fails
the test.

Run as ``python -m tests.collector.test_faults serve DATA_DIR CONTROL_DIR PORT`` it is that
faulty collector.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests._collector_kit import CollectorProcess, chdb_query, otlp_body

ROOT = Path(__file__).resolve().parents[2]
PB = {"content-type": "application/x-protobuf"}


class FaultyClient:
    """The real clickhouse-connect client, failing on demand."""

    def __init__(self, real: Any, control: Path) -> None:
        self._real = real
        self._control = control

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def _gate(self, op: str) -> None:
        if (self._control / "down").exists():
            raise ConnectionRefusedError(f"injected fault: ClickHouse unreachable ({op})")

    def query(self, *a: Any, **kw: Any) -> Any:
        self._gate("query")
        return self._real.query(*a, **kw)

    def command(self, *a: Any, **kw: Any) -> Any:
        self._gate("command")
        return self._real.command(*a, **kw)

    def insert(self, *a: Any, **kw: Any) -> Any:
        return self._insert("insert", *a, **kw)

    def raw_insert(self, *a: Any, **kw: Any) -> Any:
        return self._insert("raw_insert", *a, **kw)

    def _insert(self, method: str, *a: Any, **kw: Any) -> Any:
        self._gate(method)
        slow = self._control / "slow-ms-per-insert"
        if slow.exists():
            time.sleep(int(slow.read_text()) / 1000)
        refuse = self._control / "refuse"
        if refuse.exists() and refuse.read_text() in repr((a, kw)):
            raise ValueError("injected fault: ClickHouse refuses this data (Code: 27, CANNOT_PARSE_INPUT)")
        result = getattr(self._real, method)(*a, **kw)
        if (self._control / "kill-after-insert").exists():
            os.kill(os.getpid(), signal.SIGKILL)
        counter = self._control / "fail-after-insert"
        if counter.exists():
            left = int(counter.read_text() or "0")
            if left > 0:
                counter.write_text(str(left - 1))
                raise ConnectionResetError("injected fault: connection lost after the insert landed")
        return result


class FaultyCollector(CollectorProcess):
    """A collector process whose ClickHouse client is a :class:`FaultyClient`."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, env=env)
        self.control = data_dir.parent / "control"
        self.control.mkdir(parents=True, exist_ok=True)

    def start(self, timeout_s: float = 60.0) -> FaultyCollector:
        env = {**os.environ, **self.env}
        self._logf = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.collector.test_faults", "serve", str(self.data_dir), str(self.control),
             str(self.port)],
            env=env, stdout=self._logf, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited early:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"collector not up in {timeout_s}s:\n{self.log.read_text()[-3000:]}")

    def fault(self, name: str, value: str = "") -> None:
        (self.control / name).write_text(value)

    def clear(self, name: str) -> None:
        (self.control / name).unlink(missing_ok=True)


def _serve(data: str, control: str, port: str) -> None:
    import logging

    import uvicorn

    from flowscope_collector.server.app import create_app
    from flowscope_collector.service import Collector
    from flowscope_collector.settings import CollectorSettings
    from flowscope_collector.store.connection import connect, parse_dsn

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = CollectorSettings.from_env(dsn=f"chdb://{data}", port=int(port))
    client = FaultyClient(connect(parse_dsn(settings.dsn)), Path(control))
    app = create_app(settings, Collector(settings, client=client))  # type: ignore[arg-type]
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="info")


# --- helpers ---------------------------------------------------------------------------


def metric(c: CollectorProcess, name: str) -> float:
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def wait_drained(c: CollectorProcess, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if metric(c, "flowscope_queue_spans") == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"write buffer not drained in {timeout_s}s:\n{c.log.read_text()[-2000:]}")


def span_ids(body: bytes) -> set[str]:
    req = ExportTraceServiceRequest.FromString(body)
    return {s.span_id.hex() for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans}


def stored_ids(data: Path, service: str) -> list[str]:
    rows = chdb_query(data, f"SELECT SpanId FROM otel_traces WHERE ServiceName = '{service}'")
    return [r[0] for r in rows]


def assert_exactly_once(data: Path, service: str, acked: set[str], maybe: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    ids = stored_ids(data, service)
    doubled = len(ids) - len(set(ids))
    missing = acked - set(ids)
    unknown = set(ids) - acked - maybe
    assert doubled == 0, f"{doubled} spans stored twice"
    assert not missing, f"{len(missing)} acknowledged spans lost"
    assert not unknown, f"{len(unknown)} spans nobody sent"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture()
def faulty(tmp_path: Path) -> Iterator[FaultyCollector]:
    c = FaultyCollector(tmp_path / "data", env={"FLOWSCOPE_ACK_WAIT_S": "0"})
    yield c
    c.stop(kill=True)


# --- the faults ------------------------------------------------------------------------------


def test_kill_9_right_after_acknowledging(tmp_path: Path) -> None:
    """Acknowledged spans survive kill -9 and are stored exactly once after the restart."""
    data = tmp_path / "data"
    env = {"FLOWSCOPE_ACK_WAIT_S": "0", "FLOWSCOPE_MAX_BATCH_SPANS": "40"}
    c = CollectorProcess(data, env=env).start()
    acked: set[str] = set()
    inflight: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                body = otlp_body(40, service="kill9")
                ids = span_ids(body)
                with lock:
                    inflight.update(ids)
                try:
                    ok = http.post(c.url + "/v1/traces", content=body, headers=PB).status_code == 200
                except httpx.HTTPError:
                    return
                if ok:
                    with lock:
                        acked.update(ids)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            n = len(acked)
        if n >= 4000 and metric(c, "flowscope_queue_spans") > 0:
            break
        time.sleep(0.02)
    assert c.proc is not None
    c.proc.send_signal(signal.SIGKILL)  # no chance to flush or say goodbye
    c.proc.wait(10)
    c.proc = None
    stop.set()
    for t in threads:
        t.join(15)
    with lock:
        acked_now = set(acked)

    from flowscope_collector.buffer.wal import WAL

    wal = WAL(data / "flowscope-wal")
    recovery = wal.open()
    wal.close()
    pending = sum(r.spans for r in recovery.pending)
    print(f"acknowledged {len(acked_now)} spans; {pending} of them only in the write-ahead log at the kill")

    t0 = time.monotonic()
    c.start()
    # A liveness bound, not a speed goal: over a hundred 40-span inserts, each also looking up its
    # runs' stored spans (a span counts once), ~0.5 s each when other suites share the 2 cores.
    wait_drained(c, timeout_s=max(240.0, pending / 20))
    print(f"restart + replay took {time.monotonic() - t0:.1f}s")
    c.stop()
    assert_exactly_once(data, "kill9", acked_now, inflight)
    assert pending > 0, "the kill came after everything was stored: the replay path was not exercised"


def test_kill_between_insert_and_commit_is_deduplicated(faulty: FaultyCollector) -> None:
    """The insert lands, the process dies before noting it: the replay must not double it."""
    faulty.start()
    faulty.fault("kill-after-insert")
    bodies = [otlp_body(25, service="insert-then-die", run_id="itd") for _ in range(4)]
    acked: set[str] = set()
    for body in bodies:
        try:
            r = httpx.post(faulty.url + "/v1/traces", content=body, headers=PB, timeout=10)
        except httpx.HTTPError:
            break
        if r.status_code == 200:
            acked |= span_ids(body)
    assert faulty.proc is not None
    assert faulty.proc.wait(30) == -signal.SIGKILL  # it died right after an insert landed
    faulty.proc = None
    assert acked
    faulty.clear("kill-after-insert")
    faulty.start()
    wait_drained(faulty)
    faulty.stop()
    everything = set().union(*(span_ids(b) for b in bodies))
    assert_exactly_once(faulty.data_dir, "insert-then-die", acked, everything)
    # the run summary (fed by materialized views) is not doubled either
    rows = chdb_query(faulty.data_dir, "SELECT sum(Spans) FROM flowscope_runs WHERE RunId = 'itd'")
    assert rows == [[len(stored_ids(faulty.data_dir, "insert-then-die"))]]


def test_clickhouse_outage_buffers_reports_not_ready_and_drains(faulty: FaultyCollector) -> None:
    faulty.start()
    assert faulty.get("/readyz").status_code == 200
    faulty.fault("down")
    acked: set[str] = set()
    for _ in range(20):
        body = otlp_body(50, service="outage", run_id="outage-run")
        r = httpx.post(faulty.url + "/v1/traces", content=body, headers=PB, timeout=10)
        assert r.status_code == 200, r.text  # accepted into the log while ClickHouse is down
        acked |= span_ids(body)
    ready = faulty.get("/readyz")
    assert ready.status_code == 503
    assert "buffered" in (ready.json().get("detail") or "")
    assert metric(faulty, "flowscope_queue_spans") == 1000
    time.sleep(1.0)  # a few failed attempts, backing off
    assert metric(faulty, "flowscope_insert_failures_total") >= 1
    # ClickHouse comes back, but the first insert's answer is lost on the way back
    faulty.fault("fail-after-insert", "1")
    faulty.clear("down")
    wait_drained(faulty, 60)
    deadline = time.monotonic() + 30
    while faulty.get("/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert faulty.get("/readyz").status_code == 200
    assert faulty.wait_for_run("outage-run")["spans"] == 1000
    faulty.stop()
    assert_exactly_once(faulty.data_dir, "outage", acked)


def test_data_clickhouse_refuses_is_set_aside_and_the_rest_delivered(faulty: FaultyCollector) -> None:
    faulty.env.update({"FLOWSCOPE_MAX_BATCH_SPANS": "100000"})
    faulty.start()
    faulty.fault("refuse", "poison-svc")
    faulty.fault("slow-ms-per-insert", "300")  # so the three requests share one insert
    bodies = [otlp_body(10, service=svc) for svc in ("good-svc", "poison-svc", "good-svc")]
    threads = [threading.Thread(target=httpx.post, args=(faulty.url + "/v1/traces",),
                                kwargs={"content": b, "headers": PB, "timeout": 30}) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_drained(faulty, 60)
    quarantine = faulty.data_dir / "flowscope-wal" / "quarantine"
    assert len(list(quarantine.glob("*.pb"))) == 1  # kept for inspection, not lost
    assert "poison-svc" in next(quarantine.glob("*.pb")).read_text("latin-1")
    ready = faulty.get("/readyz")
    assert ready.status_code == 200  # the store is fine; the data was not
    # ... but ten acknowledged spans are not stored, and every place an operator looks says so
    assert (ready.json()["quarantined_requests"], ready.json()["quarantined_spans"]) == (1, 10)
    assert "quarantine" in ready.json()["detail"]
    assert metric(faulty, "flowscope_quarantine_spans") == 10
    assert metric(faulty, "flowscope_spans_quarantined_total") == 10
    wal_dir = str(faulty.data_dir / "flowscope-wal")
    cli = [sys.executable, "-m", "flowscope_collector", "quarantine"]
    listed = subprocess.run([*cli, "list", "--wal-dir", wal_dir], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "spans=10" in listed.stdout and "1 requests, 10 spans" in listed.stderr
    # ClickHouse takes it now: replaying sends it through the live collector and clears the quarantine
    faulty.clear("refuse")
    replay = subprocess.run([*cli, "replay", "--wal-dir", wal_dir, "--url", faulty.url], capture_output=True,
                            text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr
    wait_drained(faulty, 60)
    assert faulty.get("/readyz").json()["quarantined_spans"] == 0
    assert metric(faulty, "flowscope_quarantine_requests") == 0
    faulty.stop()
    assert_exactly_once(faulty.data_dir, "good-svc", span_ids(bodies[0]) | span_ids(bodies[2]))
    assert_exactly_once(faulty.data_dir, "poison-svc", span_ids(bodies[1]))


def test_overload_gets_429_and_the_otel_exporter_delivers_everything(faulty: FaultyCollector) -> None:
    """A load faster than the writer: 429 + Retry-After, bounded memory, nothing lost in the end."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    faulty.env.update({"FLOWSCOPE_MAX_PENDING_SPANS": "1500", "FLOWSCOPE_MAX_BATCH_SPANS": "250"})
    faulty.fault("slow-ms-per-insert", "400")  # the writer drains ~600 spans/s
    faulty.start()
    assert faulty.proc is not None
    pid = faulty.proc.pid
    base = rss_mb(pid)
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    per_producer, producers = 2500, 2
    providers = []
    for i in range(producers):
        exporter = OTLPSpanExporter(endpoint=faulty.url + "/v1/traces", timeout=180)
        provider = TracerProvider(resource=Resource.create({"service.name": "overload"}))
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=per_producer * 2,
                                                       max_export_batch_size=250, schedule_delay_millis=20))
        providers.append(provider)
        tracer = provider.get_tracer("load")
        for j in range(per_producer):
            with tracer.start_as_current_span(f"load {i}-{j}"):
                pass
    t0 = time.monotonic()
    flushers = [threading.Thread(target=p.force_flush, args=(180_000,)) for p in providers]
    for f in flushers:
        f.start()
    for f in flushers:
        f.join(200)
    elapsed = time.monotonic() - t0
    wait_drained(faulty, 60)
    done.set()
    sampler.join()
    log = faulty.log.read_text()
    refused = log.count('"POST /v1/traces HTTP/1.1" 429')
    print(f"{producers * per_producer} spans in {elapsed:.1f}s, {refused} answers were 429, "
          f"collector RSS {base:.0f} MB -> peak {peak[0]:.0f} MB")
    for p in providers:
        p.shutdown()
    faulty.stop()
    assert refused > 0, "the load never exceeded the buffer: nothing was tested"
    n = chdb_query(faulty.data_dir, "SELECT count(), uniqExact(SpanId) FROM otel_traces "
                                    "WHERE ServiceName = 'overload'")
    assert n == [[producers * per_producer, producers * per_producer]]
    assert peak[0] - base < 600, "memory grew with the load instead of staying bounded"


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "serve":
    _serve(*sys.argv[2:])
