"""The run explorer in a real browser on real volumes: ``python -m benchmarks.bench_ui``.

* 100 000 runs (~10 M spans over 7 days, generated inside ClickHouse by
  :mod:`benchmarks.bulk_load`, flowing through the collector's own
  materialized views) — the runs page, newest first, by cost, filtered;
* one run of ~2 000 spans sent through the real SDK and OTLP/HTTP
  (250 nodes, each with an LLM call to the fake provider, six tool calls and a
  state change) — its run page (totals, path graph, waterfall, node table) and a
  time-travel step.

A real collector process serves them; Debian's headless Chromium
(``/usr/bin/chromium``, driven by Playwright) loads each page in a fresh tab.
A page counts as rendered when the explorer has drawn the data of its route
(its own ``performance`` marks: ``flowscope:route-start`` → ``-done``); "cold"
is from navigation start (HTML, modules, API requests, drawing), "in-app" from
the hash change of a page already open. Medians over ``--repeat`` loads, with
min-max. Not part of the test suite; timing on a shared 2-core machine moves,
so read the table with its load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def bulk_load(directory: Path, runs: int) -> None:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "benchmarks.bulk_load", "--spans", str(runs * 100), "--dir",
                          str(directory), "--check", "0"], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-3000:])
    print(f"  bulk-loaded {runs:,} runs in {time.perf_counter() - t0:.0f} s", flush=True)


def big_run(url: str, nodes: int = 250, tools: int = 6) -> str:
    """One run of ~2 000 spans through the real SDK and clients."""
    import openai

    import flowscope
    from flowscope.testing import FakeProvider, Reply

    flowscope.init(service_name="bench-ui", endpoint=url, capture_content=True)
    with FakeProvider() as fp:
        fp.set_default(Reply(text="ok", input_tokens=800, cached_tokens=200, output_tokens=60,
                             model="gpt-4o-mini-2024-07-18"))
        client = openai.OpenAI(base_url=fp.openai_base_url, api_key="sk-bench", max_retries=0)
        with flowscope.run("big-flow", input={"items": []}) as run:
            for i in range(nodes):
                with flowscope.node(f"step-{i % 17}", type="llm" if i % 3 else "tool"):
                    client.chat.completions.create(model="gpt-4o-mini",
                                                   messages=[{"role": "user", "content": f"item {i}"}])
                    for t in range(tools):
                        with flowscope.tool(f"tool-{t}"):
                            pass
                    flowscope.record_state(f"items.{i}", {"n": i, "ok": True})
        flowscope.force_flush()
    return run.id


def wait_run(url: str, run_id: str, spans: int) -> int:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/api/v1/runs/{run_id}", timeout=60)
        if r.status_code == 200 and r.json()["status"] != "running" and r.json()["spans"] >= spans:
            return int(r.json()["spans"])
        time.sleep(0.2)
    raise RuntimeError(f"run {run_id} not complete in time")


def measure_cold(browser: Any, url: str, check: Any) -> float:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.goto(url)
    page.locator("html[data-ready='1']").wait_for(state="attached", timeout=120_000)
    check(page)
    ms = float(page.evaluate("document.documentElement.dataset.sinceNavigationMs"))
    ctx.close()
    return ms


def measure_in_app(page: Any, fragment: str, check: Any) -> float:
    before = int(page.evaluate("Number(document.documentElement.dataset.routes || 0)"))
    page.evaluate(f"window.location.hash = {fragment!r}")
    page.locator(f"html[data-routes='{before + 1}'][data-ready='1']").wait_for(state="attached", timeout=120_000)
    check(page)
    return float(page.evaluate("document.documentElement.dataset.routeMs"))


def stats(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ms | {min(values):.0f}-{max(values):.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_ui", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="bulk-loaded runs (~100 spans each)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dir", help="keep the chDB directory here (reused when it already holds data)")
    args = parser.parse_args(argv)
    if not Path("/usr/bin/chromium").exists():
        print("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    from tests._collector_kit import CollectorProcess

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="flowscope-bench-ui-"))
    data = base / "data"
    if not (data.exists() and any(data.iterdir())):
        print(f"loading {args.runs:,} runs into {data} ...", flush=True)
        bulk_load(data, args.runs)
    col = CollectorProcess(data).start(timeout_s=600)
    rows: list[tuple[str, str, str]] = []
    try:
        run_id = big_run(col.url)
        spans = wait_run(col.url, run_id, 2000)
        print(f"  big run {run_id}: {spans} spans", flush=True)
        import httpx

        small = httpx.get(f"{col.url}/api/v1/runs", params={"limit": 5, "flow": "checkout-flow"}, timeout=60).json()
        small_id = small["runs"][0]["run_id"]
        n_runs = args.runs
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)

            def rows_drawn(n: int) -> Any:
                return lambda page: page.locator("#runs-table tbody tr").nth(n - 1).wait_for()

            def run_drawn(page: Any) -> None:
                page.locator(".waterfall .wf-row").first.wait_for()
                page.locator("svg.graph").wait_for()

            cases = [
                (f"runs page, newest first ({n_runs:,} runs)", "#/runs", rows_drawn(50)),
                ("runs page, sorted by cost", "#/runs?sort=cost", rows_drawn(50)),
                ("runs page, flow + status filter", "#/runs?flow=refund-flow&status=error", rows_drawn(1)),
                (f"run page, {spans:,}-span run", f"#/runs/{run_id}", run_drawn),
                ("run page, ~100-span run", f"#/runs/{small_id}", run_drawn),
            ]
            for label, frag, check in cases:
                measure_cold(browser, col.url + "/" + frag, check)  # warm the collector's caches once
                cold = [measure_cold(browser, col.url + "/" + frag, check) for _ in range(args.repeat)]
                rows.append((label, "cold", stats(cold)))
                print(f"  {label}: {stats(cold)}", flush=True)
            # in-app: the page is open; a click (hash change) to the next view
            ctx = browser.new_context(viewport={"width": 1400, "height": 900})
            page = ctx.new_page()
            page.goto(col.url + "/#/runs")
            page.locator("html[data-ready='1']").wait_for(state="attached", timeout=120_000)
            warm_runs, warm_run, warm_tt, warm_span = [], [], [], []
            for i in range(args.repeat):
                warm_run.append(measure_in_app(page, f"#/runs/{run_id}", run_drawn))
                warm_span.append(measure_in_app(page, f"#/runs/{run_id}/step/{i + 1}",
                                                lambda pg: pg.locator(".detail-pane h2").wait_for()))
                warm_tt.append(measure_in_app(page, f"#/runs/{run_id}/state/{100 + i}",
                                              lambda pg: pg.locator("#tt-title").wait_for()))
                warm_runs.append(measure_in_app(page, f"#/runs?limit=50&since={7 + i}d", rows_drawn(50)))
            ctx.close()
            browser.close()
            rows += [
                (f"runs page ({n_runs:,} runs)", "in-app", stats(warm_runs)),
                (f"run page, {spans:,}-span run", "in-app", stats(warm_run)),
                (f"step detail in the {spans:,}-span run", "in-app", stats(warm_span)),
                (f"time-travel step in the {spans:,}-span run", "in-app", stats(warm_tt)),
            ]
    finally:
        col.stop()
    load = os.getloadavg()
    print()
    print(f"run explorer in headless Chromium ({platform.machine()}, {os.cpu_count()} cores, "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average {load[0]:.1f}; "
          f"median of {args.repeat} | min-max)")
    print()
    print("| page | load | rendered in | range |")
    print("|---|---|---|---|")
    for label, kind, st in rows:
        med, rng = st.split(" | ")
        print(f"| {label} | {kind} | {med} | {rng} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
