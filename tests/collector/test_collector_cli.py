"""What ``flowscope-collector`` and ``flowscope demo`` say when they cannot start: one line a person can act on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests._collector_kit import CollectorProcess


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("command", ["serve", "migrate"])
@pytest.mark.parametrize("dsn", ["garbage", "postgres://app:secret@db:5432/app"])
def test_an_unsupported_dsn_is_one_line_without_a_traceback(tmp_path: Path, command: str, dsn: str) -> None:
    r = _run("-m", "flowscope_collector", command, "--dsn", dsn, *(("--port", "0") if command == "serve" else ()),
             cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("flowscope-collector: unsupported ClickHouse DSN") and "chdb:///" in line
    assert "secret" not in line  # the password is not echoed


def test_a_second_process_on_the_same_chdb_directory_is_told_who_holds_it(collector: CollectorProcess,
                                                                          tmp_path: Path) -> None:
    """chDB allows one process per directory; say so, and which process, instead of two tracebacks."""
    assert collector.proc is not None
    dsn = f"chdb://{collector.data_dir}"
    for args in (("-m", "flowscope_collector", "migrate", "--dsn", dsn),
                 ("-m", "flowscope_collector", "serve", "--dsn", dsn, "--port", "0"),
                 ("-m", "flowscope", "demo", "--dsn", dsn)):
        r = _run(*args, cwd=tmp_path)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr, args
        (line,) = r.stderr.strip().splitlines()
        assert "another collector" in line and str(collector.data_dir) in line, line
        assert f"pid {collector.proc.pid}" in line, line


def test_migrate_help_lists_only_what_migrate_reads(tmp_path: Path) -> None:
    r = _run("-m", "flowscope_collector", "migrate", "--help", cwd=tmp_path)
    assert r.returncode == 0
    for flag in ("--dsn", "--cluster", "--no-sharding", "--retention-days"):
        assert flag in r.stdout
    for serve_only in ("--port", "--host", "--wal-dir", "--api-keys-file", "--insecure", "--grpc-port",
                       "--max-pending-spans"):
        assert serve_only not in r.stdout, serve_only


def test_an_unreachable_server_dsn_is_named_in_readyz_and_the_503(tmp_path: Path) -> None:
    """Spans wait in the write-ahead log while ClickHouse is down; every answer says why."""
    import httpx

    from tests._collector_kit import free_port

    dead, port = free_port(), free_port()  # nothing listens on `dead`
    log = tmp_path / "collector.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowscope_collector", "serve", "--dsn", f"http://127.0.0.1:{dead}/",
             "--port", str(port), "--grpc-port", "0", "--wal-dir", str(tmp_path / "wal")],
            stdout=logf, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            import time

            time.sleep(0.1)
        ready = httpx.get(url + "/readyz", timeout=10)
        assert ready.status_code == 503
        detail = ready.json()["detail"]
        assert "last error: None" not in detail and f"127.0.0.1:{dead}" in detail, detail
        r = httpx.get(url + "/api/v1/runs", timeout=10)
        assert r.status_code == 503
        assert "starting" not in r.json()["error"] and f"127.0.0.1:{dead}" in r.json()["error"], r.json()
    finally:
        proc.terminate()
        proc.wait(30)


def test_unknown_routes_and_head_answer_in_the_documented_shape(collector: CollectorProcess) -> None:
    import httpx

    r = httpx.get(collector.url + "/api/v1/nope", timeout=10)
    assert r.status_code == 404 and set(r.json()) == {"error", "status"} and r.json()["status"] == 404
    r = httpx.post(collector.url + "/api/v1/runs", timeout=10)
    assert r.status_code == 405 and r.json()["status"] == 405
    for path in ("/healthz", "/api/v1/runs", "/version"):
        head, get = httpx.head(collector.url + path, timeout=10), httpx.get(collector.url + path, timeout=10)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b"", path
