"""A partially priced call in the UI: its cost is shown as a lower bound wherever it is summed, never as complete.

A call priced but for a part the catalog has no rate for (here a service tier)
is sent to a real collector as OTLP; the runs list, the run page and the costs
page are looked at in a real browser.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests._collector_kit import CollectorProcess, otlp_body
from tests.ui.conftest import Watched, chromium_missing, watch

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or "")

PARTIAL = {"flowscope.span.kind": "llm", "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
           "gen_ai.request.model": "claude-3-5-haiku-20241022", "gen_ai.usage.input_tokens": "1000",
           "gen_ai.usage.output_tokens": "100", "flowscope.cost.source": "partial", "flowscope.cost.usd": "0.0012",
           "flowscope.cost.unpriced_parts": "service_tier:priority", "flowscope.pricing.version": "test"}


@pytest.fixture(scope="module")
def partial_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CollectorProcess, str]]:
    col = CollectorProcess(tmp_path_factory.mktemp("ui-partial") / "data").start()
    run_id = uuid.uuid4().hex
    try:
        for attrs in ({"flowscope.span.kind": "run", "gen_ai.workflow.name": "partial-ui"}, PARTIAL):
            r = httpx.post(col.url + "/v1/traces", content=otlp_body(1, run_id=run_id, attrs=attrs),
                           headers={"content-type": "application/x-protobuf"}, timeout=30)
            assert r.status_code == 200, r.text
        col.wait_for_run(run_id, spans=2)
        yield col, run_id
    finally:
        col.stop()


@pytest.fixture()
def ui(context_factory: Any, partial_run: tuple[CollectorProcess, str]) -> Iterator[Watched]:
    w = watch(context_factory(), partial_run[0].url)
    yield w
    w.check()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def test_partial_cost_reads_as_a_lower_bound(ui: Watched, partial_run: tuple[CollectorProcess, str]) -> None:
    _, run_id = partial_run
    page = ui.open("#/runs")
    listed = page.locator(f'#runs-table tr[data-run="{run_id}"]')
    expect(listed.locator("td.cost")).to_have_text("$0.0012 (1 partial)")
    expect(listed.locator(".badge.unpriced")).to_have_text("partial")

    page = ui.open(f"#/runs/{run_id}")
    expect(page.locator('.stat[data-stat="cost"] .stat-value')).to_have_text("$0.0012")
    expect(page.locator('.stat[data-stat="cost"]')).to_contain_text("1 partially priced: a lower bound")
    expect(page.locator('.stat[data-stat="llm"]')).to_contain_text("1 partial")

    page = ui.open("#/costs")
    expect(page.locator('.stat[data-stat="unpriced"]')).to_contain_text("1 partially priced: the total is a lower bound")
    group = page.locator('#cost-groups tr[data-key="claude-3-5-haiku-20241022"]')
    expect(group.locator("td").nth(5)).to_have_text("$0.0012 (1 partial)")
    expect(page.locator("#unpriced-models")).to_contain_text("1 partially priced")


def test_the_partial_call_names_the_part_without_a_price(ui: Watched, partial_run: tuple[CollectorProcess, str]) -> None:
    _, run_id = partial_run
    page = ui.open(f"#/runs/{run_id}")
    page.locator('.wf-row[data-kind="llm"]').locator("a").first.click()
    detail = page.locator(".detail-pane")
    expect(detail).to_contain_text("$0.0012 (partial: a lower bound)")
    expect(detail).to_contain_text("service_tier:priority")
