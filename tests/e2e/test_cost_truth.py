"""Cost truth (issue 15): no silent $0 anywhere.

A bad pricing file stops ``init`` and the collector with the file and the reason;
money is always plain decimal; an unpriced call is visibly so in the API, the CLI
and pandas. Expected figures are written out here, never taken from the catalog.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import flowscope
from flowscope import cli
from flowscope.client import Table
from flowscope.core import pricing, semconv
from flowscope.core.pricing import PricingFileError
from flowscope.core.pricing import catalog as catalog_module
from flowscope.testing import Reply

# --- a bad pricing file fails loudly ------------------------------------------------------


@pytest.fixture
def fresh_pricing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(pricing.PRICING_FILE_ENV, raising=False)
    previous = catalog_module._default
    yield
    catalog_module._default = previous


def _init(**kwargs: Any) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    flowscope.init(service_name="tests", exporter=InMemorySpanExporter(), instrument=False, **kwargs)


def test_missing_pricing_file_in_env_stops_init(tmp_path: Path, monkeypatch, fresh_pricing) -> None:
    missing = tmp_path / "prices-typo.json"
    monkeypatch.setenv(pricing.PRICING_FILE_ENV, str(missing))
    with pytest.raises(PricingFileError, match="cannot read") as excinfo:
        _init()
    assert str(missing) in str(excinfo.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "invalid JSON"),
        ('{"models": [{"model": "m", "input_mtok": "x", "output_mtok": "1"}]}', "input_mtok"),
        ('{"modles": []}', "unknown top-level key"),
    ],
)
def test_invalid_pricing_file_stops_init(tmp_path: Path, fresh_pricing, content: str, reason: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(PricingFileError, match=reason) as excinfo:
        _init(pricing=str(path))
    assert str(path) in str(excinfo.value)


def test_invalid_pricing_file_in_env_stops_init(tmp_path: Path, monkeypatch, fresh_pricing) -> None:
    path = tmp_path / "prices.json"
    path.write_text("[]")
    monkeypatch.setenv(pricing.PRICING_FILE_ENV, str(path))
    with pytest.raises(PricingFileError, match="top level") as excinfo:
        _init()
    assert str(path) in str(excinfo.value)


def test_collector_refuses_to_start_on_a_bad_pricing_file(
    tmp_path: Path, monkeypatch, fresh_pricing, capsys
) -> None:
    from flowscope_collector import cli as collector_cli

    missing = tmp_path / "nope.json"
    monkeypatch.setenv(pricing.PRICING_FILE_ENV, str(missing))
    catalog_module._default = None
    assert collector_cli.main(["serve", "--dsn", f"chdb://{tmp_path}/db", "--grpc-port", "0"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "cannot read" in err


def test_ingest_marks_spans_unpriced_with_the_pricing_file_error(tmp_path: Path, monkeypatch, fresh_pricing,
                                                                 caplog) -> None:
    from flowscope.core.normalize import normalize_attributes

    monkeypatch.setenv(pricing.PRICING_FILE_ENV, str(tmp_path / "nope.json"))
    catalog_module._default = None
    span = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": "10", "gen_ai.usage.output_tokens": "2"}
    with caplog.at_level(logging.ERROR, logger="flowscope"):
        normalize_attributes(span)
    assert span[semconv.COST_SOURCE] == "unpriced" and semconv.COST_USD not in span
    assert "nope.json" in span[semconv.PRICING_ERROR] and "cannot read" in span[semconv.PRICING_ERROR]
    assert "nope.json" in caplog.text


def test_sdk_without_init_says_why_calls_are_unpriced(cap, fake_provider, tmp_path, monkeypatch, fresh_pricing,
                                                       caplog) -> None:
    import openai

    from tests._llm_kit import MSGS, OPENAI_MODEL, attrs

    monkeypatch.setenv(pricing.PRICING_FILE_ENV, str(tmp_path / "gone.json"))
    catalog_module._default = None  # as in a process that never called init() with the file set
    fake_provider.script(Reply(text="a", input_tokens=10, output_tokens=2))
    with caplog.at_level(logging.ERROR, logger="flowscope"):
        openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k").chat.completions.create(
            model=OPENAI_MODEL, messages=MSGS)
    span = attrs(cap.one_llm())
    assert span[semconv.COST_SOURCE] == "unpriced" and semconv.COST_USD not in span
    assert "gone.json" in span[semconv.PRICING_ERROR]
    assert "gone.json" in caplog.text


# --- the CLI: plain decimals, and `unpriced`, never $0 --------------------------------------


class _FakeClient:
    def __init__(self, groups: list[dict[str, Any]], **meta: Any) -> None:
        self._groups = groups
        self._meta = meta

    def costs(self, group_by: str, since: Any = None, until: Any = None, pricing: Any = "stored") -> Table:
        return Table([dict(g) for g in self._groups], group_by=group_by, **self._meta)


def _cli(client: Any, *argv: str) -> str:
    out = io.StringIO()
    args = cli.build_parser().parse_args(list(argv))
    assert cli._run(args, client, out) == 0
    return out.getvalue()


def _group(key: str, cost: str, unpriced: int, calls: int = 1) -> dict[str, Any]:
    return {"key": key, "provider": "openai", "llm_calls": calls, "input_tokens": 1, "cached_input_tokens": 0,
            "cache_write_input_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0,
            "unpriced_calls": unpriced, "cost_complete": unpriced == 0,
            "cost_usd": Decimal(cost)}


def test_cli_money_is_plain_decimal_and_unpriced_is_not_zero() -> None:
    client = _FakeClient(
        [_group("tiny-model", "0.00000004", 0), _group("acme-private", "0", 2, calls=2)],
        total_usd=Decimal("0.00000004"), llm_calls=3, unpriced_calls=2,
        cost_complete=False, since=None, until=None,
    )
    text = _cli(client, "costs")
    assert "E-" not in text
    assert "$0.00000004" in text
    row = next(line for line in text.splitlines() if line.startswith("acme-private"))
    assert "unpriced" in row and "$0" not in row
    total = text.strip().splitlines()[-1]
    assert "$0.00000004" in total and "2 unpriced" in total


def test_cli_json_keeps_cost_complete() -> None:
    client = _FakeClient([_group("acme-private", "0", 1)], total_usd=Decimal("0"), llm_calls=1, unpriced_calls=1,
                         cost_complete=False, since=None, until=None)
    body = json.loads(_cli(client, "costs", "--json"))
    assert body["cost_complete"] is False and body["unpriced_calls"] == 1
    assert body["groups"][0]["cost_complete"] is False


def test_cell_formats_every_decimal_plainly() -> None:
    assert cli._cell(Decimal("4E-8"), "cost_usd") == "$0.00000004"
    assert cli._cell(Decimal("1.2300"), "cost_usd") == "$1.23"
    assert cli._cell(None, "cost_usd") == "unpriced"


# --- the API and pandas: cost_complete next to every total that includes an unpriced call --


def test_api_marks_totals_with_unpriced_calls_incomplete(traced, fake_provider) -> None:
    import openai

    from flowscope.client import Client
    from tests._llm_kit import GPT_4O_MINI, MSGS, OPENAI_MODEL

    flow = "cost-complete-flow"
    oai = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    with flowscope.run(flow) as run:
        fake_provider.script(Reply(text="a", input_tokens=1000, output_tokens=100))
        oai.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
        oai.chat.completions.create(model="acme-never-priced-model", messages=MSGS)
    with flowscope.run(flow) as priced_run:
        fake_provider.script(Reply(text="b", input_tokens=10, output_tokens=1))
        oai.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    assert flowscope.force_flush()
    summary = traced.wait_for_run(run.id, spans=3)
    assert summary["unpriced_calls"] == 1 and summary["cost_complete"] is False
    assert Decimal(summary["cost_usd"]) == (1000 * Decimal("0.15") + 100 * Decimal("0.60")) / 1_000_000
    by_model = {m["model"]: m for m in summary["by_model"]}
    assert by_model["acme-never-priced-model"]["cost_complete"] is False
    assert all(m["cost_complete"] for name, m in by_model.items() if name != "acme-never-priced-model")
    assert traced.wait_for_run(priced_run.id, spans=2)["cost_complete"] is True

    runs = traced.get("/api/v1/runs", params={"flow": flow}).json()["runs"]
    assert {r["run_id"]: r["cost_complete"] for r in runs} == {run.id: False, priced_run.id: True}

    report = traced.get("/api/v1/costs", params={"group_by": "model"}).json()
    assert report["unpriced_calls"] >= 1 and report["cost_complete"] is False
    groups = {g["key"]: g for g in report["groups"]}
    assert groups["acme-never-priced-model"]["cost_complete"] is False
    assert groups["acme-never-priced-model"]["unpriced_calls"] == groups["acme-never-priced-model"]["llm_calls"]

    table = Client(traced.url).costs("model")
    assert table.cost_complete is False and table.unpriced_calls >= 1
    pd = pytest.importorskip("pandas")
    df = table.to_pandas()
    assert isinstance(df, pd.DataFrame)
    row = df[df["key"] == "acme-never-priced-model"].iloc[0]
    assert not bool(row["cost_complete"]) and int(row["unpriced_calls"]) >= 1
    del GPT_4O_MINI


def test_run_summary_counts_partially_priced_calls(traced, fake_provider) -> None:
    import anthropic

    from tests._llm_kit import ANTHROPIC_MODEL, MSGS

    ant = anthropic.Anthropic(base_url=fake_provider.anthropic_base_url, api_key="k")
    with flowscope.run("partial-flow") as run:
        fake_provider.script(Reply(text="a", input_tokens=1000, output_tokens=100, service_tier="priority"))
        ant.messages.create(model=ANTHROPIC_MODEL, max_tokens=200, messages=MSGS)
    assert flowscope.force_flush()
    summary = traced.wait_for_run(run.id, spans=2)
    assert summary["partially_priced_calls"] == 1 and summary["unpriced_calls"] == 0
    assert summary["cost_complete"] is False
    assert summary["by_model"][0]["partially_priced_calls"] == 1 and summary["by_model"][0]["cost_complete"] is False
    # the part that has a price is there: Claude 3.5 Haiku at $0.80 / $4 per million
    assert Decimal(summary["cost_usd"]) == (1000 * Decimal("0.80") + 100 * Decimal("4")) / 1_000_000


def test_runs_list_and_cost_totals_count_partially_priced_calls(traced, fake_provider) -> None:
    """A call priced but for a part is counted next to every total that includes it, not only in the summary."""
    import anthropic

    from flowscope.client import Client
    from tests._llm_kit import ANTHROPIC_MODEL, MSGS

    flow = "partial-list-flow"
    ant = anthropic.Anthropic(base_url=fake_provider.anthropic_base_url, api_key="k")
    with flowscope.run(flow) as run:
        fake_provider.script(Reply(text="a", input_tokens=1000, output_tokens=100, service_tier="priority"))
        ant.messages.create(model=ANTHROPIC_MODEL, max_tokens=200, messages=MSGS)
        fake_provider.script(Reply(text="b", input_tokens=10, output_tokens=1))
        ant.messages.create(model=ANTHROPIC_MODEL, max_tokens=200, messages=MSGS)
    assert flowscope.force_flush()
    traced.wait_for_run(run.id, spans=3)
    # Claude 3.5 Haiku at $0.80 / $4 per million: the priority tier has no price, the standard rates are a lower bound
    expected = (1010 * Decimal("0.80") + 101 * Decimal("4")) / 1_000_000

    (listed,) = traced.get("/api/v1/runs", params={"flow": flow}).json()["runs"]
    assert listed["partially_priced_calls"] == 1 and listed["unpriced_calls"] == 0
    assert listed["cost_complete"] is False and Decimal(listed["cost_usd"]) == expected

    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    for params in ({"group_by": "flow"}, {"group_by": "model"},
                   {"group_by": "model", "since": (now - timedelta(minutes=20)).isoformat(),
                    "until": (now + timedelta(minutes=70)).isoformat()},
                   {"group_by": "attr:gen_ai.provider.name"}):
        report = traced.get("/api/v1/costs", params=params).json()
        assert report["partially_priced_calls"] >= 1 and report["cost_complete"] is False, params
        if params["group_by"] == "flow":
            group = next(g for g in report["groups"] if g["key"] == flow)
            assert group["partially_priced_calls"] == 1 and group["cost_complete"] is False
            assert Decimal(group["cost_usd"]) == expected
        elif params["group_by"] == "model":
            group = next(g for g in report["groups"] if g["key"] == ANTHROPIC_MODEL)
            assert group["partially_priced_calls"] >= 1 and group["cost_complete"] is False

    table = Client(traced.url).costs("flow")
    assert table.partially_priced_calls >= 1 and table.cost_complete is False
    pytest.importorskip("pandas")
    row = table.to_pandas()
    row = row[row["key"] == flow].iloc[0]
    assert int(row["partially_priced_calls"]) == 1 and not bool(row["cost_complete"])


def test_cli_says_partial_next_to_a_cost_that_is_a_lower_bound() -> None:
    group = {**_group("claude", "0.0012", 0), "partially_priced_calls": 1, "cost_complete": False}
    client = _FakeClient([group], total_usd=Decimal("0.0012"), llm_calls=1, unpriced_calls=0,
                         partially_priced_calls=1, cost_complete=False, since=None, until=None)
    text = _cli(client, "costs")
    row = next(line for line in text.splitlines() if line.startswith("claude"))
    assert "$0.0012 (1 partial)" in row
    assert "1 partially priced" in text.strip().splitlines()[-1]
