"""The test kit: in-memory capture gives the collector's own views; assertions fail readably.

Everything is real (OTel SDK, openai client, fake provider over loopback); the
comparison test also runs the real collector and checks that the kit and the
API agree field by field, since both are meant to be one implementation.
"""

from __future__ import annotations

import json
from decimal import Decimal

import openai
import pytest
from opentelemetry.exporter.otlp.proto.common._internal import _encode_value

import flowscope
from flowscope.testing import (
    Capture,
    FakeProvider,
    Reply,
    assert_cost_below,
    assert_no_retries,
    assert_node_sequence,
    assert_state,
    capture,
)
from flowscope.testing.capturing import stringify

M = Decimal(1_000_000)
IN, OUT = Decimal("0.15"), Decimal("0.60")  # gpt-4o-mini, USD per 1M tokens


def cost(inp: int, out: int) -> Decimal:
    return (inp * IN + out * OUT) / M


def plan_work_finish(fp: FakeProvider, *, branch: str = "work") -> flowscope.Run:
    """A small flow with LLM calls and state, the way a user's flow would look."""
    fp.script(
        Reply(text="plan", input_tokens=1000, output_tokens=100, model="gpt-4o-mini-2024-07-18"),
        Reply(text="work", input_tokens=500, output_tokens=50, model="gpt-4o-mini-2024-07-18"),
    )
    client = openai.OpenAI(base_url=fp.openai_base_url, api_key="sk-test", max_retries=0)
    msgs = [{"role": "user", "content": "go"}]
    with flowscope.run("support-flow", input={"ticket": 7}) as run:
        with flowscope.node("plan", type="router"):
            client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
            flowscope.record_state("plan", {"steps": ["look up", "answer"]})
            flowscope.set_branch(branch)
        with flowscope.node(branch):
            client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
            flowscope.record_state("plan.done", 1)
        with flowscope.node("finish"):
            flowscope.record_state("answer", "42")
    return run


# --- capture ----------------------------------------------------------------------------


def test_capture_gives_summary_nodes_and_state(flowscope_capture, flowscope_fake_provider) -> None:
    run = plan_work_finish(flowscope_fake_provider)
    got = flowscope_capture.run()
    assert got.id == run.id
    s = got.summary
    assert (s["flow"], s["status"], s["spans"], s["llm_calls"]) == ("support-flow", "ok", 6, 2)
    assert Decimal(s["cost_usd"]) == cost(1000, 100) + cost(500, 50) == run.cost_usd
    assert [(n["name"], Decimal(n["cost_usd"])) for n in s["by_node"]] == [
        ("plan", cost(1000, 100)), ("work", cost(500, 50)), ("finish", Decimal(0))]
    assert [(n["step"], n["name"], n["type"], n["branch"]) for n in got.nodes] == [
        (0, "plan", "router", "work"), (1, "work", "task", None), (2, "finish", "task", None)]
    assert got.state(-1) == {"ticket": 7}
    assert got.state(0) == {"ticket": 7, "plan": {"steps": ["look up", "answer"]}}
    assert got.state(1)["plan"]["done"] == 1
    assert got.state(2)["answer"] == "42"
    with pytest.raises(ValueError, match=r"at=3 is out of range: run \w+ has steps -1 \(input\) to 2"):
        got.state(3)


def test_capture_picks_runs_by_id_flow_or_latest(flowscope_fake_provider) -> None:
    with capture() as cap:
        with flowscope.run("first") as first, flowscope.node("a"):
            pass
        second = plan_work_finish(flowscope_fake_provider)
    with flowscope.run("after-capture"):
        pass
    assert cap.run_ids() == [first.id, second.id]
    assert cap.run().id == second.id
    assert cap.run(first).node_names == ["a"]
    assert cap.run(first.id).summary["flow"] == "first"
    assert cap.run(flow="first").id == first.id
    with pytest.raises(AssertionError, match=r"no captured run 'nope'; captured runs: \w+ \(first\), \w+ \(support-flow\)"):
        cap.run("nope")
    with pytest.raises(AssertionError, match="no captured run of flow 'other'"):
        cap.run(flow="other")
    with pytest.raises(AssertionError, match=r"no spans were captured\. Did the code under test run inside"):
        Capture().run()


def test_capture_agrees_with_the_collector_api(traced, fake_provider) -> None:
    """One implementation of the views: the kit and the API must say the same thing."""
    with capture() as cap:
        run = plan_work_finish(fake_provider)
    assert flowscope.force_flush()
    api = traced.wait_for_run(run.id, spans=6)
    mine = cap.run(run).summary
    shared = set(api) - {"url"}
    assert len(shared) > 20
    assert {k: api[k] for k in shared} == {k: mine[k] for k in shared}
    api_nodes = traced.get(f"/api/v1/runs/{run.id}/nodes").json()["nodes"]
    mine_nodes = cap.run(run).nodes
    assert [{k: n[k] for k in api_nodes[0]} for n in mine_nodes] == api_nodes
    for step in (-1, 0, 1, 2):
        assert traced.get(f"/api/v1/runs/{run.id}/state", params={"at": step}).json()["state"] == \
            cap.run(run).state(step)


def test_attribute_strings_match_collector_ingest() -> None:
    """The kit stringifies attributes exactly as the collector does at OTLP ingest."""
    from flowscope_collector.ingest.values import value_str

    values = ["text", "", True, False, 0, 42, -7, 3.0, 0.5, 1e20, -0.0, 1.25e-7, ["a", "b"], [1, 2], [0.5, 1.0],
              [True, False], ("x",)]
    for v in values:
        assert stringify(v) == value_str(_encode_value(v)), v


# --- assertions -------------------------------------------------------------------------


