"""A replay's fork in the run explorer: the run header names the original and the step, and
the comparison says where the fork diverged. Real SDK, real collector, real browser."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import flowscope
from flowscope import Client
from tests._collector_kit import CollectorProcess
from tests.ui.conftest import Watched, chromium_missing, watch

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or "")


@pytest.fixture(scope="module")
def col(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    proc = CollectorProcess(tmp_path_factory.mktemp("ui-replay") / "data").start()
    yield proc
    proc.stop()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def _flow(state: dict[str, Any], start_at: str | None, double: bool) -> dict[str, Any]:
    order = ["load", "score", "publish"]
    with flowscope.run("scoring", input=state if start_at is None else None):
        for name in order[order.index(start_at) if start_at else 0:]:
            with flowscope.node(name):
                if name == "load":
                    state["rows"] = [1, 2, 3]
                elif name == "score":
                    state["score"] = sum(state["rows"]) * (2 if double else 1)
                else:
                    state["published"] = True
                flowscope.record_state("", dict(state))  # the whole state after the step
    return state


def _ended(client: Client, exclude: set[str]) -> str:
    flowscope.force_flush()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for run in client.runs(flow="scoring"):
            if run["run_id"] not in exclude and run["status"] == "ok":
                return str(run["run_id"])
        time.sleep(0.1)
    raise AssertionError("run not stored")


def test_fork_header_and_comparison(context_factory: Any, col: CollectorProcess) -> None:
    flowscope.init(service_name="ui-replay", endpoint=col.url)
    with Client(col.url) as client:
        _flow({}, None, double=False)
        parent = _ended(client, set())
        result = flowscope.replay(parent, lambda state, step, nxt: _flow(state, nxt, double=True),
                                  from_step=0, client=client)
        child = _ended(client, {parent})
    assert result.run_id == child

    w: Watched = watch(context_factory(), col.url)
    page = w.open("#/runs")
    row = page.locator(f'#runs-table tr[data-run="{child}"]')
    expect(row.locator(".badge")).to_have_text("fork @ step 0")
    expect(page.locator(f'#runs-table tr[data-run="{parent}"] .badge')).to_have_count(0)
    page = w.open(f"#/runs/{child}")
    fork = page.locator("#run-fork")
    expect(fork).to_contain_text(f"Forked from {parent} at step 0")
    fork.get_by_role("link", name="Compare with the original").click()
    expect(page.locator("#compare-fork")).to_have_text("B is a fork of A after step 0: it diverged at step 1")
    page = w.open(f"#/runs/{parent}")
    expect(page.locator("h1")).to_have_text("scoring")
    expect(page.locator("#run-fork")).to_have_count(0)
    w.check()
