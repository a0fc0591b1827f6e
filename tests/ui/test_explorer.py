"""The run explorer in a real browser, over real runs in a real collector.

The runs come from the real SDK and clients (tests/ui/scenario.py): a LangGraph
flow with a router, a 429 retry, a fallback, a response-cache hit and state
changes, a second run of it that diverges, a run stopped by its budget, a run
full of HTML payloads, and a run that is still going. Each test looks at the
page the way a person does: the text on the screen, what a click or a key does.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

import flowscope
from flowscope.testing import FakeProvider
from tests._collector_kit import CollectorProcess
from tests.ui.conftest import Watched, chromium_missing, watch
from tests.ui.scenario import IMG_PAYLOAD, SCRIPT_PAYLOAD, LiveRun, Runs, produce

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or "")


@pytest.fixture(scope="module")
def fp() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture(scope="module")
def col(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    proc = CollectorProcess(tmp_path_factory.mktemp("ui") / "data").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def runs(col: CollectorProcess, fp: FakeProvider) -> Runs:
    return produce(col.url, fp)


@pytest.fixture()
def ui(context_factory: Any, col: CollectorProcess, runs: Runs) -> Iterator[Watched]:
    w = watch(context_factory(), col.url)
    yield w
    w.check()


def api(col: CollectorProcess, path: str, **params: Any) -> Any:
    r = httpx.get(col.url + path, params=params, timeout=30)
    r.raise_for_status()
    return r.json()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def row(page: Any, run_id: str) -> Any:
    return page.locator(f'#runs-table tr[data-run="{run_id}"]')


# --- runs -------------------------------------------------------------------------------


def test_runs_page_shows_every_run_with_its_badges(ui: Watched, runs: Runs, col: CollectorProcess) -> None:
    page = ui.open("#/runs")
    expect(page.locator("#runs-table tbody tr")).to_have_count(4)
    refund = row(page, runs.refund)
    expect(refund).to_contain_text("triage")
    expect(refund).to_contain_text("retried \u00d71")
    expect(refund).to_contain_text("fell back")
    summary = api(col, f"/api/v1/runs/{runs.refund}")
    expect(refund.locator("td.cost")).to_have_text(f"${summary['cost_usd']}")  # the API's decimal string, as given
    track = row(page, runs.track)
    expect(track).to_contain_text("cache hit \u00d71")
    expect(track.locator(".badge.unpriced")).to_have_text("unpriced")
    expect(track.locator("td.cost")).to_contain_text("+ 1 unpriced")
    budget = row(page, runs.budget)
    expect(budget).to_contain_text("failed")
    expect(budget).to_contain_text("budget stop")


def test_filters_sort_and_paging_live_in_the_url(ui: Watched, runs: Runs) -> None:
    page = ui.open("#/runs")
    page.fill("#f-flow", "triage")
    page.press("#f-flow", "Enter")
    expect(page).to_have_url(re.compile(r"#/runs\?.*flow=triage"))
    expect(page.locator("#runs-table tbody tr")).to_have_count(2)

    page = ui.open("#/runs?tenant=acme")
    expect(page.locator("#runs-table tbody tr")).to_have_count(1)
    expect(row(page, runs.refund)).to_be_visible()

    page = ui.open("#/runs?status=error")
    expect(page.locator("#runs-table tbody tr")).to_have_count(1)
    expect(row(page, runs.budget)).to_be_visible()

    page = ui.open("#/runs?min_cost=0.0005&sort=cost")
    rows = page.locator("#runs-table tbody tr")
    expect(rows).to_have_count(2)
    assert [rows.nth(i).get_attribute("data-run") for i in range(2)] == [runs.budget, runs.refund]

    page = ui.open("#/runs?limit=3")
    expect(page.locator("#runs-table tbody tr")).to_have_count(3)
    first = {page.locator("#runs-table tbody tr").nth(i).get_attribute("data-run") for i in range(3)}
    page.get_by_role("link", name="Next page »").click()
    expect(page).to_have_url(re.compile(r"cursor="))
    expect(page.locator("#runs-table tbody tr")).to_have_count(1)
    last = page.locator("#runs-table tbody tr").first.get_attribute("data-run")
    assert last not in first
    page.get_by_role("link", name="« First page").click()
    expect(page.locator("#runs-table tbody tr")).to_have_count(3)


def test_new_runs_appear_without_a_reload(ui: Watched, col: CollectorProcess) -> None:
    page = ui.open("#/runs")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#runs-table tbody tr")).to_have_count(4)
    flowscope.init(service_name="support", endpoint=col.url)
    with flowscope.run("arrives-later") as run, flowscope.node("only"):
        pass
    flowscope.force_flush()
    expect(row(page, run.id)).to_contain_text("arrives-later", timeout=20_000)
    assert page.evaluate("window.__sameDocument") is True


# --- run ----------------------------------------------------------------------------------


def stat(page: Any, key: str) -> Any:
    return page.locator(f'.stat[data-stat="{key}"]')


def test_run_page_totals_nodes_graph_and_waterfall(ui: Watched, runs: Runs, col: CollectorProcess) -> None:
    s = api(col, f"/api/v1/runs/{runs.refund}")
    page = ui.open(f"#/runs/{runs.refund}")
    expect(page.locator("h1")).to_have_text("triage")
    expect(stat(page, "cost").locator(".stat-value")).to_have_text(f"${s['cost_usd']}")
    b = s["cost_breakdown"]
    expect(stat(page, "cost")).to_contain_text(f"input ${b['input_usd']}")
    expect(stat(page, "cost")).to_contain_text(f"cached ${b['cached_input_usd']}")
    expect(stat(page, "cost")).to_contain_text(f"output ${b['output_usd']}")
    expect(stat(page, "tokens").locator(".stat-value")).to_have_text("2,000 in / 140 out")
    expect(stat(page, "tokens")).to_contain_text("cached 400")
    expect(stat(page, "llm").locator(".stat-value")).to_have_text("4")
    expect(stat(page, "retries").locator(".stat-value")).to_have_text("1")
    expect(stat(page, "fallbacks").locator(".stat-value")).to_have_text("1")

    steps = page.locator("#nodes-table tbody tr")
    expect(steps).to_have_count(4)
    names = [steps.nth(i).locator("td").nth(1).inner_text() for i in range(4)]
    assert names == ["classify", "route", "refund", "reply"]
    expect(steps.nth(1)).to_contain_text("router")
    expect(steps.nth(1).locator("td").nth(4)).to_have_text("refund")  # the branch taken

    graph = page.locator("svg.graph")
    labels = graph.locator(".gnode .gname")
    expect(labels).to_have_count(4)
    assert labels.all_text_contents() == ["0. classify", "1. route", "2. refund", "3. reply"]
    expect(graph.locator(".edge-label")).to_have_text(["refund"])
    nodes = {n["name"]: n for n in api(col, f"/api/v1/runs/{runs.refund}/nodes")["nodes"]}
    expect(graph.locator(".gnode").nth(0).locator(".gdetail")).to_contain_text(f"${nodes['classify']['cost_usd']}")

    wf = page.locator(".waterfall .wf-row")
    expect(wf.first).to_contain_text("invoke_workflow triage")
    kinds = [wf.nth(i).get_attribute("data-kind") for i in range(wf.count())]
    assert kinds[:3] == ["run", "node", "llm"] and kinds.count("node") == 4 and kinds.count("llm") == 4
    # the Anthropic client's own span is folded under its LLM call, and unfolds on demand
    assert "anthropic.messages.create" not in page.locator(".waterfall").inner_text()
    page.get_by_role("button", name=re.compile("show 1 folded span")).click()
    expect(page.locator(".waterfall")).to_contain_text("anthropic.messages.create")


def test_unpriced_is_never_shown_as_zero(ui: Watched, runs: Runs, col: CollectorProcess) -> None:
    s = api(col, f"/api/v1/runs/{runs.track}")
    page = ui.open(f"#/runs/{runs.track}")
    expect(stat(page, "cost").locator(".stat-value")).to_have_text(f"${s['cost_usd']}")
    expect(stat(page, "cost")).to_contain_text("+ 1 unpriced call")
    expect(stat(page, "llm")).to_contain_text("1 unpriced")
    track_row = page.locator('#nodes-table tr[data-step="2"]')
    expect(track_row).to_contain_text("track")
    expect(track_row.locator("td").nth(9)).to_have_text("unpriced")
    expect(page.locator('.gnode[data-step="2"] .gdetail')).to_contain_text("unpriced")
    # the unknown model's call itself
    page.locator('.wf-row[data-kind="llm"]', has_text="acme-local-7b").locator("a").click()
    detail = page.locator(".detail-pane")
    expect(detail.locator("h2")).to_have_text("chat acme-local-7b")
    expect(detail.locator("dl.kv").nth(1)).to_contain_text("totalunpriced")
    # and the cache hit of this run: free, with what it saved
    page.locator('#nodes-table tr[data-step="3"] a').first.click()
    expect(detail).to_contain_text("(cache hit)")


def test_clicking_a_call_shows_retries_cost_parts_and_the_conversation(ui: Watched, runs: Runs) -> None:
    page = ui.open(f"#/runs/{runs.refund}")
    page.locator('.wf-row[data-kind="llm"]').first.locator("a").click()
    expect(page).to_have_url(re.compile(rf"#/runs/{runs.refund}/span/[0-9a-f]+$"))
    detail = page.locator(".detail-pane")
    expect(detail.locator("h2")).to_have_text("chat gpt-4o-mini")
    expect(detail).to_contain_text("openai gpt-4o-mini-2024-07-18")
    retries = detail.locator("section", has_text="Retries (1)").locator("tbody tr")
    expect(retries).to_have_count(1)
    assert retries.first.locator("td").all_inner_texts()[:4] == ["1", "429", "RateLimitError", "0.01 s"]
    expect(detail).to_contain_text("cached input")
    expect(detail).to_contain_text("$0.00003")
    msgs = detail.locator(".conversation .msg")
    expect(msgs).to_have_count(3)
    assert msgs.locator(".role").all_text_contents() == ["system", "user", "assistant"]
    expect(msgs.nth(1)).to_contain_text("Order 1234 has not arrived")
    expect(msgs.nth(2)).to_contain_text("refund")
    # the URL is the view: opened afresh, it shows the same detail
    again = watch(page.context, ui.base)
    again.page.goto(page.url)
    expect(again.page.locator(".detail-pane h2")).to_have_text("chat gpt-4o-mini")
    again.check()


def test_a_failed_step_shows_its_error_and_stack(ui: Watched, runs: Runs) -> None:
    page = ui.open(f"#/runs/{runs.budget}")
    expect(page.locator(".run-header")).to_contain_text("budget stop")
    failed = page.locator(".gnode.failed")
    expect(failed).to_have_count(1)
    expect(failed.locator(".gname")).to_have_text("1. charge")
    failed.click()
    detail = page.locator(".detail-pane")
    expect(detail.locator("h2")).to_have_text("Step 1: charge")
    expect(detail.locator(".error-message").first).to_contain_text("BudgetExceeded")
    expect(detail.locator("pre.stack").first).to_contain_text("Traceback (most recent call last)")


def test_keyboard_reaches_a_step_and_its_detail(ui: Watched, runs: Runs) -> None:
    page = ui.open(f"#/runs/{runs.refund}")
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('svg.graph') !== null"):
            break
    else:
        pytest.fail("Tab never reached the path graph")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/step/0$"))
    expect(page.locator(".detail-pane h2")).to_have_text("Step 0: classify")
    assert page.evaluate("document.activeElement.classList.contains('detail-title')")


# --- time travel -----------------------------------------------------------------------


def test_time_travel_steps_through_states_with_diffs(ui: Watched, runs: Runs) -> None:
    page = ui.open(f"#/runs/{runs.refund}")
    page.locator('#nodes-table tr[data-step="0"]').get_by_role("link", name="state after step 0").click()
    expect(page).to_have_url(re.compile(r"/state/0$"))
    expect(page.locator("#tt-title")).to_have_text("State after step 0. classify")
    diff = page.locator(".diff-lines li")
    expect(diff).to_have_text([re.compile(r'~ category: "" → "refund"'), re.compile(r'~ log: \[\] → \["classified"\]')],
                              use_inner_text=True)
    expect(page.locator('.tree li[data-path="category"]')).to_have_class(re.compile("mark-changed"))

    page.locator("body").press("ArrowRight")
    expect(page).to_have_url(re.compile(r"/state/1$"))
    expect(page.locator("#tt-title")).to_have_text("State after step 1. route")
    expect(page.locator(".diff-lines li")).to_have_text(
        [re.compile(r'~ log: \["classified"\] → \["classified","routed:refund"\]')], use_inner_text=True)
    page.locator("body").press("ArrowRight")
    page.locator("body").press("ArrowRight")  # keys pressed faster than the page loads still count
    expect(page.locator("#tt-title")).to_have_text("State after step 3. reply")
    expect(page.locator(".diff-lines")).to_contain_text("answer")
    page.locator("body").press("ArrowLeft")
    expect(page).to_have_url(re.compile(r"/state/2$"))
    expect(page.locator("#tt-title")).to_have_text("State after step 2. refund")
    expect(page.locator(".diff-lines li").first).to_have_text('~ answer: "" → "We have refunded order 1234."')
    expect(page.locator("#tt-slider")).to_have_value("3")  # input, 0, 1, 2

    page.get_by_role("link", name="← Back to this step in the timeline").click()
    expect(page).to_have_url(re.compile(r"/step/2$"))
    expect(page.locator('#nodes-table tr[data-step="2"]')).to_have_class(re.compile("selected"))
    expect(page.locator(".detail-pane h2")).to_have_text("Step 2: refund")


def test_time_travel_starts_at_the_input(ui: Watched, runs: Runs) -> None:
    page = ui.open(f"#/runs/{runs.refund}/state/-1")
    expect(page.locator("#tt-title")).to_have_text("State after the input")
    expect(page.locator(".tree-wrap")).to_contain_text("Order 1234 has not arrived")
    page.locator("#tt-slider").focus()
    page.keyboard.press("ArrowRight")
    expect(page).to_have_url(re.compile(r"/state/0$"))
    expect(page.locator("#tt-slider")).to_be_focused()


# --- compare and costs ----------------------------------------------------------------------


def test_compare_shows_paths_costs_and_the_first_divergent_state(ui: Watched, runs: Runs, col: CollectorProcess) -> None:
    page = ui.open("#/runs?flow=triage")
    row(page, runs.refund).locator("input[type=checkbox]").check()
    row(page, runs.track).locator("input[type=checkbox]").check()
    page.get_by_role("button", name="Compare the two selected").click()
    expect(page).to_have_url(re.compile("#/compare/"))
    expect(page).to_have_url(re.compile(f"#/compare/{runs.refund}/{runs.track}$"))  # in the order ticked
    c = api(col, "/api/v1/runs/compare", a=runs.refund, b=runs.track)
    expect(page.locator('.stat[data-stat="path"]')).to_contain_text("different paths")
    expect(page.locator('.stat[data-stat="divergence"] .stat-value')).to_have_text("after step 0")
    expect(page.locator("#divergence .diff-lines li")).to_have_text(
        [re.compile(r'~ category: "refund" → "track"')], use_inner_text=True)
    assert c["cost_delta_usd"].startswith("-")  # the track run cost less
    expect(page.locator('.stat[data-stat="cost-delta"] .stat-value')).to_have_text(f"\u2212${c['cost_delta_usd'][1:]}")
    a_path = page.locator('.cmp-side[data-side="A"] .cmp-path li a')
    assert a_path.all_inner_texts() == ["classify", "route", "refund", "reply"]
    expect(page.locator('.cmp-side[data-side="B"] .cmp-path li.differs').first).to_contain_text("track")
    expect(page.locator('.cmp-side[data-side="A"] [data-k="cost"]')).to_have_text(f"${c['a']['cost_usd']}")


def test_costs_page(ui: Watched, runs: Runs, col: CollectorProcess) -> None:
    report = api(col, "/api/v1/costs", group_by="model", since="168h")
    page = ui.open("#/costs")
    expect(page.locator('.stat[data-stat="total"] .stat-value')).to_have_text(f"${report['total_usd']}")
    expect(page.locator("#unpriced-models")).to_contain_text("acme-local-7b")
    unknown = page.locator('#cost-groups tr[data-key="acme-local-7b"]')
    expect(unknown.locator("td").nth(5)).to_have_text("unpriced")
    expect(page.locator("#top-runs li").first).to_contain_text("checkout")
    assert page.locator("svg.chart rect").count() >= 2  # the day's bar, stacked by model
    page.select_option("#c-group", "attr")
    page.fill("#c-attr", "tenant")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"group_by=attr%3Atenant"))
    expect(page.locator("#cost-groups")).to_contain_text("acme")
    expect(page.locator("#cost-groups")).to_contain_text("globex")
    assert page.locator("#pricing-note").count() == 0  # the stored figures: nothing to say


def test_costs_page_previews_the_catalog_now(ui: Watched, runs: Runs, col: CollectorProcess) -> None:
    """"Prices: catalog now" shows the API's pricing=current report (a preview of reprice) and says so."""
    report = api(col, "/api/v1/costs", group_by="model", since="168h", pricing="current")
    page = ui.open("#/costs")
    page.select_option("#c-pricing", "current")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"pricing=current"))
    expect(page.locator("#pricing-note")).to_contain_text(f"priced again under {report['pricing_version']}")
    expect(page.locator('.stat[data-stat="total"] .stat-value')).to_have_text(f"${report['total_usd']}")
    unknown = page.locator('#cost-groups tr[data-key="acme-local-7b"]')
    expect(unknown.locator("td").nth(5)).to_have_text("unpriced")  # no price in this catalog either