def test_assertions_pass_on_the_right_path(flowscope_capture, flowscope_fake_provider) -> None:
    plan_work_finish(flowscope_fake_provider)
    run = flowscope_capture.run()
    assert_node_sequence(run, ["plan", "work", "finish"])
    assert_node_sequence(flowscope_capture, ["plan", "work", "finish"])  # a Capture means its latest run
    assert_cost_below(run, "0.01")
    assert_no_retries(run)
    assert_state(run, at=0, path="plan.steps", equals=["look up", "answer"])
    assert_state(run, at=2, path="answer")


def test_wrong_path_message(flowscope_capture, flowscope_fake_provider) -> None:
    plan_work_finish(flowscope_fake_provider, branch="escalate")
    run = flowscope_capture.run()
    with pytest.raises(AssertionError) as err:
        assert_node_sequence(run, ["plan", "work", "finish"])
    assert str(err.value) == (
        f"node sequence of run {run.id} (flow 'support-flow') is not the expected path\n"
        "  expected: plan → work → finish\n"
        "  actual:   plan → escalate → finish\n"
        "  first difference at position 1 (step 1): expected 'work', got 'escalate'"
    )
    with pytest.raises(AssertionError, match=r"the run stopped after 3 node\(s\); missing: review → close"):
        assert_node_sequence(run, ["plan", "escalate", "finish", "review", "close"])
    with pytest.raises(AssertionError, match=r"unexpected extra node\(s\) after the path: finish"):
        assert_node_sequence(run, ["plan", "escalate"])


def test_failed_node_is_named_in_the_path_message(flowscope_capture) -> None:
    with pytest.raises(KeyError), flowscope.run("fails"):
        with flowscope.node("plan"):
            pass
        with flowscope.node("lookup"):
            raise KeyError("customer")
    with pytest.raises(AssertionError, match=r"(?s)missing: answer.*node 'lookup' \(step 1\) failed: KeyError"):
        assert_node_sequence(flowscope_capture.run(), ["plan", "lookup", "answer"])


def test_cost_message_shows_where_the_money_went(flowscope_capture, flowscope_fake_provider) -> None:
    plan_work_finish(flowscope_fake_provider)
    run = flowscope_capture.run()
    total = cost(1000, 100) + cost(500, 50)
    with pytest.raises(AssertionError) as err:
        assert_cost_below(run, "0.0001")
    assert str(err.value).splitlines() == [
        f"run {run.id} (flow 'support-flow') cost ${total}, which is not below the limit of $0.0001",
        f"  by node:  plan ${cost(1000, 100)}, work ${cost(500, 50)}",
        f"  by model: gpt-4o-mini-2024-07-18 ${total} (2 call(s), 1500 in / 150 out tokens)",
    ]
    with pytest.raises(AssertionError, match="not below the limit"):
        assert_cost_below(run, total)  # strictly below
    with pytest.raises(ValueError, match=r"cost limit must be a decimal number like '0\.01', not 'cheap'"):
        assert_cost_below(run, "cheap")


def test_unpriced_calls_make_the_cost_unknown(flowscope_capture, flowscope_fake_provider) -> None:
    flowscope_fake_provider.script(Reply(text="hi", input_tokens=10, output_tokens=5, model="house-model-v1"))
    client = openai.OpenAI(base_url=flowscope_fake_provider.openai_base_url, api_key="sk-test", max_retries=0)
    with flowscope.run("unpriced"), flowscope.node("ask"):
        client.chat.completions.create(model="house-model-v1", messages=[{"role": "user", "content": "x"}])
    run = flowscope_capture.run()
    assert run.summary["unpriced_calls"] == 1
    with pytest.raises(AssertionError, match=r"1 call\(s\) are unpriced, so the real cost is unknown"):
        assert_cost_below(run, "1")
    assert_cost_below(run, "1", allow_unpriced=True)


def test_retry_message_names_the_node(flowscope_capture) -> None:
    with flowscope.run("retrying"):
        with flowscope.node("plan"):
            pass
        with pytest.raises(TimeoutError), flowscope.node("work", attempt=0):
            raise TimeoutError("upstream slow")
        with flowscope.node("work", attempt=1):
            pass
    run = flowscope_capture.run()
    with pytest.raises(AssertionError) as err:
        assert_no_retries(run)
    text = str(err.value)
    assert "node 'work' (step 2) ran again as attempt 1" in text
    assert "errors seen: TimeoutError" in text
    assert_node_sequence(run, ["plan", "work"])  # a retry is not a different path
    assert_node_sequence(run, ["plan", "work", "work"], include_retries=True)


def test_state_messages(flowscope_capture, flowscope_fake_provider) -> None:
    plan_work_finish(flowscope_fake_provider)
    run = flowscope_capture.run()
    with pytest.raises(AssertionError) as err:
        assert_state(run, at=0, path="plan.steps", equals=["answer"])
    assert str(err.value) == (
        f"state of run {run.id} (flow 'support-flow') at step 0 (after 'plan'): plan.steps differs\n"
        "  expected: ['answer']\n"
        "  actual:   ['look up', 'answer']\n"
        "  nodes up to this step: plan"
    )
    with pytest.raises(AssertionError, match=r"path answer not found: 'answer' is not in the top level "
                                             r"\(keys there: \['plan', 'ticket'\]\)"):
        assert_state(run, at=1, path="answer", equals="42")
    with pytest.raises(AssertionError, match=r"at=9 is out of range: run \w+ has steps -1 \(input\) to 2"):
        assert_state(run, at=9, path="answer", equals="42")


def test_assertions_reject_other_objects() -> None:
    with pytest.raises(TypeError, match="expected a captured run"):
        assert_no_retries(json.loads("{}"))
