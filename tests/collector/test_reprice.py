"""``flowscope-collector reprice``: a price added or corrected later fixes stored history, counted once.

Spans go into a real collector over OTLP/HTTP, are priced (or not) at ingest,
then the collector is stopped and the real CLI entry point (a child process,
as a user runs it) reprices its chDB directory under an override file. Every
reader is then asked again through the API of a restarted collector: the run
summary, the runs list, the cost roll-ups (hourly table, edge hours from the
span table, per-run table, attribute maps) and the span details; the raw tables
must hold no extra row. Expected figures are written out from the prices in
the override file below, never taken from the catalog code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._collector_kit import CollectorProcess, chdb_query, otlp_body

ACME = "acme-reprice-model"  # in no catalog: unpriced at ingest
MINI = "gpt-4o-mini"  # the catalog's $0.15 / $0.60 per million at ingest

# $ per million tokens: ACME is added, gpt-4o-mini "corrected"
PRICES = {"models": [
    {"provider": "openai", "model": ACME, "input_mtok": "2.00", "output_mtok": "8.00"},
    {"provider": "openai", "model": MINI, "input_mtok": "0.30", "output_mtok": "1.20"},
]}


def _cost(inp: int, out: int, in_mtok: str, out_mtok: str) -> Decimal:
    return (inp * Decimal(in_mtok) + out * Decimal(out_mtok)) / 1_000_000


def _llm(model: str, inp: int, out: int) -> dict[str, str]:
    return {"flowscope.span.kind": "llm", "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": model, "gen_ai.usage.input_tokens": str(inp),
            "gen_ai.usage.output_tokens": str(out)}


def _send(c: CollectorProcess, run_id: str, model: str, inp: int, out: int, **extra: str) -> None:
    body = otlp_body(1, run_id=run_id, name="chat", attrs={**_llm(model, inp, out), **extra})
    r = httpx.post(c.url + "/v1/traces", content=body,
                   headers={"content-type": "application/x-protobuf"}, timeout=30)
    assert r.status_code == 200, r.text


def _cli(data: Path, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "flowscope_collector", "reprice", "--dsn", f"chdb://{data}", "--json", *args],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.fixture
def stored(tmp_path: Path):
    """Two runs stored by a collector that has since stopped: run a has 2 ACME calls and 1 gpt-4o-mini, b 1 ACME
    and 1 ACME call whose cost a router reported ($0.5: the provider's bill, never repriced)."""
    c = CollectorProcess(tmp_path / "data").start()
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    try:
        _send(c, a, ACME, 1000, 100)
        _send(c, a, ACME, 1000, 100)
        _send(c, a, MINI, 1000, 100)
        _send(c, b, ACME, 2000, 0)
        _send(c, b, ACME, 10, 10, **{"gen_ai.usage.cost": "0.5"})
        before_a = c.wait_for_run(a, spans=3)
        before_b = c.wait_for_run(b, spans=2)
    finally:
        c.stop()
    assert before_a["unpriced_calls"] == 2 and before_b["unpriced_calls"] == 1
    assert Decimal(before_a["cost_usd"]) == _cost(1000, 100, "0.15", "0.60")
    assert Decimal(before_b["cost_usd"]) == Decimal("0.5")
    pricing = tmp_path / "prices.json"
    pricing.write_text(json.dumps(PRICES))
    return c, a, b, pricing


def test_reprice_fixes_every_reader_once(stored) -> None:
    c, a, b, pricing = stored
    acme_a, acme_b, mini = _cost(1000, 100, "2", "8"), _cost(2000, 0, "2", "8"), _cost(1000, 100, "0.30", "1.20")
    old_mini = _cost(1000, 100, "0.15", "0.60")

    dry = _cli(c.data_dir, "--since", "1d", "--pricing", str(pricing), "--dry-run")
    assert (dry["examined"], dry["repriced"], dry["newly_priced"]) == (4, 4, 3)
    assert Decimal(dry["cost_before_usd"]) == old_mini
    assert Decimal(dry["cost_after_usd"]) == 2 * acme_a + acme_b + mini

    # one model first, then the rest: the second pass must not count the first one's spans again
    only = _cli(c.data_dir, "--since", "1d", "--pricing", str(pricing), "--model", "gpt-4o*")
    assert (only["examined"], only["repriced"], only["models"]) == (1, 1, {MINI: 1})
    rest = _cli(c.data_dir, "--since", "1d", "--pricing", str(pricing))
    assert (rest["examined"], rest["repriced"], rest["newly_priced"], rest["unchanged"]) == (4, 3, 3, 1)
    again = _cli(c.data_dir, "--since", "1d", "--pricing", str(pricing))
    assert (again["repriced"], again["unchanged"]) == (0, 4)

    total = 2 * acme_a + acme_b + mini + Decimal("0.5")
    rows = chdb_query(c.data_dir, "SELECT (SELECT count() FROM flowscope_spans), (SELECT count() FROM otel_traces), "
                      "(SELECT toString(sum(CostUsd)) FROM flowscope_spans), "
                      "(SELECT groupArray(DISTINCT PricingVersion) FROM flowscope_spans WHERE CostSource != 'provider'), "
                      "(SELECT countIf(CostSource = 'unpriced') FROM flowscope_spans)")
    spans, traces, stored_total, versions, unpriced = rows[0]
    assert (spans, traces, Decimal(stored_total), unpriced) == (5, 5, total, 0)
    assert len(versions) == 1 and "+override:" in versions[0]  # every span names the catalog that priced it

    c.start()
    try:
        for run_id, cost in ((a, 2 * acme_a + mini), (b, acme_b + Decimal("0.5"))):
            summary = c.get(f"/api/v1/runs/{run_id}").json()
            assert Decimal(summary["cost_usd"]) == cost and summary["unpriced_calls"] == 0
            assert summary["cost_complete"] is True
        listed = {r["run_id"]: r for r in c.get("/api/v1/runs").json()["runs"]}
        assert Decimal(listed[a]["cost_usd"]) == 2 * acme_a + mini and listed[a]["unpriced_calls"] == 0
        assert Decimal(listed[b]["cost_usd"]) == acme_b + Decimal("0.5") and listed[b]["cost_complete"] is True
        assert [r["run_id"] for r in c.get("/api/v1/runs", params={"sort": "cost"}).json()["runs"]] == [b, a]

        now = datetime.now(timezone.utc)
        windows = [{}, {"since": (now - timedelta(minutes=30)).isoformat(),
                        "until": (now + timedelta(minutes=90)).isoformat()}]
        for window in windows:  # the hourly roll-up alone, and with its edge hours read from the spans
            report = c.get("/api/v1/costs", params={"group_by": "model", **window}).json()
            groups = {g["key"]: g for g in report["groups"]}
            assert Decimal(groups[ACME]["cost_usd"]) == 2 * acme_a + acme_b + Decimal("0.5"), window
            assert groups[ACME]["unpriced_calls"] == 0 and groups[ACME]["llm_calls"] == 4
            assert Decimal(groups[MINI]["cost_usd"]) == mini
            assert Decimal(report["total_usd"]) == total and report["cost_complete"] is True
        by_flow = c.get("/api/v1/costs", params={"group_by": "flow"}).json()
        assert Decimal(by_flow["total_usd"]) == total and by_flow["unpriced_calls"] == 0
        by_attr = c.get("/api/v1/costs", params={"group_by": "attr:gen_ai.request.model"}).json()
        assert {g["key"]: Decimal(g["cost_usd"]) for g in by_attr["groups"]} == {
            ACME: 2 * acme_a + acme_b + Decimal("0.5"), MINI: mini}
        tree = c.get(f"/api/v1/runs/{b}/spans").json()
        text = json.dumps(tree)
        assert f'"flowscope.cost.usd": "{acme_b}"' in text and '"flowscope.cost.source": "computed"' in text
    finally:
        c.stop()


def _groups(report: dict) -> dict[str, tuple[Decimal, int, int]]:
    return {g["key"]: (Decimal(g["cost_usd"]), g["llm_calls"], g["unpriced_calls"]) for g in report["groups"]}


def test_costs_under_a_chosen_catalog_show_what_reprice_stores(stored) -> None:
    """``POST /costs/preview`` (a pricing document) and ``GET /costs?pricing=current`` write nothing, and their
    figures are exactly those the reprice command then stores, for every grouping."""
    c, _, _, pricing = stored
    acme_a, acme_b, mini = _cost(1000, 100, "2", "8"), _cost(2000, 0, "2", "8"), _cost(1000, 100, "0.30", "1.20")
    old_mini = _cost(1000, 100, "0.15", "0.60")
    total = 2 * acme_a + acme_b + mini + Decimal("0.5")
    groupings = ("model", "provider", "service", "node", "day", "flow", "attr:gen_ai.request.model")
    c.start()
    try:
        as_stored = c.get("/api/v1/costs", params={"group_by": "model"}).json()
        assert as_stored["pricing_version"] is None and as_stored["unpriced_calls"] == 3
        previews = {}
        for group_by in groupings:
            r = httpx.post(c.url + "/api/v1/costs/preview", json={"group_by": group_by, "pricing": PRICES},
                           timeout=60)
            assert r.status_code == 200, r.text
            previews[group_by] = report = r.json()
            assert "+override:" in report["pricing_version"], group_by
            assert Decimal(report["total_usd"]) == total and report["cost_complete"] is True, group_by
            assert report["llm_calls"] == 5, group_by
        assert _groups(previews["model"]) == {ACME: (2 * acme_a + acme_b + Decimal("0.5"), 4, 0), MINI: (mini, 1, 0)}
        # the same through the CLI's entry point, the pricing file by its path
        cli = subprocess.run([sys.executable, "-m", "flowscope", "costs", "--url", c.url, "--pricing", str(pricing)],
                             capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        assert f"total ${total}" in cli.stdout and "priced again under genai-prices" in cli.stdout, cli.stdout
        # the collector's own catalog has no ACME price: those calls stay unpriced, the provider's $0.5 stays
        current = c.get("/api/v1/costs", params={"group_by": "model", "pricing": "current"}).json()
        assert _groups(current) == {ACME: (Decimal("0.5"), 4, 3), MINI: (old_mini, 1, 0)}
        assert current["cost_complete"] is False and current["pricing_version"]
        # a bad document: 422 naming what is wrong; nothing was written by any of the above
        bad = httpx.post(c.url + "/api/v1/costs/preview",
                         json={"pricing": {"models": [{"model": "x", "input_mtok": "cheap", "output_mtok": "1"}]}},
                         timeout=30)
        assert bad.status_code == 422 and "input_mtok" in bad.json()["error"], bad.text
        assert c.get("/api/v1/costs", params={"group_by": "model"}).json() == as_stored
    finally:
        c.stop()
    _cli(c.data_dir, "--since", "1d", "--pricing", str(pricing))
    c.start()
    try:
        for group_by in groupings:
            after = c.get("/api/v1/costs", params={"group_by": group_by}).json()
            assert _groups(after) == _groups(previews[group_by]), group_by
    finally:
        c.stop()


def test_costs_under_another_catalog_refuse_too_large_a_range(tmp_path: Path) -> None:
    c = CollectorProcess(tmp_path / "data", env={"FLOWSCOPE_MAX_PREVIEW_CALLS": "1"}).start()
    try:
        run = uuid.uuid4().hex
        _send(c, run, MINI, 10, 10)
        _send(c, run, MINI, 10, 10)
        c.wait_for_run(run, spans=2)
        r = httpx.get(c.url + "/api/v1/costs", params={"pricing": "current"}, timeout=30)
        assert r.status_code == 422 and "2 LLM calls" in r.json()["error"], r.text
        empty = httpx.get(c.url + "/api/v1/costs", params={"pricing": "current", "until": "2000-01-01T00:00:00Z"},
                          timeout=30)
        assert empty.status_code == 200 and empty.json()["llm_calls"] == 0  # the limit counts the range's calls
        assert httpx.get(c.url + "/api/v1/costs", timeout=30).status_code == 200  # as stored: no limit
    finally:
        c.stop()


def test_reprice_through_a_running_collector_for_an_operator_key(tmp_path: Path) -> None:
    """An embedded store allows one process: ``POST /api/v1/reprice`` reprices it without stopping the collector,
    for an operator key only, counted once when repeated."""
    key, op = "k-reprice-project", "k-reprice-operator"
    c = CollectorProcess(tmp_path / "data", env={"FLOWSCOPE_API_KEYS": f"{key}=acme,{op}=ops:operator"})
    c.start()

    def call(method: str, path: str, who: str, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return httpx.request(method, c.url + path, headers={"authorization": f"Bearer {who}", **(headers or {})},
                             timeout=120, **kw)

    try:
        run = uuid.uuid4().hex
        for model, inp, out in ((ACME, 1000, 100), (MINI, 1000, 100)):
            body = otlp_body(1, run_id=run, name="chat", attrs=_llm(model, inp, out))
            r = call("POST", "/v1/traces", key, content=body, headers={"content-type": "application/x-protobuf"})
            assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30
        while call("GET", f"/api/v1/runs/{run}", key).json().get("llm_calls") != 2:
            assert time.monotonic() < deadline, "the run never arrived"
            time.sleep(0.2)
        request = {"since": "1d", "pricing": PRICES}
        assert call("POST", "/api/v1/reprice", key, json=request).status_code == 403  # a project's key
        dry = call("POST", "/api/v1/reprice", op, json={**request, "dry_run": True}).json()
        assert (dry["examined"], dry["repriced"], dry["newly_priced"]) == (2, 2, 1)
        assert call("GET", f"/api/v1/runs/{run}", key).json()["unpriced_calls"] == 1  # a dry run wrote nothing
        done = call("POST", "/api/v1/reprice", op, json=request)
        assert done.status_code == 200, done.text
        assert Decimal(done.json()["cost_after_usd"]) == _cost(1000, 100, "2", "8") + _cost(1000, 100, "0.30", "1.20")
        again = call("POST", "/api/v1/reprice", op, json=request).json()
        assert (again["repriced"], again["unchanged"]) == (0, 2)
        expected = _cost(1000, 100, "2", "8") + _cost(1000, 100, "0.30", "1.20")
        summary = call("GET", f"/api/v1/runs/{run}", key).json()
        assert Decimal(summary["cost_usd"]) == expected and summary["cost_complete"] is True
        (listed,) = [r for r in call("GET", "/api/v1/runs", key).json()["runs"] if r["run_id"] == run]
        assert Decimal(listed["cost_usd"]) == expected
        assert Decimal(call("GET", "/api/v1/costs", key).json()["total_usd"]) == expected
        bad = call("POST", "/api/v1/reprice", op, json={"since": "1d", "pricing": {"models": [{"model": "x"}]}})
        assert bad.status_code == 422 and "pricing" in bad.json()["error"], bad.text
        assert call("POST", "/api/v1/reprice", op, json={"since": "soon"}).status_code == 422
    finally:
        c.stop()


def test_reprice_refuses_a_bad_pricing_file(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "flowscope_collector", "reprice", "--dsn", f"chdb://{tmp_path}/db", "--since", "1d",
         "--pricing", str(tmp_path / "missing.json")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2 and "missing.json" in out.stderr


_MIGRATION_CHILD = r"""
import json, sys
import clickhouse_connect
from flowscope_collector.store.schema import SchemaOptions, load_migrations

c = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
migs = load_migrations(SchemaOptions())

def span(run, span_id, source, cost):
    attrs = {"flowscope.run.id": run, "flowscope.span.kind": "llm", "gen_ai.request.model": "m",
             "gen_ai.provider.name": "openai", "flowscope.cost.source": source, "flowscope.cost.usd": cost}
    c.command("INSERT INTO otel_traces (Timestamp, TraceId, SpanId, SpanName, ServiceName, SpanAttributes) "
              "VALUES (now64(9), {t:String}, {s:String}, 'chat', 'svc', mapFromArrays({k:Array(String)}, {v:Array(String)}))",
              parameters={"t": run * 4, "s": span_id, "k": list(attrs), "v": list(attrs.values())})

def counts():
    runs = c.query("SELECT RunId, sum(PartialCalls), sum(UnpricedCalls), toString(sum(CostUsd)), "
                   "toUnixTimestamp64Nano(min(Start)) = (SELECT toUnixTimestamp64Nano(min(Timestamp)) "
                   "FROM flowscope_spans AS s WHERE s.RunId = flowscope_runs.RunId) "
                   "FROM flowscope_runs GROUP BY RunId ORDER BY RunId").result_rows
    hourly = c.query("SELECT sum(PartialCalls), sum(LlmCalls) FROM flowscope_costs_hourly").result_rows
    return [list(r) for r in runs] + [list(r) for r in hourly]

for m in migs:
    if m.version <= 8:
        for stmt in m.statements:
            c.command(stmt)
span("r1", "s1", "partial", "0.5")
span("r1", "s2", "computed", "0.25")
span("r2", "s3", "partial", "1")
(m9,) = [m for m in migs if m.version == 9]
for stmt in m9.statements:
    c.command(stmt)
before = counts()
for stmt in m9.statements:  # run again, as after an interruption: nothing counted twice
    c.command(stmt)
span("r1", "s4", "partial", "2")  # after the migration: counted by the view
print(json.dumps([before, counts()], default=str))
"""


def test_migration_009_counts_partially_priced_calls_already_stored(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", _MIGRATION_CHILD, str(tmp_path / "db")], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    before, after = json.loads(out.stdout.strip().splitlines()[-1])
    # per run: partial, unpriced, cost, the correction row kept the run's start
    assert before == [["r1", 1, 0, "0.75", True], ["r2", 1, 0, "1", True], [2, 3]]
    assert after == [["r1", 2, 0, "2.75", True], ["r2", 1, 0, "1", True], [3, 4]]


_INTERRUPTED_CHILD = r"""
import json, sys
from datetime import datetime, timedelta, timezone
from flowscope_collector.store.connection import connect, parse_dsn
from flowscope_collector.store.reprice import reprice
from flowscope_collector.store.schema import SchemaOptions, migrate
from flowscope.core.pricing import PricingCatalog

client = connect(parse_dsn("chdb://" + sys.argv[1]))
options = SchemaOptions()
migrate(client, options)
for i, (run, inp, out) in enumerate((("r1", 1000, 100), ("r1", 1000, 100), ("r2", 2000, 0))):
    attrs = {"flowscope.run.id": run, "flowscope.span.kind": "llm", "gen_ai.request.model": "acme-reprice-model",
             "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": str(inp),
             "gen_ai.usage.output_tokens": str(out), "flowscope.cost.source": "unpriced"}
    client.command("INSERT INTO otel_traces (Timestamp, TraceId, SpanId, SpanName, ServiceName, SpanAttributes) "
                   "VALUES (now64(9), {t:String}, {s:String}, 'chat', 'svc', "
                   "mapFromArrays({k:Array(String)}, {v:Array(String)}))",
                   parameters={"t": run * 16, "s": f"s{i}", "k": list(attrs), "v": list(attrs.values())})
catalog = PricingCatalog(json.loads(sys.argv[2]))


class Interrupted(Exception):
    pass


class StopsAtTheFirstMutation:
    # the process dies after the correction rows are in, before any span row is rewritten
    def __getattr__(self, name):
        return getattr(client, name)

    def command(self, sql, *args, **kwargs):
        if sql.startswith("ALTER TABLE"):
            raise Interrupted()
        return client.command(sql, *args, **kwargs)


since = datetime.now(timezone.utc) - timedelta(days=1)
try:
    reprice(StopsAtTheFirstMutation(), options, catalog, since=since)
except Interrupted:
    pass
first = reprice(client, options, catalog, since=since).as_dict()
second = reprice(client, options, catalog, since=since).as_dict()
runs = client.query("SELECT RunId, toString(sum(CostUsd)), sum(UnpricedCalls) FROM flowscope_runs "
                    "GROUP BY RunId ORDER BY RunId").result_rows
hourly = client.query("SELECT toString(sum(CostUsd)), sum(UnpricedCalls), sum(LlmCalls) "
                      "FROM flowscope_costs_hourly").result_rows
spans = client.query("SELECT toString(sum(CostUsd)), count() FROM flowscope_spans").result_rows
print(json.dumps({"first": first, "second": second, "runs": [list(r) for r in runs],
                  "hourly": [list(r) for r in hourly], "spans": [list(r) for r in spans]}, default=str))
"""


def test_an_interrupted_reprice_run_again_counts_once(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", _INTERRUPTED_CHILD, str(tmp_path / "db"), json.dumps(PRICES)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    acme_1, acme_2 = _cost(1000, 100, "2", "8"), _cost(2000, 0, "2", "8")
    assert got["first"]["repriced"] == 3 and got["second"]["repriced"] == 0
    assert [[r, Decimal(c), u] for r, c, u in got["runs"]] == [["r1", 2 * acme_1, 0], ["r2", acme_2, 0]]
    ((cost, unpriced, calls),) = got["hourly"]
    assert (Decimal(cost), unpriced, calls) == (2 * acme_1 + acme_2, 0, 3)
    assert [Decimal(got["spans"][0][0]), got["spans"][0][1]] == [2 * acme_1 + acme_2, 3]


_PARTIAL_CHILD = r"""
import json, sys
from datetime import datetime, timedelta, timezone
from flowscope_collector.store.connection import connect, parse_dsn
from flowscope_collector.store.reprice import reprice
from flowscope_collector.store.schema import SchemaOptions, migrate
from flowscope.core.pricing import PricingCatalog

client = connect(parse_dsn("chdb://" + sys.argv[1]))
options = SchemaOptions()
migrate(client, options)
attrs = {"flowscope.run.id": "r1", "flowscope.span.kind": "llm", "gen_ai.request.model": "gpt-4.1",
         "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": "1000", "gen_ai.usage.output_tokens": "100",
         "flowscope.response.service_tier": "priority", "flowscope.cost.source": "computed",
         "flowscope.cost.usd": "0.01"}
client.command("INSERT INTO otel_traces (Timestamp, TraceId, SpanId, SpanName, ServiceName, SpanAttributes) "
               "VALUES (now64(9), {t:String}, 's1', 'chat', 'svc', mapFromArrays({k:Array(String)}, {v:Array(String)}))",
               parameters={"t": "r1" * 16, "k": list(attrs), "v": list(attrs.values())})
catalog = PricingCatalog(json.loads(sys.argv[2]))
report = reprice(client, options, catalog, since=datetime.now(timezone.utc) - timedelta(days=1)).as_dict()
runs = client.query("SELECT toString(sum(CostUsd)), sum(PartialCalls), sum(UnpricedCalls) FROM flowscope_runs"
                    ).result_rows
hourly = client.query("SELECT toString(sum(CostUsd)), sum(PartialCalls) FROM flowscope_costs_hourly").result_rows
attrs = client.query("SELECT SpanAttributes['flowscope.cost.unpriced_parts'], SpanAttributes['flowscope.cost.source'] "
                     "FROM otel_traces").result_rows
print(json.dumps({"report": report, "runs": [list(r) for r in runs], "hourly": [list(r) for r in hourly],
                  "attrs": [list(r) for r in attrs]}, default=str))
"""


def test_reprice_moves_the_partial_count_with_the_span(tmp_path: Path) -> None:
    """A priority-tier call priced by the catalog, repriced under a contract price that has no priority rate:
    partial now (the list rate, a lower bound), and the run and hourly partial counts follow."""
    prices = {"models": [{"provider": "openai", "model": "gpt-4.1", "input_mtok": "1.50", "output_mtok": "6"}]}
    out = subprocess.run([sys.executable, "-c", _PARTIAL_CHILD, str(tmp_path / "db"), json.dumps(prices)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    expected = _cost(1000, 100, "1.50", "6")
    assert got["report"]["repriced"] == 1
    ((cost, partial, unpriced),) = got["runs"]
    assert (Decimal(cost), partial, unpriced) == (expected, 1, 0)
    ((hourly_cost, hourly_partial),) = got["hourly"]
    assert (Decimal(hourly_cost), hourly_partial) == (expected, 1)
    assert got["attrs"] == [["service_tier:priority", "partial"]]
