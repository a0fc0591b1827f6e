"""flowscope.Client against the real collector: every method, Decimal money, pandas frames."""

from __future__ import annotations

import uuid
from decimal import Decimal

import openai
import pandas as pd
import pytest

import flowscope
from flowscope.testing import Reply


@pytest.fixture()
def recorded(traced, fake_provider) -> tuple[str, str]:
    flow = f"client-flow-{uuid.uuid4().hex[:6]}"
    fake_provider.script(Reply(text="x", input_tokens=1000, output_tokens=100, model="gpt-4o-mini-2024-07-18"))
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")
    with flowscope.run(flow, input={"q": "hi"}) as run:
        with flowscope.node("ask"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
            flowscope.record_state("answer", "x")
        with flowscope.node("done"):
            flowscope.record_state("q", op="delete")
    flowscope.force_flush()
    traced.wait_for_run(run.id, spans=4)
    return flow, run.id


def test_client_mirrors_the_api(traced, recorded) -> None:
    flow, run_id = recorded
    with flowscope.Client(traced.url) as fs:
        s = fs.run(run_id)
        assert isinstance(s["cost_usd"], Decimal) and s["cost_usd"] == Decimal("0.00021")
        assert isinstance(s["by_model"][0]["cost_usd"], Decimal)
        nodes = fs.nodes(run_id)
        assert [n["name"] for n in nodes] == ["ask", "done"]
        df = nodes.to_pandas()
        assert isinstance(df, pd.DataFrame) and list(df["name"]) == ["ask", "done"]
        assert df["cost_usd"].sum() == Decimal("0.00021") and str(df["start"].dt.tz) == "UTC"
        # Decimal columns are object columns, which plotting refuses: a float view for that
        assert str(nodes.to_pandas(money="float")["cost_usd"].dtype) == "float64"
        assert fs.state(run_id, -1) == {"q": "hi"}
        assert fs.state(run_id, 0) == {"q": "hi", "answer": "x"}
        assert fs.state_diff(run_id, 0, 1)["removed"] == {"q": "hi"}
        assert fs.graph(run_id).startswith("flowchart TD")
        assert "digraph" in fs.graph(run_id, format="dot")
        assert fs.spans(run_id)["spans"] == 4
        page = fs.runs(flow=flow, since="1h")
        assert [r["run_id"] for r in page] == [run_id] and page.next_cursor is None
        assert [r["run_id"] for r in fs.iter_runs(flow=flow, page_size=1)] == [run_id]
        costs = fs.costs(group_by="flow", since="1h")
        mine = [g for g in costs if g["key"] == flow]
        assert mine and mine[0]["cost_usd"] == Decimal("0.00021") and isinstance(costs.total_usd, Decimal)
        assert flow in set(costs.to_pandas()["key"])
        cmp_ = fs.compare(run_id, run_id)
        assert cmp_["same_path"] and cmp_["cost_delta_usd"] == 0
        events = list(fs.stream(run_id))
        assert events[-1]["event"] == "summary" and events[-1]["cost_usd"] == Decimal("0.00021")
        assert fs.ready()["status"] == "ready"


def test_client_errors_carry_the_collectors_message(traced) -> None:
    fs = flowscope.Client(traced.url)
    with pytest.raises(flowscope.FlowscopeError) as err:
        fs.run("0" * 32)
    assert err.value.status == 404 and "no run" in err.value.message
    with pytest.raises(flowscope.FlowscopeError) as err:
        fs.costs(group_by="colour")
    assert err.value.status == 422
    with pytest.raises(flowscope.FlowscopeError) as err:
        flowscope.Client("http://127.0.0.1:9").run("x")
    assert err.value.status == 0 and "cannot reach" in err.value.message
