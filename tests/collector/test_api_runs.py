"""Per-run API against runs recorded by the real SDK: summary, nodes, spans, time travel, graph, compare."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

import flowscope
from flowscope.testing import Reply

IN, CACHED, OUT = Decimal("0.15"), Decimal("0.075"), Decimal("0.60")  # gpt-4o-mini, USD per 1M tokens


def cost(inp: int, out: int) -> Decimal:
    return (inp * IN + out * OUT) / Decimal(1_000_000)


def _ask(client: openai.OpenAI) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def record_run(fake_provider, *, refund: bool, flow: str = "support-flow") -> str:
    """plan -> route (branch) -> refund|answer (fails when not refund, handled) -> finish, with state."""
    fake_provider.script(
        Reply(text="p", input_tokens=1000, output_tokens=100, model="gpt-4o-mini-2024-07-18"),
        Reply(text="a", input_tokens=2000, output_tokens=200, model="gpt-4o-mini-2024-07-18"),
    )
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test", max_retries=0)
    with flowscope.run(flow, input={"question": "where is my order?", "tries": 0}) as run:
        with flowscope.node("plan"):
            _ask(client)
            flowscope.record_state("plan", ["lookup", "reply"])
        with flowscope.node("route", type="router"):
            flowscope.set_branch("refund" if refund else "answer")
            flowscope.record_state("tries", 1)
        if refund:
            with flowscope.node("refund", type="tool"):
                flowscope.record_state("refund", {"amount": "12.50"})
        else:
            try:
                with flowscope.node("answer"):
                    flowscope.record_state("answer", "draft")
                    raise ValueError("no stock")
            except ValueError:
                pass
        with flowscope.node("finish"):
            _ask(client)
            flowscope.record_state("plan", op="delete")
            flowscope.record_state("done", True)
    assert flowscope.force_flush()
    return run.id


@pytest.fixture()
def two_runs(traced, fake_provider) -> tuple[str, str]:
    a = record_run(fake_provider, refund=True)
    b = record_run(fake_provider, refund=False)
    traced.wait_for_run(a, spans=7)
    traced.wait_for_run(b, spans=7)
    return a, b


def test_summary_nodes_and_spans(traced, two_runs) -> None:
    a, b = two_runs
    s = traced.get(f"/api/v1/runs/{a}").json()
    assert (s["flow"], s["status"], s["llm_calls"], s["errors"]) == ("support-flow", "ok", 2, 0)
    assert Decimal(s["cost_usd"]) == cost(1000, 100) + cost(2000, 200)
    assert s["input_tokens"] == 3000 and s["output_tokens"] == 300
    assert Decimal(s["cost_breakdown"]["input_usd"]) + Decimal(s["cost_breakdown"]["output_usd"]) == Decimal(
        s["cost_usd"])
    assert [(m["model"], m["llm_calls"]) for m in s["by_model"]] == [("gpt-4o-mini-2024-07-18", 2)]

    nodes = traced.get(f"/api/v1/runs/{b}/nodes").json()["nodes"]
    assert [(n["step"], n["name"], n["type"], n["status"]) for n in nodes] == [
        (0, "plan", "task", "ok"), (1, "route", "router", "ok"), (2, "answer", "task", "error"),
        (3, "finish", "task", "ok")]
    assert nodes[1]["branch"] == "answer" and nodes[2]["error"] == "ValueError"
    assert Decimal(nodes[3]["cost_usd"]) == cost(2000, 200) and nodes[3]["input_tokens"] == 2000

    tree = traced.get(f"/api/v1/runs/{a}/spans").json()
    assert tree["spans"] == 7 and len(tree["roots"]) == 1
    root = tree["roots"][0]
    assert root["name"] == "invoke_workflow support-flow"
    assert [c["name"] for c in root["children"]] == ["plan", "route", "refund", "finish"]
    llm = root["children"][0]["children"][0]
    assert llm["attributes"]["gen_ai.request.model"] == "gpt-4o-mini"
    assert any(e["name"] == "flowscope.state" for e in root["children"][0]["events"])


def test_time_travel_follows_the_recorded_history(traced, two_runs) -> None:
    a, _ = two_runs

    def state(at: int) -> dict:
        r = traced.get(f"/api/v1/runs/{a}/state", params={"at": at})
        assert r.status_code == 200, r.text
        return r.json()

    start = {"question": "where is my order?", "tries": 0}
    assert state(-1)["state"] == start
    assert state(0) == {**state(0), "node": "plan", "state": {**start, "plan": ["lookup", "reply"]}}
    assert state(1)["state"] == {**start, "plan": ["lookup", "reply"], "tries": 1}
    assert state(2)["state"]["refund"] == {"amount": "12.50"}
    assert state(3)["state"] == {**start, "tries": 1, "refund": {"amount": "12.50"}, "done": True}

    d = traced.get(f"/api/v1/runs/{a}/state/diff", params={"from": 0, "to": 3}).json()
    assert d["added"] == {"refund": {"amount": "12.50"}, "done": True}
    assert d["removed"] == {"plan": ["lookup", "reply"]}
    assert d["changed"] == {"tries": {"from": 0, "to": 1}}

    for params, path in (({"at": 4}, "state"), ({"at": -2}, "state"), ({"from": 0, "to": 9}, "state/diff")):
        r = traced.get(f"/api/v1/runs/{a}/{path}", params=params)
        assert r.status_code == 422, r.text
        assert "range" in r.json()["error"] or "greater" in r.json()["error"]


def test_graph_mermaid_and_dot(traced, two_runs) -> None:
    _, b = two_runs
    mer = traced.get(f"/api/v1/runs/{b}/graph").text
    assert mer.startswith("flowchart TD")
    assert "-->|answer|" in mer  # the router's branch labels the edge it took
    assert "2. answer" in mer and "failed" in mer and "class n2 failed" in mer
    assert f"${cost(2000, 200).normalize():f}" in mer  # nodes annotated with cost
    assert "start --> n0" in mer and "n3 --> finish" in mer
    dot = traced.get(f"/api/v1/runs/{b}/graph", params={"format": "dot"})
    assert dot.headers["content-type"].startswith("text/vnd.graphviz")
    assert dot.text.startswith("digraph run {") and 'fillcolor="#ffdddd"' in dot.text
    assert "n0 -> n1;" in dot.text and 'n1 -> n2 [label="answer"];' in dot.text
    assert traced.get(f"/api/v1/runs/{b}/graph", params={"format": "png"}).status_code == 422


def test_compare_two_runs(traced, two_runs) -> None:
    a, b = two_runs
    r = traced.get("/api/v1/runs/compare", params={"a": a, "b": b})
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["a"]["path"] == ["plan", "route", "refund", "finish"]
    assert c["b"]["path"] == ["plan", "route", "answer", "finish"]
    assert c["same_path"] is False and c["first_path_difference"] == 2
    assert Decimal(c["cost_delta_usd"]) == 0  # same calls, same tokens
    div = c["first_state_divergence"]
    assert div["step"] == 2 and (div["node_a"], div["node_b"]) == ("refund", "answer")
    assert div["added"] == {"answer": "draft"} and div["removed"] == {"refund": {"amount": "12.50"}}
    same = traced.get("/api/v1/runs/compare", params={"a": a, "b": a}).json()
    assert same["same_path"] and same["first_state_divergence"] is None


def test_unknown_runs_and_bad_ids(traced) -> None:
    missing = "f" * 32
    for path in ("", "/nodes", "/spans", "/graph", "/state?at=0"):
        r = traced.get(f"/api/v1/runs/{missing}{path}")
        assert r.status_code == 404 and "no run" in r.json()["error"], path
    assert traced.get("/api/v1/runs/compare", params={"a": missing, "b": missing}).status_code == 404
    assert traced.get("/api/v1/runs/bad id!").status_code == 422
