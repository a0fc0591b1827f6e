"""Regenerate the run explorer's screenshots in docs/ui/: ``python -m tests.ui.screenshots``.

Starts a collector on loopback, sends it the browser tests' scenario (real SDK,
real clients, the fake provider), and photographs every page with Debian's
headless Chromium. Needs ``/usr/bin/chromium`` and the ``playwright`` package
(``pip install -e ".[all,dev]"``); downloads nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import flowscope
from flowscope.testing import FakeProvider
from tests._collector_kit import CollectorProcess
from tests.ui.conftest import chromium_missing, launch
from tests.ui.scenario import LiveRun, produce

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "ui"


def shoot(browser: Any, url: str, name: str, out: Path, *, width: int = 1280, height: int = 860,
          scheme: str = "light", full: bool = True, before: Any = None, ready: str = "html[data-ready='1']") -> Path:
    ctx = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme,
                              device_scale_factor=1)
    page = ctx.new_page()
    page.goto(url)
    page.locator(ready).first.wait_for(state="attached")
    if before:
        before(page)
    page.wait_for_timeout(400)  # let the last fetches paint
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    ctx.close()
    print(f"  {path.relative_to(ROOT)}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.ui.screenshots", description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    reason = chromium_missing()
    if reason:
        print(f"cannot take screenshots: {reason}", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, FakeProvider() as fp, sync_playwright() as p:
        col = CollectorProcess(Path(tmp) / "data").start()
        keyed = CollectorProcess(Path(tmp) / "keyed", env={"FLOWSCOPE_API_KEYS": "screenshot-key-123=shop"}).start()
        browser = launch(p)
        try:
            runs = produce(col.url, fp)
            base = col.url + "/"
            print(f"writing to {args.out}")
            shoot(browser, base + "#/runs", "runs", args.out)
            shoot(browser, base + f"#/runs/{runs.refund}", "run", args.out)
            shoot(browser, base + f"#/runs/{runs.refund}/step/0", "run-step-detail", args.out, full=False,
                  before=lambda pg: pg.locator('.wf-row[data-kind="llm"] a').first.click())
            shoot(browser, base + f"#/runs/{runs.budget}/step/1", "run-failed-step", args.out, full=False)
            shoot(browser, base + f"#/runs/{runs.refund}/state/2", "time-travel", args.out)
            shoot(browser, base + f"#/compare/{runs.refund}/{runs.track}", "compare", args.out)
            shoot(browser, base + "#/costs", "costs", args.out)
            shoot(browser, base + f"#/runs/{runs.track}", "run-dark", args.out, scheme="dark")
            shoot(browser, base + "#/runs", "runs-narrow", args.out, width=390, height=844)
            flowscope.init(service_name="support", endpoint=col.url)
            live = LiveRun(fp, nodes=3).start()
            try:
                live.advance()
                live.advance()
                col.wait_for_run(live.run_id)
                shoot(browser, base + f"#/runs/{live.run_id}", "live", args.out, full=False,
                      before=lambda pg: pg.locator("#live-cost:not([data-cost='0'])").wait_for())
            finally:
                live.finish()
            shoot(browser, keyed.url + "/", "api-key", args.out, full=False)
            shoot(browser, base + "docs", "api-docs", args.out, full=False, ready=".swagger-ui .title")
        finally:
            browser.close()
            keyed.stop()
            col.stop()
            flowscope.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
