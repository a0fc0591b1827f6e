"""The run explorer with API keys: the page asks for a key once, sends it on every request
(the live stream included, in a header, never in a URL), and shows only that key's project."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

import flowscope
from flowscope.testing import FakeProvider, Reply
from tests._collector_kit import CollectorProcess
from tests.ui.conftest import Watched, chromium_missing, watch
from tests.ui.scenario import LiveRun

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or "")

SHOP = "shop-key-0123456789"
BILLING = "billing-key-0123456789"
INGEST_ONLY = "ingest-key-0123456789"


@pytest.fixture(scope="module")
def fp() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture(scope="module")
def col(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    keys = f"{SHOP}=shop,{BILLING}=billing,{INGEST_ONLY}=shop:ingest"
    proc = CollectorProcess(tmp_path_factory.mktemp("ui-auth") / "data", env={"FLOWSCOPE_API_KEYS": keys}).start()
    yield proc
    proc.stop()


def one_run(col: CollectorProcess, fp: FakeProvider, key: str, flow: str) -> str:
    flowscope.init(service_name=flow, endpoint=col.url, api_key=key)
    fp.script(Reply(text="ok", input_tokens=100, output_tokens=10, model="gpt-4o-mini-2024-07-18"))
    client = openai.OpenAI(base_url=fp.openai_base_url, api_key="sk-test", max_retries=0)
    with flowscope.run(flow) as run, flowscope.node("ask", type="llm"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    flowscope.force_flush()
    for _ in range(200):
        r = httpx.get(f"{col.url}/api/v1/runs/{run.id}", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        if r.status_code == 200 and r.json()["status"] == "ok":
            return run.id
        time.sleep(0.05)
    raise AssertionError(f"run {run.id} not stored")


@pytest.fixture(scope="module")
def runs(col: CollectorProcess, fp: FakeProvider) -> dict[str, str]:
    return {"shop": one_run(col, fp, SHOP, "shop-flow"), "billing": one_run(col, fp, BILLING, "billing-flow")}


@pytest.fixture()
def ui(context_factory: Any, col: CollectorProcess, runs: dict[str, str]) -> Iterator[Watched]:
    w = watch(context_factory(), col.url)
    yield w
    w.check(allow_http_errors=True)  # the first look, before a key is given, is a 401


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def sign_in(page: Any, key: str, remember: bool = False) -> None:
    expect(page.get_by_role("heading", name="API key required")).to_be_visible()
    page.fill("#api-key", key)
    if remember:
        page.check("#remember")
    page.get_by_role("button", name="Continue").click()


def test_static_files_are_public_and_data_is_not(col: CollectorProcess, runs: dict[str, str]) -> None:
    for path in ("/", "/ui/js/app.js", "/ui/app.css", "/ui/icon.svg", "/docs", "/docs/assets/swagger-ui-bundle.js"):
        assert httpx.get(col.url + path, timeout=30).status_code == 200, path
    for path in ("/api/v1/runs", f"/api/v1/runs/{runs['shop']}", f"/api/v1/runs/{runs['shop']}/stream", "/openapi.json"):
        assert httpx.get(col.url + path, timeout=30).status_code == 401, path


def test_the_page_asks_for_a_key_once_and_shows_only_its_project(ui: Watched, runs: dict[str, str]) -> None:
    page = ui.open("#/runs")
    sign_in(page, "not-a-key-at-all")
    expect(page.locator(".form-error").last).to_contain_text("missing or unknown API key")
    page.fill("#api-key", INGEST_ONLY)
    page.get_by_role("button", name="Continue").click()
    expect(page.locator(".form-error").last).to_contain_text("has no 'read' scope")

    page.fill("#api-key", SHOP)
    page.get_by_role("button", name="Continue").click()
    rows = page.locator("#runs-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("shop-flow")
    assert page.locator(f'tr[data-run="{runs["billing"]}"]').count() == 0

    # another project's run is not there for this key, even by its URL
    page.goto(f"{ui.base}/#/runs/{runs['billing']}")
    expect(page.get_by_role("heading", name="Run not found")).to_be_visible()

    # asked once: a new page in the same tab session reads with the stored key
    page.goto(f"{ui.base}/#/runs/{runs['shop']}")
    page.reload()
    expect(page.locator("h1")).to_have_text("shop-flow")
    api_requests = [r for r in ui.requests if "/api/" in r.url]
    assert api_requests and all(SHOP not in r.url for r in ui.requests)
    authed = [r for r in api_requests if r.headers.get("authorization") == f"Bearer {SHOP}"]
    assert len(authed) >= len(api_requests) - 3  # all but the first look and the two refused tries

    page.get_by_role("button", name="Forget API key").click()
    expect(page.get_by_role("heading", name="API key required")).to_be_visible()


def test_remembered_key_survives_a_new_tab(context_factory: Any, col: CollectorProcess, runs: dict[str, str]) -> None:
    ctx = context_factory()
    first = watch(ctx, col.url)
    sign_in(first.open("#/runs"), BILLING, remember=True)
    expect(first.page.locator("#runs-table tbody tr")).to_have_count(1)
    second = watch(ctx, col.url)
    page = second.open("#/runs")
    expect(page.locator("#runs-table tbody tr").first).to_contain_text("billing-flow")
    second.check()


def test_live_stream_and_docs_use_the_key_in_a_header(ui: Watched, col: CollectorProcess, fp: FakeProvider) -> None:
    flowscope.init(service_name="shop", endpoint=col.url, api_key=SHOP)
    live = LiveRun(fp, nodes=2).start()
    try:
        live.advance()
        page = ui.open("#/runs")
        sign_in(page, SHOP)
        expect(page.locator("#runs-table")).to_be_visible()
        page.goto(f"{ui.base}/#/runs/{live.run_id}")
        expect(page.locator("#run-status")).to_have_text("running")
        expect(page.locator("#live-cost")).not_to_have_attribute("data-cost", "0")
        assert Decimal(page.locator("#live-cost").get_attribute("data-cost") or "0") > 0
        live.advance()
    finally:
        live.finish()
    expect(page.locator("#run-status")).to_have_text("ok", timeout=30_000)
    streams = [r for r in ui.requests if r.url.split("?")[0].endswith("/stream")]
    assert streams and all(r.headers.get("authorization") == f"Bearer {SHOP}" for r in streams)

    page.goto(f"{ui.base}/docs")
    expect(page.locator(".swagger-ui .title")).to_contain_text("flowscope collector")
    assert not re.search(SHOP, " ".join(r.url for r in ui.requests))
