"""LangGraph, instrumented for real. The oracle for state is LangGraph's own checkpointer.

For a graph compiled with a checkpointer, the state flowscope recorded at the
last node step of each superstep must equal ``get_state_history`` at that
superstep, reducers (``add_messages``, ``operator.add``) included.
"""

from __future__ import annotations

import asyncio
import operator
import subprocess
import sys
import time
import uuid
from typing import Annotated, Any, TypedDict

import openai
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, RetryPolicy, interrupt

import flowscope
from flowscope.core import semconv
from flowscope.core.state import to_jsonable
from flowscope.instrumentation.langgraph import EVENT_INTERRUPT, EVENT_RESUME, RUN_RESUMED
from tests._runtime_kit import MemoryKit, attrs, llm_spans, nodes, parent_of

MODEL = "gpt-4o-mini"


class State(TypedDict):
    messages: Annotated[list, add_messages]
    log: Annotated[list, operator.add]
    x: int


def build_graph(client: Any, fails: dict[str, int], *, is_async: bool = False) -> StateGraph:
    """plan → (research ∥ draft) → review (interrupts for approval) → route → publish | END."""

    def ask(prompt: str) -> Any:  # a coroutine with the async client
        return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}])

    async def aplan(state: State) -> dict[str, Any]:
        r = await ask("plan")
        return {"messages": [("ai", r.choices[0].message.content)], "log": ["plan"], "x": 1}

    def plan(state: State) -> dict[str, Any]:
        r = ask("plan")
        return {"messages": [("ai", r.choices[0].message.content)], "log": ["plan"], "x": 1}

    def research(state: State) -> dict[str, Any]:
        if fails["research"] > 0:
            fails["research"] -= 1
            raise TimeoutError("search backend timed out")
        return {"log": ["research"], "x": state["x"] + 1}

    def draft(state: State) -> dict[str, Any]:
        return {"log": ["draft"], "messages": [("ai", "a draft")]}

    def review(state: State) -> dict[str, Any]:
        verdict = interrupt({"question": "publish?", "log": state["log"]})
        return {"log": [f"review:{verdict}"]}

    def route(state: State) -> str:
        return "publish" if state["log"][-1] == "review:yes" else END

    def publish(state: State) -> dict[str, Any]:
        r = ask("publish")
        return {"messages": [("ai", r.choices[0].message.content)], "log": ["publish"]}

    async def apublish(state: State) -> dict[str, Any]:
        r = await ask("publish")
        return {"messages": [("ai", r.choices[0].message.content)], "log": ["publish"]}

    g = StateGraph(State)
    g.add_node("plan", aplan if is_async else plan)
    g.add_node("research", research,
               retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.001, jitter=False, retry_on=TimeoutError))
    g.add_node("draft", draft)
    g.add_node("review", review)
    g.add_node("publish", apublish if is_async else publish)
    g.add_edge(START, "plan")
    g.add_edge("plan", "research")
    g.add_edge("plan", "draft")
    g.add_edge(["research", "draft"], "review")
    g.add_conditional_edges("review", route, ["publish", END])
    g.add_edge("publish", END)
    return g


def checkpoints(app: Any, cfg: dict[str, Any]) -> dict[int, Any]:
    """Superstep -> state values (as JSON), from LangGraph's own checkpointer."""
    return {s.metadata["step"]: to_jsonable(s.values) for s in app.get_state_history(cfg)}


def assert_state_matches_checkpoints(mem: MemoryKit, run_id: str, cps: dict[int, Any]) -> list[Any]:
    spans = mem.run_spans(run_id)
    view = mem.view(run_id)
    ns = nodes(spans)
    final = {}
    for n in ns:  # the last attempt of each step
        final[attrs(n)[semconv.NODE_STEP]] = n
    supersteps = sorted({attrs(n)[semconv.NODE_SUPERSTEP] for n in final.values()})
    # the input snapshot is the checkpoint just before the run's first superstep
    assert view.state(-1) == cps[supersteps[0] - 1]
    for s in supersteps:
        in_step = [n for n in final.values() if attrs(n)[semconv.NODE_SUPERSTEP] == s]
        last = max(attrs(n)[semconv.NODE_STEP] for n in in_step)
        interrupted = any(e.name == EVENT_INTERRUPT for n in in_step for e in n.events)
        want = cps[s - 1] if interrupted else cps[s]
        assert view.state(last) == want, f"superstep {s} (node step {last})"
    return ns