# --- untrusted data stays data ----------------------------------------------------------


@pytest.mark.parametrize("csp", ["enforced", "bypassed"])
def test_html_payloads_are_shown_as_text_and_never_run(context_factory: Any, col: CollectorProcess, runs: Runs,
                                                       csp: str) -> None:
    # with the CSP bypassed too: the DOM is built from text, so nothing would run even without it
    ui = watch(context_factory(bypass_csp=csp == "bypassed"), col.url)
    page = ui.open("#/runs")
    expect(row(page, runs.hostile)).to_be_visible()
    page = ui.open(f"#/runs/{runs.hostile}")
    node_name = f"step {IMG_PAYLOAD}"
    expect(page.locator("#nodes-table tbody tr td").nth(1)).to_have_text(node_name)
    expect(page.locator(".gnode title")).to_contain_text(IMG_PAYLOAD)
    page.locator('.wf-row[data-kind="llm"] a').click()
    detail = page.locator(".detail-pane")
    expect(detail.locator(".conversation .msg").first).to_contain_text(f"{SCRIPT_PAYLOAD} and {IMG_PAYLOAD}")
    expect(detail.locator(".conversation .msg").nth(1)).to_contain_text(SCRIPT_PAYLOAD)
    detail.get_by_text("All attributes").click()
    expect(detail.locator("table.attrs")).to_contain_text(SCRIPT_PAYLOAD)  # app.comment
    expect(detail.locator("table.attrs")).to_contain_text(IMG_PAYLOAD)  # user.id
    page = ui.open(f"#/runs/{runs.hostile}/state/0")
    added = page.locator(".diff-lines li.diff-add")  # step 0 added two paths to the input's state
    expect(added).to_have_count(2)
    expect(added.nth(1)).to_have_text("+ html = " + json.dumps(IMG_PAYLOAD))
    expect(page.locator(".tree-wrap")).to_contain_text(SCRIPT_PAYLOAD)
    # nothing ran: no marker set, no element made from a payload, the only script is the app's
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img[src=x], img[onerror]").count() == 0
    assert page.evaluate("[...document.scripts].map(s => s.src)") == [ui.base + "/ui/js/app.js"]
    ui.check()


