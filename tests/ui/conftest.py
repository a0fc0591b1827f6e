"""Fixtures of the run explorer's browser tests: Debian's headless Chromium driven by Playwright.

Nothing downloads a browser: Playwright is pointed at ``/usr/bin/chromium`` (the
``chromium`` Debian package, which ``.ci/run`` installs); without it the tests
skip and say why. One browser and one collector per test module, a fresh browser
context per test. (Not one browser per session: while Playwright's sync API is open
it keeps an asyncio loop marked running on the thread, and every later test in the
same worker that calls ``asyncio.run`` would fail. Launching takes well under a second.) Every page a test
opens is watched: a request to anywhere but the collector, an uncaught script
error or a CSP violation fails the test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("FLOWSCOPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_missing() -> str | None:
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        return f"no Chromium at {CHROMIUM}: install Debian's `chromium` package (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@dataclass
class Watched:
    """A page, and what it did that a test may not allow."""

    page: Any
    base: str
    foreign_requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)

    def open(self, fragment: str = "") -> Any:
        self.page.goto(self.base + "/" + fragment)
        # (a locator, not wait_for_function: the page's CSP forbids evaluating strings)
        self.page.locator("html[data-ready='1']").wait_for(state="attached")
        return self.page

    def check(self, allow_http_errors: bool = False) -> None:
        assert not self.foreign_requests, f"the page reached beyond the collector: {self.foreign_requests}"
        errors = [e for e in self.errors if not (allow_http_errors and "status of 40" in e)]
        assert not errors, f"errors in the page: {errors}"


def watch(context: Any, base: str) -> Watched:
    page = context.new_page()
    w = Watched(page, base)

    def on_request(req: Any) -> None:
        w.requests.append(req)
        if not req.url.startswith(base + "/") and not req.url.startswith("data:"):
            w.foreign_requests.append(req.url)

    page.on("request", on_request)
    page.on("pageerror", lambda e: w.errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: w.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("dialog", lambda d: (w.errors.append(f"dialog: {d.message}"), d.dismiss()))
    return w


@pytest.fixture()
def context_factory(browser: Any) -> Iterator[Any]:
    made: list[Any] = []

    def make(**kw: Any) -> Any:
        kw.setdefault("viewport", {"width": 1400, "height": 900})
        ctx = browser.new_context(**kw)
        ctx.set_default_timeout(20_000)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()