def test_graph_run_nodes_retries_interrupt_resume_and_state(mem: MemoryKit, fake_provider) -> None:
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")
    app = build_graph(client, {"research": 2}).compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "thread-1"}}

    first = app.invoke({"messages": [("user", "write about otters")], "log": [], "x": 0}, cfg)
    assert "__interrupt__" in first
    final = app.invoke(Command(resume="yes"), cfg)
    log = final["log"]
    assert log[0] == "plan" and sorted(log[1:3]) == ["draft", "research"] and log[3:] == ["review:yes", "publish"]

    run1, run2 = mem.runs("LangGraph")
    cps = checkpoints(app, cfg)
    r1, r2 = attrs(run1), attrs(run2)
    assert r1[semconv.GEN_AI_CONVERSATION_ID] == r2[semconv.GEN_AI_CONVERSATION_ID] == "thread-1"
    assert r1[semconv.RUN_STATUS] == "interrupted"
    assert r2[RUN_RESUMED] is True
    assert [e.name for e in run2.events if e.name == EVENT_RESUME] == [EVENT_RESUME]
    # the resumed run says how long the thread waited at the interrupt
    (wait,) = [s for s in mem.run_spans(r2[semconv.RUN_ID]) if attrs(s)[semconv.SPAN_KIND] == "wait"]
    assert parent_of(wait, mem.run_spans(r2[semconv.RUN_ID])) is run2
    assert wait.start_time < run2.start_time and wait.end_time >= run2.start_time

    # run 1: node order, supersteps, attempts
    ns = assert_state_matches_checkpoints(mem, r1[semconv.RUN_ID], cps)
    rows = [(attrs(n)[semconv.NODE_NAME], attrs(n)[semconv.NODE_STEP], attrs(n)[semconv.NODE_SUPERSTEP],
             attrs(n)[semconv.NODE_ATTEMPT], n.status.status_code.name) for n in ns]
    assert rows[0] == ("plan", 0, 1, 0, "UNSET")
    research = [r for r in rows if r[0] == "research"]
    assert [(r[3], r[4]) for r in research] == [(0, "ERROR"), (1, "ERROR"), (2, "UNSET")]
    assert len({r[1] for r in research}) == 1  # every attempt is the same step
    assert {r[0] for r in rows if r[2] == 2} == {"research", "draft"}
    assert rows[-1][0] == "review" and rows[-1][4] == "UNSET"
    review = ns[-1]
    (intr,) = [e for e in review.events if e.name == EVENT_INTERRUPT]
    assert "publish?" in intr.attributes["flowscope.interrupt.value"]
    failed = [n for n in ns if n.status.status_code.name == "ERROR"]
    assert all(attrs(n)[semconv.ERROR_TYPE] == "TimeoutError" for n in failed)

    # run 2 resumes at review, takes the "publish" branch
    ns2 = assert_state_matches_checkpoints(mem, r2[semconv.RUN_ID], cps)
    assert [(attrs(n)[semconv.NODE_NAME], attrs(n)[semconv.NODE_STEP]) for n in ns2] == [
        ("review", 0), ("publish", 1)]
    assert attrs(ns2[0])[semconv.NODE_TYPE] == "router"
    assert attrs(ns2[0])[semconv.ROUTER_BRANCH] == "publish"
    assert mem.view(r2[semconv.RUN_ID]).state(1) == to_jsonable(final)

    # LLM calls are children of the node that made them
    for rid, want in ((r1[semconv.RUN_ID], ["plan"]), (r2[semconv.RUN_ID], ["publish"])):
        spans = mem.run_spans(rid)
        assert [attrs(parent_of(s, spans))[semconv.NODE_NAME] for s in llm_spans(spans)] == want


