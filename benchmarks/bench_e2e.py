"""End to end: how long until a finished call is visible in the API, and what buffering costs the app.

1. Time to first span visible: a real collector process (embedded chDB), the
   SDK at default settings (its batch processor exports every second,
   ``OTEL_BSP_SCHEDULE_DELAY``), one instrumented openai call inside a run against the fake
   provider; the clock runs from the call returning until
   ``GET /api/v1/runs/{id}`` shows the span. Also measured with an explicit
   ``flowscope.force_flush()`` after the run, which is the pipeline's own
   latency (exporter → collector → write-ahead log → ClickHouse → query).
2. SDK memory per 10 000 buffered spans: the exporter is held so spans pile up
   in the queue; resident memory before and after (RSS, /proc).

    python -m benchmarks.bench_e2e [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from benchmarks._stats import machine, median, pct, table

LATENCY_CHILD = """
import sys, time, json, httpx, openai, flowscope
from flowscope.testing import FakeProvider
url, flush = sys.argv[1], sys.argv[2] == "flush"
flowscope.init(service_name="bench-e2e", endpoint=url)
with FakeProvider() as fp:
    client = openai.OpenAI(base_url=fp.openai_base_url, api_key="x")
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "warm"}])
    with flowscope.run("latency") as run:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    t0 = time.perf_counter()
    if flush:
        flowscope.force_flush()
    while True:
        r = httpx.get(f"{url}/api/v1/runs/{run.id}", timeout=10)
        if r.status_code == 200 and r.json()["spans"] >= 2:
            break
        time.sleep(0.005)
    print(json.dumps({"seconds": time.perf_counter() - t0}))
"""

MEMORY_CHILD = """
import sys, threading, json
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
import flowscope

gate = threading.Event()
class Held(SpanExporter):
    def export(self, spans):
        gate.wait()
        return SpanExportResult.SUCCESS
    def shutdown(self):
        gate.set()

def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

n = int(sys.argv[1])
flowscope.init(exporter=Held(), instrument=False, max_queue_size=n + 2048)
with flowscope.run("warm"):
    pass
before = rss()
with flowscope.run("mem") as run:
    for i in range(n - 1):
        with flowscope.node(f"n{i % 50}"):
            pass
after = rss()
print(json.dumps({"bytes": after - before, "stats": flowscope.stats()}))
gate.set()
"""


def _collector(data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLOWSCOPE_CLICKHOUSE_DSN": f"chdb://{data}", "FLOWSCOPE_GRPC_PORT": "off"}
    proc = subprocess.Popen([sys.executable, "-m", "flowscope_collector", "serve", "--port", str(port),
                             "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("collector did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def latency(runs: int) -> list[list[object]]:
    import json

    tmp = Path(tempfile.mkdtemp(prefix="flowscope-bench-"))
    port = _free_port()
    proc = _collector(tmp / "data", port)
    rows = []
    try:
        for mode in ("default", "flush"):
            secs = []
            for _ in range(runs):
                out = subprocess.run([sys.executable, "-c", LATENCY_CHILD, f"http://127.0.0.1:{port}", mode],
                                     capture_output=True, text=True, timeout=120)
                if out.returncode != 0:
                    raise RuntimeError(out.stderr[-2000:])
                secs.append(json.loads(out.stdout.strip().splitlines()[-1])["seconds"] * 1000)
            label = ("default settings (export every 1 s)" if mode == "default"
                     else "force_flush() after the run")
            rows.append([label, f"{median(secs):.0f}", f"{pct(secs, 10):.0f}", f"{pct(secs, 90):.0f}", runs])
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def memory(spans: int) -> tuple[float, dict[str, int]]:
    import json

    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(spans)], capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return data["bytes"] / 1e6, data["stats"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    print(f"End-to-end ({machine()})\n")
    print(table(["time to first span visible in the API", "median ms", "p10 ms", "p90 ms", "runs"],
                latency(args.runs)))
    mb, stats = memory(10_000)
    print()
    print(table(["SDK memory", "value"], [
        ["resident memory for 10 000 buffered spans (node spans, exporter held)", f"{mb:.1f} MB"],
        ["spans dropped while buffering", stats.get("dropped", 0)],
    ]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
