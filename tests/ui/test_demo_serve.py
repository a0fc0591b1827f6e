"""``flowscope demo --serve`` — README's first command — keeps serving after the demo and prints the run explorer's URL."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests._collector_kit import free_port
from tests.ui.conftest import chromium_missing, watch


def test_demo_serve_prints_the_ui_url_and_serves_it(tmp_path: Path, request: Any) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "flowscope", "demo", "--serve", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 180
        url = None
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, "".join(seen)
                continue
            seen.append(line)
            m = re.match(r"run explorer\s+(http://127\.0\.0\.1:\d+)/#/runs/([0-9a-f]{32})", line)
            if m:
                url, run_id = m.group(1), m.group(2)
        assert url == f"http://127.0.0.1:{port}", "".join(seen)
        page = httpx.get(url + "/", timeout=30)
        assert page.status_code == 200 and "/ui/js/app.js" in page.text
        assert httpx.get(f"{url}/api/v1/runs/{run_id}", timeout=30).json()["flow"] == "support-desk"
        if chromium_missing() is None:
            ctx = request.getfixturevalue("context_factory")()
            w = watch(ctx, url)
            p = w.open(f"#/runs/{run_id}")
            from playwright.sync_api import expect

            expect(p.locator("h1")).to_have_text("support-desk")
            expect(p.locator("svg.graph .gnode")).to_have_count(4)
            w.check()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