def test_async_graph(mem: MemoryKit, fake_provider) -> None:
    aclient = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")
    app = build_graph(aclient, {"research": 1}, is_async=True).compile(
        checkpointer=InMemorySaver(), interrupt_before=["publish"])
    cfg = {"configurable": {"thread_id": "thread-async"}}

    async def go() -> Any:
        await app.ainvoke({"messages": [("user", "hi")], "log": [], "x": 0}, cfg)
        await app.ainvoke(Command(resume="yes"), cfg)  # answers review, stops before publish
        return await app.ainvoke(None, cfg)  # continue past the breakpoint

    final = asyncio.run(go())
    assert final["log"][-1] == "publish"
    runs = mem.runs("LangGraph")
    assert len(runs) == 3
    cps = checkpoints(app, cfg)
    assert attrs(runs[1])[semconv.RUN_STATUS] == "interrupted"  # the breakpoint
    for r in runs:
        assert_state_matches_checkpoints(mem, attrs(r)[semconv.RUN_ID], cps)
    spans = mem.run_spans(attrs(runs[0])[semconv.RUN_ID])
    (llm,) = llm_spans(spans)
    assert attrs(parent_of(llm, spans))[semconv.NODE_NAME] == "plan"
    research = [n for n in nodes(spans) if attrs(n)[semconv.NODE_NAME] == "research"]
    assert [attrs(n)[semconv.NODE_ATTEMPT] for n in research] == [0, 1]


def test_failure_marks_node_and_run(mem: MemoryKit) -> None:
    def boom(state: State) -> dict[str, Any]:
        raise KeyError("missing")

    g = StateGraph(State)
    g.add_node("boom", boom)
    g.add_edge(START, "boom")
    with pytest.raises(KeyError):
        g.compile().invoke({"log": [], "x": 0})
    (run,) = mem.runs("LangGraph")
    (node,) = nodes(mem.run_spans(attrs(run)[semconv.RUN_ID]))
    assert node.status.status_code.name == "ERROR"
    assert attrs(node)[semconv.ERROR_TYPE] == "KeyError"
    assert run.status.status_code.name == "ERROR"


def test_subgraph_nests_under_its_node(mem: MemoryKit) -> None:
    class Inner(TypedDict):
        log: Annotated[list, operator.add]
        x: int

    inner = StateGraph(Inner)
    inner.add_node("inner_a", lambda s: {"log": ["inner_a"]})
    inner.add_node("inner_b", lambda s: {"log": ["inner_b"], "x": s["x"] * 10})
    inner.add_edge(START, "inner_a")
    inner.add_edge("inner_a", "inner_b")

    outer = StateGraph(Inner)
    outer.add_node("before", lambda s: {"log": ["before"], "x": 2})
    outer.add_node("sub", inner.compile())
    outer.add_node("after", lambda s: {"log": ["after"]})
    outer.add_edge(START, "before")
    outer.add_edge("before", "sub")
    outer.add_edge("sub", "after")
    app = outer.compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "sub"}}
    app.invoke({"log": [], "x": 0}, cfg)

    (run,) = mem.runs()
    spans = mem.run_spans(attrs(run)[semconv.RUN_ID])
    ns = nodes(spans)
    names = [attrs(n)[semconv.NODE_NAME] for n in ns]
    assert names == ["before", "sub", "inner_a", "inner_b", "after"]
    sub = ns[1]
    assert attrs(sub)[semconv.NODE_TYPE] == "subflow"
    assert parent_of(ns[2], spans) is sub and parent_of(ns[3], spans) is sub
    cps = checkpoints(app, cfg)
    view = mem.view(attrs(run)[semconv.RUN_ID])
    # the subgraph's result lands at its last inner step, not at the step it started
    assert view.state(0) == view.state(1) == view.state(2) == cps[1]
    assert view.state(3) == cps[2]
    assert view.state(4) == cps[3]


def test_graph_inside_a_hand_made_run(mem: MemoryKit) -> None:
    g = StateGraph(State)
    g.add_node("only", lambda s: {"log": ["only"], "x": s["x"] + 1})
    g.add_edge(START, "only")
    with flowscope.run("outer") as run:
        flowscope.record_state("phase", "start")
        g.compile().invoke({"log": [], "x": 0})
        with flowscope.node("agent", type="agent"):
            g.compile().invoke({"log": [], "x": 10})
    spans = mem.run_spans(run.id)
    ns = nodes(spans)
    assert [(attrs(n)[semconv.NODE_NAME], attrs(n)[semconv.NODE_TYPE]) for n in ns] == [
        ("LangGraph", "subflow"), ("only", "task"), ("agent", "agent"), ("LangGraph", "subflow"), ("only", "task")]
    assert parent_of(ns[3], spans) is ns[2] and parent_of(ns[4], spans) is ns[3]
    view = mem.view(run.id)
    assert view.state(1) == {"phase": "start", "messages": [], "log": ["only"], "x": 1}
    assert view.state(4) == {"phase": "start", "messages": [], "log": ["only"], "x": 11}