def test_pages_are_served_with_a_strict_content_security_policy(col: CollectorProcess) -> None:
    for path in ("/", "/ui/js/app.js", "/docs"):
        r = httpx.get(col.url + path, timeout=30)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
        assert script_src.split() == ["script-src", "'self'"], csp
        assert "default-src 'self'" in csp and r.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(col.url + "/ui/js/app.js", timeout=30).headers["content-type"].startswith("text/javascript")
    assert httpx.get(col.url + "/redoc", timeout=30).status_code == 404
    assert httpx.get(col.url + "/ui/../api.py", timeout=30).status_code == 404


def test_api_docs_work_offline(ui: Watched) -> None:
    page = ui.page
    page.goto(ui.base + "/docs")
    expect(page.locator(".swagger-ui .title")).to_contain_text("flowscope collector")
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/runs/{run_id}/state/diff").first).to_be_visible()
    assert all(r.url.startswith(ui.base) for r in ui.requests)


# --- live -----------------------------------------------------------------------------


def test_a_live_run_updates_and_settles_without_a_reload(ui: Watched, col: CollectorProcess, fp: FakeProvider) -> None:
    flowscope.init(service_name="support", endpoint=col.url)
    live = LiveRun(fp, nodes=3).start()
    try:
        live.advance()
        col.wait_for_run(live.run_id)
        page = ui.open(f"#/runs/{live.run_id}")
        page.evaluate("window.__sameDocument = true")
        expect(page.locator("#run-status")).to_have_text("running")
        meter = page.locator("#live-cost")
        expect(meter).not_to_have_attribute("data-cost", "0")
        first = Decimal(meter.get_attribute("data-cost") or "0")
        assert first > 0
        expect(page.locator("#nodes-table tbody tr")).to_have_count(1)

        live.advance()
        second = first
        deadline = time.monotonic() + 30
        while second <= first and time.monotonic() < deadline:
            page.wait_for_timeout(100)
            second = Decimal(meter.get_attribute("data-cost") or "0")
        assert second > first
        assert meter.inner_text().startswith(f"${second}")
        expect(page.locator("#nodes-table tbody tr")).to_have_count(2)

        live.advance()
        live.finish()
    finally:
        if live.error is None:
            live.finish()
    expect(page.locator("#run-status")).to_have_text("ok", timeout=30_000)
    expect(page.locator("#live")).to_have_count(0)
    expect(page.locator(".settled")).to_have_text("Run finished: ok.")
    expect(page.locator("#nodes-table tbody tr")).to_have_count(3)
    s = api(col, f"/api/v1/runs/{live.run_id}")
    expect(stat(page, "cost").locator(".stat-value")).to_have_text(f"${s['cost_usd']}")
    assert Decimal(s["cost_usd"]) > second
    assert page.evaluate("window.__sameDocument") is True


