"""Sustained load, bounded memory, and recovery after kill -9: ``python -m benchmarks.bench_soak --minutes 10``.

Phase 1 (soak): a real collector on a fresh chDB directory takes OTLP/HTTP
requests from ``--clients`` threads for ``--minutes`` (as fast as it accepts
them, or at ``--rate`` spans/s), honouring 429/503 + Retry-After like an OTel
exporter. Every second the collector's RSS and buffered spans are sampled, so
the table shows whether memory stays flat while the load goes on.

Phase 2 (crash): load continues, the collector is killed with SIGKILL right
after acknowledging requests while spans are still only in its write-ahead
log, then restarted on the same directory. Reported: time until it answers
again, until it is ready, until the replayed log is in ClickHouse.

Finally the raw ``otel_traces`` rows are counted: every acknowledged span must
be there exactly once (lost = acknowledged but missing, doubled = stored twice).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ._stats import machine, median, table
from .otlp_data import Generator, requests

PB = {"content-type": "application/x-protobuf"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _metric(url: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)", httpx.get(url + "/metrics", timeout=10).text, re.M)
    return float(m.group(1)) if m else 0.0


class Collector:
    def __init__(self, data: Path, port: int, env: dict[str, str]) -> None:
        self.data, self.port, self.env = data, port, env
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = open(data.parent / "collector.log", "ab")  # noqa: SIM115 - lives as long as the benchmark

    def start(self) -> tuple[float, float]:
        """Start; return (seconds until it answers, seconds until ready)."""
        t0 = time.monotonic()
        env = {**os.environ, **self.env, "FLOWSCOPE_CLICKHOUSE_DSN": f"chdb://{self.data}"}
        self.proc = subprocess.Popen([sys.executable, "-m", "flowscope_collector", "serve", "--port",
                                      str(self.port), "--log-level", "warning"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        up = None
        while time.monotonic() - t0 < 300:
            if self.proc.poll() is not None:
                raise RuntimeError("collector exited; see " + self.log.name)
            try:
                r = httpx.get(self.url + "/readyz", timeout=2)
                up = up or time.monotonic() - t0
                if r.status_code == 200:
                    return up, time.monotonic() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("collector not ready in 300 s")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


def _fresh(req: ExportTraceServiceRequest) -> tuple[bytes, int, list[bytes]]:
    """The request with new trace and span ids (tree kept), so no two sends are duplicates."""
    ids: list[bytes] = []
    n = 0
    for rs in req.resource_spans:
        tid = os.urandom(16)
        mask = int.from_bytes(os.urandom(8), "big")
        for ss in rs.scope_spans:
            for span in ss.spans:
                span.trace_id = tid
                span.span_id = (int.from_bytes(span.span_id, "big") ^ mask).to_bytes(8, "big")
                if span.parent_span_id:
                    span.parent_span_id = (int.from_bytes(span.parent_span_id, "big") ^ mask).to_bytes(8, "big")
                ids.append(span.span_id)
                n += 1
    return req.SerializeToString(), n, ids


class Load:
    """Client threads posting OTLP the way an exporter does, counting what was acknowledged."""

    def __init__(self, url: str, pool: list[ExportTraceServiceRequest], clients: int, rate: float,
                 service: str | None = None, keep_ids: bool = False) -> None:
        self.url, self.clients, self.rate = url, clients, rate
        self.pool = [ExportTraceServiceRequest.FromString(r.SerializeToString()) for r in pool]
        if service:
            for req in self.pool:
                for rs in req.resource_spans:
                    for kv in rs.resource.attributes:
                        if kv.key == "service.name":
                            kv.value.string_value = service
        self.keep_ids = keep_ids
        self.acked = self.offered = self.refused = self.failed = 0
        self.acked_ids: set[bytes] = set()
        self.sent_ids: set[bytes] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def start(self) -> Load:
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)

    def _run(self, i: int) -> None:
        k = i
        with httpx.Client(timeout=60) as http:
            while not self.stop.is_set():
                with self.lock:
                    req = self.pool[k % len(self.pool)]
                    body, n, ids = _fresh(req)
                k += self.clients
                if self.rate:
                    due = self.t0 + (self.offered + n) / self.rate
                    if due > time.monotonic():
                        time.sleep(due - time.monotonic())
                with self.lock:
                    self.offered += n
                    if self.keep_ids:
                        self.sent_ids.update(ids)
                while not self.stop.is_set():
                    try:
                        r = http.post(self.url + "/v1/traces", content=body, headers=PB)
                    except httpx.HTTPError:
                        with self.lock:
                            self.failed += 1
                        if self.keep_ids:
                            return  # the collector is gone (phase 2): stop like a crashed exporter
                        time.sleep(0.5)
                        continue
                    if r.status_code == 200:
                        with self.lock:
                            self.acked += n
                            if self.keep_ids:
                                self.acked_ids.update(ids)
                        break
                    if r.status_code in (429, 503):
                        with self.lock:
                            self.refused += 1
                        time.sleep(float(r.headers.get("retry-after", "1")))
                        continue
                    raise RuntimeError(f"{r.status_code}: {r.text[:300]}")


def _count(data: Path, where: str) -> tuple[int, int]:
    code = ("import json, sys\nfrom flowscope_collector.store.connection import connect, parse_dsn\n"
            "c = connect(parse_dsn('chdb://' + sys.argv[1]))\n"
            "print(json.dumps(list(c.query(sys.argv[2]).result_rows[0])))\n")
    sql = f"SELECT count(), uniqExact(SpanId) FROM otel_traces WHERE {where}"
    out = subprocess.run([sys.executable, "-c", code, str(data), sql], capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    n, u = json.loads(out.stdout.strip().splitlines()[-1])
    return int(n), int(u)


def _stored_ids(data: Path, service: str) -> list[str]:
    code = ("import json, sys\nfrom flowscope_collector.store.connection import connect, parse_dsn\n"
            "c = connect(parse_dsn('chdb://' + sys.argv[1]))\n"
            "print(json.dumps([r[0] for r in c.query(sys.argv[2]).result_rows]))\n")
    sql = f"SELECT SpanId FROM otel_traces WHERE ServiceName = '{service}'"
    out = subprocess.run([sys.executable, "-c", code, str(data), sql], capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=1.0, help="length of the soak phase")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--batch", type=int, default=500, help="spans per request")
    p.add_argument("--rate", type=float, default=0, help="offered spans/s (0: as fast as accepted)")
    p.add_argument("--keep", action="store_true", help="keep the data directory")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="flowscope-soak-"))
    data = tmp / "data"
    data.mkdir()
    gen = Generator(11)
    pool = list(requests(gen, 400, start_ns=time.time_ns() - 600 * 10**9, span_ns=600 * 10**9,
                         batch_spans=args.batch))
    col = Collector(data, _port(), {})
    print(f"soak: {args.minutes:g} min, {args.clients} clients, ~{args.batch} spans/request, data in {tmp}",
          file=sys.stderr)
    try:
        col.start()
        assert col.proc is not None
        pid = col.proc.pid
        samples: list[tuple[float, float, float]] = []  # (t, rss MB, buffered spans)
        load = Load(col.url, pool, args.clients, args.rate).start()
        end = time.monotonic() + args.minutes * 60
        last_print = time.monotonic()
        while time.monotonic() < end:
            time.sleep(1.0)
            samples.append((time.monotonic() - load.t0, _rss_mb(pid), _metric(col.url, "flowscope_queue_spans")))
            if time.monotonic() - last_print >= 15:
                last_print = time.monotonic()
                print(f"  t={samples[-1][0]:5.0f}s acked={load.acked:,} rss={samples[-1][1]:.0f}MB "
                      f"buffered={samples[-1][2]:,.0f} refused={load.refused}", file=sys.stderr)
        load.join()
        soak_s = time.monotonic() - load.t0
        t_drain = time.monotonic()
        while _metric(col.url, "flowscope_queue_spans") > 0:
            time.sleep(0.1)
        drain_s = time.monotonic() - t_drain
        soak = {"acked": load.acked, "offered": load.offered, "refused": load.refused, "seconds": soak_s}

        # phase 2: kill -9 right after acknowledgements, with spans only in the log
        crash = Load(col.url, pool[:50], args.clients, 0, service="soak-kill", keep_ids=True).start()
        buffered_at_kill = 0.0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            buffered_at_kill = _metric(col.url, "flowscope_queue_spans")
            if crash.acked >= 5 * args.batch and buffered_at_kill > 0:
                break
            time.sleep(0.01)
        col.kill9()
        crash.join()
        up_s, ready_s = col.start()
        t_replay = time.monotonic()
        while _metric(col.url, "flowscope_queue_spans") > 0:
            time.sleep(0.05)
        replay_s = time.monotonic() - t_replay + ready_s
        col.stop()

        soak_rows, soak_uniq = _count(data, "ServiceName != 'soak-kill'")
        crash_ids = _stored_ids(data, "soak-kill")
        crash_set = {bytes.fromhex(i) for i in crash_ids}
        lost_soak = soak["acked"] - soak_uniq
        lost_crash = len(crash.acked_ids - crash_set)
        doubled = (soak_rows - soak_uniq) + (len(crash_ids) - len(crash_set))
        phantom = len(crash_set - crash.sent_ids)

        rss = [s[1] for s in samples]
        minute = max(1, min(60, len(samples) // 4))
        first, last = median(rss[:minute]), median(rss[-minute:])
        print()
        print(f"flowscope soak benchmark ({machine()})")
        print()
        print(table(
            ["phase", "duration", "spans acked", "spans/s held", "429/503 answers", "RSS first min -> last min",
             "RSS peak", "buffered peak"],
            [["sustained load", f"{soak_s / 60:.1f} min", f"{soak['acked']:,}", f"{soak['acked'] / soak_s:,.0f}",
              f"{soak['refused']:,}", f"{first:.0f} -> {last:.0f} MB", f"{max(rss):.0f} MB",
              f"{max(s[2] for s in samples):,.0f} spans"]],
        ))
        print(f"\nafter the load stopped, the buffer drained in {drain_s:.1f}s")
        print()
        print(table(
            ["kill -9 recovery", "value"],
            [["spans acknowledged before the kill", f"{len(crash.acked_ids):,}"],
             ["of them only in the write-ahead log at the kill", f"{buffered_at_kill:,.0f}"],
             ["restart -> answering HTTP", f"{up_s:.1f} s"],
             ["restart -> ready", f"{ready_s:.1f} s"],
             ["restart -> log replayed into ClickHouse", f"{replay_s:.1f} s"],
             ["acknowledged spans lost (soak + crash)", f"{lost_soak + lost_crash}"],
             ["spans stored twice", f"{doubled}"],
             ["spans stored that were never sent", f"{phantom}"]],
        ))
        return 0 if (lost_soak + lost_crash + doubled + phantom) == 0 else 1
    finally:
        col.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