def test_state_through_the_collector(traced, fake_provider) -> None:
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")
    app = build_graph(client, {"research": 1}).compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "thread-collector"}, "run_name": "otter-writer"}
    app.invoke({"messages": [("user", "otters")], "log": [], "x": 0}, cfg)
    app.invoke(Command(resume="yes"), cfg)
    assert flowscope.force_flush()
    cps = checkpoints(app, cfg)

    listing = traced.get("/api/v1/runs", params={"flow": "otter-writer"}).json()["runs"]
    assert len(listing) == 2
    for summary in listing:
        run_id = summary["run_id"]
        got_nodes = traced.get(f"/api/v1/runs/{run_id}/nodes").json()["nodes"]
        by_step: dict[int, dict[str, Any]] = {}
        for n in got_nodes:
            by_step[n["step"]] = n  # the last attempt wins
        resumed = got_nodes[0]["name"] == "review"
        first_superstep = 3 if resumed else 1
        got = traced.get(f"/api/v1/runs/{run_id}/state", params={"at": -1}).json()["state"]
        assert got == cps[first_superstep - 1]
        if resumed:
            assert [n["name"] for n in got_nodes] == ["review", "publish"]
            for step, superstep in ((0, 3), (1, 4)):
                got = traced.get(f"/api/v1/runs/{run_id}/state", params={"at": step}).json()["state"]
                assert got == cps[superstep]
        else:
            names = [n["name"] for n in got_nodes]
            assert names[0] == "plan" and names[-1] == "review"
            assert names.count("research") == 2  # one retry
            after_parallel = max(s for s, n in by_step.items() if n["name"] in ("research", "draft"))
            for step, superstep in ((0, 1), (after_parallel, 2)):
                got = traced.get(f"/api/v1/runs/{run_id}/state", params={"at": step}).json()["state"]
                assert got == cps[superstep]



def _failing_graph(name: str) -> Any:
    def boom(state: State) -> dict[str, Any]:
        raise KeyError("the user record is missing")

    g = StateGraph(State)
    g.add_node("first", lambda s: {"log": ["first"], "x": 1})
    g.add_node("boom", boom)
    g.add_edge(START, "first")
    g.add_edge("first", "boom")
    with pytest.raises(KeyError):
        g.compile(name=name).invoke({"log": [], "x": 0})


def _check_superstep_and_error(nodes_: list[dict[str, Any]]) -> None:
    assert [(n["name"], n["superstep"]) for n in nodes_] == [("first", 1), ("boom", 2)]
    assert nodes_[1]["error"] == "KeyError"
    assert "the user record is missing" in nodes_[1]["error_message"]


def _listed_run(collector: Any, flow: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        runs = collector.get("/api/v1/runs", params={"flow": flow}).json()["runs"]
        if runs:
            return str(runs[0]["run_id"])
        time.sleep(0.05)
    raise AssertionError(f"no run of flow {flow!r} listed in time")


def test_nodes_carry_superstep_and_error_message(mem: MemoryKit) -> None:
    """A node says its LangGraph superstep, and a failed node what went wrong, not only
    its exception type (issue 20)."""
    _failing_graph("superstep-graph")
    (run,) = mem.runs("superstep-graph")
    _check_superstep_and_error(mem.view(attrs(run)[semconv.RUN_ID]).nodes())


def test_nodes_carry_superstep_and_error_message_through_the_collector(traced) -> None:
    """The same in /api/v1/runs/{id}/nodes, the summary's by_node and the CLI's runs show."""
    name = f"superstep-graph-{uuid.uuid4().hex[:8]}"
    _failing_graph(name)
    assert flowscope.force_flush()
    run_id = _listed_run(traced, name)
    traced.wait_for_run(run_id, spans=3)
    _check_superstep_and_error(traced.get(f"/api/v1/runs/{run_id}/nodes").json()["nodes"])
    summary = traced.get(f"/api/v1/runs/{run_id}").json()
    assert "the user record is missing" in summary["by_node"][1]["error_message"]
    shown = subprocess.run([sys.executable, "-m", "flowscope.cli", "runs", "show", run_id, "--url", traced.url],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "the user record is missing" in shown.stdout
    header = next(line for line in shown.stdout.splitlines() if line.lstrip().startswith("STEP"))
    assert "SUPERSTEP" in header