# --- light, dark, narrow ---------------------------------------------------------------------


def _luminance(rgb: str) -> float:
    r, g, b = (int(x) for x in re.findall(r"\d+", rgb)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_light_and_dark(context_factory: Any, col: CollectorProcess, runs: Runs, scheme: str) -> None:
    w = watch(context_factory(color_scheme=scheme), col.url)
    page = w.open(f"#/runs/{runs.refund}")
    expect(page.locator("svg.graph")).to_be_visible()
    bg = _luminance(page.evaluate("getComputedStyle(document.documentElement).backgroundColor"))
    fg = _luminance(page.evaluate("getComputedStyle(document.querySelector('h1')).color"))
    assert (bg > 0.8 and fg < 0.3) if scheme == "light" else (bg < 0.2 and fg > 0.7)
    w.check()


def test_narrow_windows_do_not_overflow(context_factory: Any, col: CollectorProcess, runs: Runs) -> None:
    w = watch(context_factory(viewport={"width": 380, "height": 800}), col.url)
    for frag in ("#/runs", f"#/runs/{runs.refund}/step/2", f"#/runs/{runs.refund}/state/1",
                 f"#/compare/{runs.refund}/{runs.track}", "#/costs"):
        page = w.open(frag)
        page.wait_for_timeout(50)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 380, f"{frag} is {width}px wide in a 380px window"
    w.check()
