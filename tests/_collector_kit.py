"""A real collector process over real HTTP, and raw OTLP bodies and chDB reads for the collector tests.

The collector runs as a child process (``flowscope-collector serve``) on an
ephemeral loopback port with its own chDB directory, exactly as a user starts
it; chDB allows one engine per process, so tests never share one in-process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CollectorProcess:
    def __init__(self, data_dir: Path, port: int | None = None, env: dict[str, str] | None = None,
                 dsn: str | None = None) -> None:
        self.data_dir = data_dir
        # another DSN than the chDB directory (e.g. a ClickHouse server nobody listens on: every
        # acknowledged span then waits in the write-ahead log); readiness is then /healthz
        self.dsn = dsn
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"collector-{self.port}.log"

    def start(self, timeout_s: float = 60.0) -> CollectorProcess:
        env = {**os.environ, "FLOWSCOPE_GRPC_PORT": "off", **self.env,
               "FLOWSCOPE_CLICKHOUSE_DSN": self.dsn or f"chdb://{self.data_dir}"}
        if self.dsn:
            env.setdefault("FLOWSCOPE_WAL_DIR", str(self.data_dir / "wal"))
        self._logf = open(self.log, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowscope_collector", "serve", "--port", str(self.port), "--log-level",
             "warning"],
            env=env, stdout=self._logf, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited early:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + ("/healthz" if self.dsn else "/readyz"), timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"collector not ready in {timeout_s}s:\n{self.log.read_text()[-3000:]}")

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def get(self, path: str, **kw: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kw)  # type: ignore[arg-type]

    def wait_for_run(self, run_id: str, *, spans: int | None = None, timeout_s: float = 20.0) -> dict:
        """Poll until the run is visible (and has at least ``spans`` spans)."""
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            r = self.get(f"/api/v1/runs/{run_id}")
            if r.status_code == 200:
                last = r.json()
                if spans is None or last["spans"] >= spans:
                    return last
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} not visible in time; last={last}")


def chdb_query(data_dir: Path, sql: str) -> list[list[object]]:
    """Rows of ``sql`` against a stopped collector's chDB directory, read in a child process.

    Counting raw rows (not the API's span-id-deduplicated views) is how the
    fault tests prove nothing was stored twice; chDB allows one engine per
    process, hence the child.
    """
    code = (
        "import json, sys\n"
        "from flowscope_collector.store.connection import connect, parse_dsn\n"
        "c = connect(parse_dsn('chdb://' + sys.argv[1]))\n"
        "print(json.dumps([list(r) for r in c.query(sys.argv[2]).result_rows], default=str))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(data_dir), sql], capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"chDB query failed: {out.stderr[-2000:]}")
    import json

    return json.loads(out.stdout.strip().splitlines()[-1])


def otlp_body(n: int, *, run_id: str | None = None, service: str = "tests", name: str = "span",
              attrs: dict[str, str] | None = None) -> bytes:
    """A protobuf ExportTraceServiceRequest with ``n`` spans (fresh random ids), for raw OTLP tests."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    now = time.time_ns()
    for i in range(n):
        span = ss.spans.add()
        span.trace_id, span.span_id = os.urandom(16), os.urandom(8)
        span.name = f"{name} {i}"
        span.start_time_unix_nano, span.end_time_unix_nano = now + i, now + i + 1000
        for key, value in {**({"flowscope.run.id": run_id} if run_id else {}), **(attrs or {})}.items():
            a = span.attributes.add()
            a.key, a.value.string_value = key, value
    return req.SerializeToString()
