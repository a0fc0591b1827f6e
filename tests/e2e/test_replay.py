"""Replay and fork (flowscope.replay): a stored run restarted from a step, end to end.

All real: LangGraph / PocketFlow with their own runtimes, the real openai client
against the fake provider (which counts the requests that reach it), spans
exported to a real collector (API keys on, so runs belong to projects) and read
back through its API by the replay itself.
"""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.graph.message import add_messages

import flowscope
from flowscope import Client, ReplayError
from flowscope.core import semconv
from flowscope.testing import FakeProvider, Reply, capture

from .._collector_kit import CollectorProcess

KEY_A, KEY_B = "key-alpha-0123456789", "key-beta-0123456789"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    proc = CollectorProcess(tmp_path_factory.mktemp("replay") / "data",
                            env={"FLOWSCOPE_API_KEYS": f"{KEY_A}=alpha,{KEY_B}=beta"}).start()
    yield proc
    proc.stop()


@pytest.fixture()
def fs(keyed: CollectorProcess) -> Iterator[Client]:
    flowscope.init(service_name="replay-tests", endpoint=keyed.url, api_key=KEY_A, capture_content=True)
    with Client(keyed.url, api_key=KEY_A) as client:
        yield client
    flowscope.force_flush()


def wait_run(client: Client, flow: str, *, after: set[str] | None = None) -> dict[str, Any]:
    """The newest ended run of ``flow`` (not one of ``after``), once the collector has it."""
    flowscope.force_flush()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for run in client.runs(flow=flow, limit=20):
            if run["run_id"] not in (after or set()) and run["status"] != "running":
                return client.run(run["run_id"])
        time.sleep(0.1)
    raise AssertionError(f"no run of {flow!r} arrived")


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


# --- the LangGraph flow: a router, LLM calls, and a tool that fails in production --------

class State(TypedDict, total=False):
    messages: Annotated[list, operator.add]
    question: str
    route: str
    notes: Annotated[list, operator.add]
    answer: str


class Flow:
    """The app under test; ``tool_ok`` and ``act_prompt`` are the code a developer changes."""

    def __init__(self, fp: FakeProvider, name: str) -> None:
        self.client = fp.openai_client()
        self.name = name
        self.tool_ok = False
        self.act_prompt = "Pick the tool arguments."

    def ask(self, prompt: str, *, stream: bool = False) -> str:
        if stream:
            chunks = self.client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], stream=True,
                stream_options={"include_usage": True})
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        r = self.client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
        return r.choices[0].message.content or ""

    def graph(self) -> Any:
        from langgraph.checkpoint.memory import InMemorySaver
        from langgraph.graph import END, START, StateGraph

        def plan(s: State) -> State:
            return {"messages": [self.ask(f"Plan: {s['question']}")], "notes": ["planned"]}

        def route(s: State) -> State:
            return {"route": "lookup" if "price" in s["question"] else "chat"}

        def draft(s: State) -> State:
            return {"messages": [self.ask("Draft from: " + s["messages"][-1])], "notes": ["drafted"]}

        def review(s: State) -> State:
            return {"messages": [self.ask("Review: " + s["messages"][-1])]}

        def act(s: State) -> State:
            args = self.ask(self.act_prompt + " " + s["messages"][-1], stream=True)
            if not self.tool_ok:
                raise RuntimeError("price tool: upstream timeout")
            return {"notes": [f"tool({len(args)})"]}

        def answer(s: State) -> State:
            return {"answer": self.ask("Answer with: " + ", ".join(s["notes"]))}

        def chat(s: State) -> State:
            return {"answer": "small talk"}

        g = StateGraph(State)
        for fn in (plan, route, draft, review, act, answer, chat):
            g.add_node(fn.__name__, fn)
        g.add_edge(START, "plan")
        g.add_edge("plan", "route")
        g.add_conditional_edges("route", lambda s: s["route"], {"lookup": "draft", "chat": "chat"})
        g.add_edge("draft", "review")
        g.add_edge("review", "act")
        g.add_edge("act", "answer")
        g.add_edge("answer", END)
        g.add_edge("chat", END)
        return g.compile(checkpointer=InMemorySaver(), name=self.name)


def _production_run(fs: Client, fp: FakeProvider) -> tuple[Flow, Any, dict[str, Any], dict[str, Any]]:
    fp.set_default(lambda req: Reply(text="re: " + req.body["messages"][-1]["content"][:40]))
    flow = Flow(fp, f"support-{uuid.uuid4().hex[:6]}")
    graph = flow.graph()
    config = {"configurable": {"thread_id": "prod-1"}}
    with pytest.raises(RuntimeError, match="upstream timeout"):
        graph.invoke({"question": "what is the price of X?"}, config)
    run1 = wait_run(fs, flow.name)
    return flow, graph, config, run1


def test_langgraph_fork_reuses_recorded_answers_and_continues_differently(
    fs: Client, fake_provider: FakeProvider
) -> None:
    flow, graph1, config1, run1 = _production_run(fs, fake_provider)
    assert run1["status"] == "error"
    nodes1 = fs.nodes(run1["run_id"])
    assert [n["name"] for n in nodes1] == ["plan", "route", "draft", "review", "act"]
    # the collector's state at each step equals LangGraph's own checkpoint after that superstep
    history = list(reversed(list(graph1.get_state_history(config1))))
    by_step = {h.metadata["step"] - 1: h.values for h in history}  # LangGraph counts its input superstep
    for step in range(4):
        assert fs.state(run1["run_id"], step) == json.loads(json.dumps(by_step[step])), step

    sent_before = len(fake_provider.requests)
    flow.tool_ok = True  # the fix
    result = flowscope.replay(run1["run_id"], flow.graph(), from_step=3, client=fs)
    run2 = wait_run(fs, flow.name, after={run1["run_id"]})
    assert result.run_id == run2["run_id"]
    new_requests = fake_provider.requests[sent_before:]
    # step 4's prompt is unchanged: answered from the recording (streamed); only the new answer node's went out
    assert result.recorded_calls == 1 and result.live_calls == 1
    assert [r.body["messages"][0]["content"][:11] for r in new_requests] == ["Answer with"]
    assert result.output["answer"].startswith("re: Answer with")

    # run 2 is a fork: it names its parent and the step, in its summary and in the runs list
    assert run2["forked_from"] == run1["run_id"] and run2["forked_at_step"] == 3
    listed = next(r for r in fs.runs(flow=flow.name) if r["run_id"] == run2["run_id"])
    assert listed["forked_from"] == run1["run_id"] and listed["forked_at_step"] == 3
    # states 0..3 equal run 1's; the path continues differently
    for step in range(-1, 4):
        assert fs.state(run2["run_id"], step) == fs.state(run1["run_id"], step), step
    nodes2 = fs.nodes(run2["run_id"])
    assert [n["name"] for n in nodes2] == ["plan", "route", "draft", "review", "act", "answer"]
    assert run2["status"] == "ok"
    # LangGraph's checkpointer of the fork starts from run 1's state after step 3
    forked = list(reversed(list(result.details["graph"].get_state_history(result.details["config"]))))
    assert json.loads(json.dumps(forked[0].values)) == fs.state(run1["run_id"], 3)

    spans = [s for s in _flat(fs.spans(run2["run_id"])["roots"])
             if s["attributes"].get(semconv.SPAN_KIND) == semconv.KIND_LLM]
    recorded = [s for s in spans if s["attributes"].get(semconv.REPLAY_RECORDED) == "true"]
    live = [s for s in spans if s["attributes"].get(semconv.REPLAY_LIVE) == "true"]
    assert len(recorded) == 1 and recorded[0]["attributes"][semconv.COST_USD] == "0"
    assert recorded[0]["attributes"][semconv.NODE_STEP] == "4"
    assert len(live) == 1 and live[0]["attributes"][semconv.NODE_STEP] == "5"

    cmp = fs.compare(run1["run_id"], run2["run_id"])
    assert cmp["fork"] == {"parent": run1["run_id"], "child": run2["run_id"], "at_step": 3,
                           "diverged_at_step": 4}


def test_a_changed_prompt_goes_live_and_is_marked_and_recorded_only_refuses_it(
    fs: Client, fake_provider: FakeProvider
) -> None:
    flow, _, _, run1 = _production_run(fs, fake_provider)
    flow.tool_ok = True
    flow.act_prompt = "Pick the tool arguments, carefully."  # the prompt under test
    with pytest.raises(ReplayError, match="recorded-only"):
        flowscope.replay(run1["run_id"], flow.graph(), from_step=3, llm="recorded-only", client=fs)
    sent_before = len(fake_provider.requests)
    result = flowscope.replay(run1["run_id"], flow.graph(), from_step=3, client=fs)
    assert result.recorded_calls == 0 and result.live_calls == 2
    assert len(fake_provider.requests) - sent_before == 2
    run2 = wait_run(fs, flow.name, after={run1["run_id"]})
    spans = [s for s in _flat(fs.spans(run2["run_id"])["roots"])
             if s["attributes"].get(semconv.SPAN_KIND) == semconv.KIND_LLM]
    assert all(s["attributes"].get(semconv.REPLAY_LIVE) == "true" for s in spans)
    assert all(s["attributes"].get(semconv.REPLAY_LIVE_REASON) == "no recorded request matches" for s in spans)


def test_actionable_errors(fs: Client, fake_provider: FakeProvider, keyed: CollectorProcess) -> None:
    flow, _, _, run1 = _production_run(fs, fake_provider)
    rid = run1["run_id"]
    with pytest.raises(ReplayError, match="no run 'ffffffffffffffffffffffffffffffff'"):
        flowscope.replay("f" * 32, flow.graph(), from_step=1, client=fs)
    with pytest.raises(ReplayError, match=r"from_step=9 is out of range: .* steps 0 to 4"):
        flowscope.replay(rid, flow.graph(), from_step=9, client=fs)
    from langgraph.graph import END, START, StateGraph

    other = StateGraph(State)
    other.add_node("plan", lambda s: {})
    other.add_edge(START, "plan")
    other.add_edge("plan", END)
    with pytest.raises(ReplayError, match="this graph has no node named 'route', 'draft', 'review', 'act'"):
        flowscope.replay(rid, other.compile(), from_step=1, client=fs)
    # another project's key does not see the run: refused, saying why
    with Client(keyed.url, api_key=KEY_B) as other_project, pytest.raises(ReplayError, match="another project"):
        flowscope.replay(rid, flow.graph(), from_step=1, client=other_project)


def _flat(roots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in roots:
        out.append(r)
        out.extend(_flat(r.get("children") or []))
    return out


# --- the CLI, through its entry point -----------------------------------------------------

APP_MODULE = '''
import os
from openai import OpenAI
from tests.e2e.test_replay import Flow

class _Provider:
    def openai_client(self):
        return OpenAI(base_url=os.environ["REPLAY_FAKE_OPENAI"], api_key="test-key")

flow = Flow(_Provider(), os.environ["REPLAY_FLOW_NAME"])
flow.tool_ok = os.environ.get("REPLAY_TOOL_OK", "1") == "1"  # the fix under test
graph = flow.graph()
'''


def _cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    pythonpath = os.pathsep.join([str(root / "sdk"), str(root / "collector"), str(root)])
    return subprocess.run([sys.executable, "-m", "flowscope.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": pythonpath, **env}, timeout=120)


def test_cli_replays_a_run_through_its_entry_point(
    fs: Client, fake_provider: FakeProvider, keyed: CollectorProcess, tmp_path: Path
) -> None:
    flow, _, _, run1 = _production_run(fs, fake_provider)
    (tmp_path / "replay_app.py").write_text(APP_MODULE)
    env = {"REPLAY_FAKE_OPENAI": fake_provider.openai_base_url, "REPLAY_FLOW_NAME": flow.name}
    common = ["--url", keyed.url, "--api-key", KEY_A]
    sent_before = len(fake_provider.requests)
    done = _cli(["runs", "replay", run1["run_id"], "--from-step", "3", "--app", "replay_app:graph",
                 "--json", *common], tmp_path, env)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["forked_from"] == run1["run_id"] and got["forked_at_step"] == 3
    assert (got["recorded_calls"], got["live_calls"]) == (1, 1)
    assert len(fake_provider.requests) - sent_before == 1  # only the new node's prompt went out
    run2 = wait_run(fs, flow.name, after={run1["run_id"]})
    assert run2["run_id"] == got["run_id"] and run2["forked_from"] == run1["run_id"]

    shown = _cli(["runs", "show", got["run_id"], *common], tmp_path, env)
    assert f"forked from {run1['run_id']} at step 3" in shown.stdout
    compared = _cli(["runs", "compare", run1["run_id"], got["run_id"], *common], tmp_path, env)
    assert f"is a fork of {run1['run_id']} after step 3: diverged at step 4" in compared.stdout

    # the flow failing again after the fork: the error, and which run recorded the fork
    broken = _cli(["runs", "replay", run1["run_id"], "--from-step", "3", "--app", "replay_app:graph", *common],
                  tmp_path, {**env, "REPLAY_TOOL_OK": "0"})
    assert broken.returncode == 1
    assert "the replayed flow raised RuntimeError: price tool: upstream timeout" in broken.stderr
    assert "flowscope: the fork is run " in broken.stderr

    # errors a person can act on, on stderr, exit 1
    bad = _cli(["runs", "replay", run1["run_id"], "--from-step", "7", "--app", "replay_app:graph", *common],
               tmp_path, env)
    assert bad.returncode == 1 and "from_step=7 is out of range" in bad.stderr
    wrong_key = _cli(["runs", "replay", run1["run_id"], "--from-step", "3", "--app", "replay_app:graph",
                      "--url", keyed.url, "--api-key", KEY_B], tmp_path, env)
    assert wrong_key.returncode == 1 and "another project" in wrong_key.stderr


# --- PocketFlow: the shared store at step k and the next node --------------------------------


def test_pocketflow_fork_continues_from_the_next_node(fs: Client, fake_provider: FakeProvider) -> None:
    import pocketflow

    fake_provider.set_default(lambda req: Reply(text="re: " + req.body["messages"][-1]["content"][:30]))
    client = fake_provider.openai_client()
    state = {"fixed": False}

    def ask(prompt: str) -> str:
        r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
        return r.choices[0].message.content or ""

    class Plan(pocketflow.Node):
        def exec(self, prep_res: Any) -> Any:
            return ask("plan the refund")

        def post(self, shared: dict, prep_res: Any, exec_res: Any) -> Any:
            shared["plan"] = exec_res
            return None

    class Route(pocketflow.Node):
        def post(self, shared: dict, prep_res: Any, exec_res: Any) -> Any:
            shared["route"] = "refund"
            return "refund"

    class Refund(pocketflow.Node):
        def prep(self, shared: dict) -> Any:
            return shared["plan"]

        def exec(self, prep_res: Any) -> Any:
            amount = ask("amount for: " + prep_res)
            if not state["fixed"]:
                raise RuntimeError("payments API: 502")
            return amount

        def post(self, shared: dict, prep_res: Any, exec_res: Any) -> Any:
            shared["refund"] = exec_res
            return None

    class Notify(pocketflow.Node):
        def exec(self, prep_res: Any) -> Any:
            return ask("tell the customer")

        def post(self, shared: dict, prep_res: Any, exec_res: Any) -> Any:
            shared["notified"] = exec_res
            return None

    class Escalate(pocketflow.Node):
        pass

    def build() -> Any:
        plan, route, refund, notify = Plan(), Route(), Refund(), Notify()
        plan >> route
        route - "refund" >> refund
        route - "escalate" >> Escalate()
        refund >> notify
        flow = pocketflow.Flow(start=plan)
        flow.name = name
        return flow

    name = f"refunds-{uuid.uuid4().hex[:6]}"
    with pytest.raises(RuntimeError, match="502"):
        build().run({"order": "o-1"})
    run1 = wait_run(fs, name)
    assert [n["name"] for n in fs.nodes(run1["run_id"])] == ["Plan", "Route", "Refund"]

    state["fixed"] = True
    sent_before = len(fake_provider.requests)
    result = flowscope.replay(run1["run_id"], build(), from_step=1, client=fs)
    assert result.runtime == "pocketflow" and result.details["next_node"] == "Refund"
    assert (result.recorded_calls, result.live_calls) == (1, 1)
    assert [r.body["messages"][0]["content"] for r in fake_provider.requests[sent_before:]] == ["tell the customer"]
    assert result.details["shared"]["notified"].startswith("re: tell the customer")
    run2 = wait_run(fs, name, after={run1["run_id"]})
    assert run2["forked_from"] == run1["run_id"] and run2["status"] == "ok"
    assert [n["name"] for n in fs.nodes(run2["run_id"])] == ["Plan", "Route", "Refund", "Notify"]
    for step in (-1, 0, 1):
        assert fs.state(run2["run_id"], step) == fs.state(run1["run_id"], step), step


# --- hand-recorded flows: the resume hook, and state that cannot be restored -----------------


class Connection:
    """A value with no JSON form: recorded only as its repr."""


def _steps(state: dict[str, Any], start_at: str | None, name: str) -> dict[str, Any]:
    order = ["load", "enrich", "publish"]
    with flowscope.run(name, input=state if start_at is None else None):
        for step_name in order[order.index(start_at) if start_at else 0:]:
            with flowscope.node(step_name):
                if step_name == "load":
                    state["rows"] = [1, 2, 3]
                    state["conn"] = Connection()
                elif step_name == "enrich":
                    state["total"] = sum(state["rows"])
                else:
                    state["published"] = f"{state['total']} via {type(state['conn']).__name__}"
                for key in ("rows", "conn", "total", "published"):
                    if key in state:
                        flowscope.record_state(key, state[key])
    return state


def test_hand_recorded_flow_resumes_through_its_hook_and_refuses_represented_values(fs: Client) -> None:
    name = f"etl-{uuid.uuid4().hex[:6]}"
    _steps({"source": "s3://bucket"}, None, name)
    run1 = wait_run(fs, name)
    assert fs.state(run1["run_id"], 1)["conn"]["__flowscope_repr__"].startswith("<")

    def resume(state: dict[str, Any], from_step: int, next_node: str | None) -> dict[str, Any]:
        return _steps(state, next_node, name)

    with pytest.raises(ReplayError, match=r"conn: only represented \(.*Connection\).*state=\{'conn': \.\.\.\}"):
        flowscope.replay(run1["run_id"], resume, from_step=1, client=fs)

    with capture() as cap:
        result = flowscope.replay(run1["run_id"], resume, from_step=1, state={"conn": Connection()}, client=fs)
    assert result.output["published"] == "6 via Connection"
    run2 = wait_run(fs, name, after={run1["run_id"]})
    assert run2["forked_from"] == run1["run_id"] and run2["forked_at_step"] == 1
    # the test kit says what the API says
    kit = cap.run(result.run_id).summary
    assert (kit["forked_from"], kit["forked_at_step"]) == (run1["run_id"], 1)
    assert [n["name"] for n in fs.nodes(run2["run_id"])] == ["load", "enrich", "publish"]
    assert fs.state(run2["run_id"], 0) == fs.state(run1["run_id"], 0)


# --- PenguiFlow: the message on the edge after step k, re-injected -------------------------


def test_penguiflow_fork_reinjects_the_recorded_message(fs: Client, fake_provider: FakeProvider) -> None:
    import asyncio

    import openai
    from penguiflow import Headers, Message, Node, NodePolicy, create

    fake_provider.set_default(lambda req: Reply(text="re: " + req.body["messages"][-1]["content"][:30]))
    fixed = {"ok": False}

    async def ask(prompt: str) -> str:
        # a client per call: the original run and the replay each run their own event loop
        async with openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test") as aclient:
            r = await aclient.chat.completions.create(model="gpt-4o-mini",
                                                      messages=[{"role": "user", "content": prompt}])
        return r.choices[0].message.content or ""

    async def triage(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": await ask("triage " + msg.payload)})

    async def lookup(msg: Message, ctx: Any) -> Message:
        facts = await ask("facts for " + msg.payload)
        if not fixed["ok"]:
            raise ConnectionError("kb down")
        return msg.model_copy(update={"payload": msg.payload + " | " + facts})

    async def reply(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": await ask("reply using " + msg.payload)})

    def build() -> Any:
        policy = NodePolicy(validate="none", max_retries=0)
        t, lk, r = (Node(fn, name=fn.__name__, policy=policy) for fn in (triage, lookup, reply))
        return create(t.to(lk), lk.to(r), r.to(), emit_errors_to_rookery=True)

    async def first_run() -> Any:
        flow = build()
        flow.run()
        try:
            await flow.emit(Message(payload="card declined", headers=Headers(tenant="acme")))
            return await asyncio.wait_for(flow.fetch(), 10)
        finally:
            await flow.stop()

    asyncio.run(first_run())
    run1 = wait_run(fs, "penguiflow")
    assert [n["name"] for n in fs.nodes(run1["run_id"])] == ["triage", "lookup"]

    fixed["ok"] = True
    sent_before = len(fake_provider.requests)
    result = flowscope.replay(run1["run_id"], build(), from_step=0, client=fs)
    assert result.details["edges"] == ["triage->lookup"]
    assert (result.recorded_calls, result.live_calls) == (1, 1)
    assert [r.body["messages"][0]["content"][:11] for r in fake_provider.requests[sent_before:]] == ["reply using"]
    assert result.output.payload.startswith("re: reply using")
    run2 = wait_run(fs, "penguiflow", after={run1["run_id"]})
    assert run2["forked_from"] == run1["run_id"] and run2["forked_at_step"] == 0
    assert [n["name"] for n in fs.nodes(run2["run_id"])] == ["triage", "lookup", "reply"]
    # the same messages up to step 0; the re-injected one carries the fork's own trace id (its run)
    s1, s2 = fs.state(run1["run_id"], 0), fs.state(run2["run_id"], 0)
    assert s2["triage->lookup"]["trace_id"] == result.details["trace_id"] != s1["triage->lookup"]["trace_id"]
    for s in (s1, s2):
        s["triage->lookup"].pop("trace_id")
    assert s1 == s2


# --- Anthropic (create and the messages.stream helper), and a run recorded without content ---


def _anthropic_flow(fp: FakeProvider, name: str, question: str) -> dict[str, Any]:
    client = fp.anthropic_client()

    def resume(state: dict[str, Any], from_step: int, next_node: str | None) -> dict[str, Any]:
        return go(state, next_node)

    def go(state: dict[str, Any], start_at: str | None = None) -> dict[str, Any]:
        order = ["intake", "draft", "polish"]
        with flowscope.run(name, input=state if start_at is None else None):
            for step_name in order[order.index(start_at) if start_at else 0:]:
                with flowscope.node(step_name):
                    if step_name == "intake":
                        state["question"] = question
                    elif step_name == "draft":
                        m = client.messages.create(model="claude-haiku-4-5", max_tokens=100,
                                                   messages=[{"role": "user", "content": state["question"]}])
                        state["draft"] = m.content[0].text
                    else:
                        with client.messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=[
                                {"role": "user", "content": "polish: " + state["draft"]}]) as stream:
                            state["final"] = "".join(stream.text_stream)
                    key = {"intake": "question", "draft": "draft", "polish": "final"}[step_name]
                    flowscope.record_state(key, state[key])
        return state

    return {"go": go, "resume": resume}


def test_anthropic_create_and_stream_are_replayed_from_the_recording(fs: Client, fake_provider: FakeProvider) -> None:
    fake_provider.set_default(lambda req: Reply(text="ok: " + str(req.body["messages"][-1]["content"])[:30]))
    name = f"claude-{uuid.uuid4().hex[:6]}"
    flow = _anthropic_flow(fake_provider, name, "refund?")
    original = flow["go"]({})
    run1 = wait_run(fs, name)
    sent_before = len(fake_provider.requests)
    result = flowscope.replay(run1["run_id"], flow["resume"], from_step=0, llm="recorded-only", client=fs)
    assert len(fake_provider.requests) == sent_before  # nothing went out
    assert (result.recorded_calls, result.live_calls, result.unreplayable) == (2, 0, [])
    assert result.output["final"] == original["final"] and result.output["draft"] == original["draft"]
    run2 = wait_run(fs, name, after={run1["run_id"]})
    assert run2["cost_usd"] == 0 and run1["cost_usd"] > 0
    assert run2["llm_calls"] == 2


def test_a_run_recorded_without_content_says_which_calls_cannot_be_replayed(
    keyed: CollectorProcess, fake_provider: FakeProvider
) -> None:
    flowscope.init(service_name="replay-tests", endpoint=keyed.url, api_key=KEY_A, capture_content=False)
    fake_provider.set_default(lambda req: Reply(text="ok"))
    name = f"nocontent-{uuid.uuid4().hex[:6]}"
    flow = _anthropic_flow(fake_provider, name, "refund?")
    flow["go"]({})
    with Client(keyed.url, api_key=KEY_A) as client:
        run1 = wait_run(client, name)
        result = flowscope.replay(run1["run_id"], flow["resume"], from_step=0, client=client)
        assert [u.step for u in result.unreplayable] == [1, 2]
        assert all("without content capture" in u.reason for u in result.unreplayable)
        assert (result.recorded_calls, result.live_calls) == (0, 2)
        with pytest.raises(ReplayError, match="recorded-only"):
            flowscope.replay(run1["run_id"], flow["resume"], from_step=0, llm="recorded-only", client=client)
    flowscope.force_flush()


def test_tool_calls_are_replayed_streamed_or_not(fs: Client, fake_provider: FakeProvider) -> None:
    from flowscope.testing import ToolCall

    tools_oa = [{"type": "function", "function": {"name": "refund", "parameters": {"type": "object"}}}]
    tools_an = [{"name": "refund", "input_schema": {"type": "object"}}]
    fake_provider.set_default(Reply(tool_calls=[ToolCall("refund", {"order": "o-1", "amount": 12})]))
    oa, an = fake_provider.openai_client(), fake_provider.anthropic_client()
    name = f"tools-{uuid.uuid4().hex[:6]}"

    def go(state: dict[str, Any], start_at: str | None = None) -> dict[str, Any]:
        order = ["intake", "openai", "anthropic"]
        with flowscope.run(name, input=state if start_at is None else None):
            for step_name in order[order.index(start_at) if start_at else 0:]:
                with flowscope.node(step_name):
                    if step_name == "intake":
                        state["q"] = "refund o-1"
                    elif step_name == "openai":
                        chunks = oa.chat.completions.create(
                            model="gpt-4o-mini", messages=[{"role": "user", "content": state["q"]}], tools=tools_oa,
                            stream=True, stream_options={"include_usage": True})
                        parts: dict[int, list[str]] = {}
                        for c in chunks:
                            for d in (c.choices[0].delta.tool_calls or []) if c.choices else []:
                                parts.setdefault(d.index, []).append(d.function.arguments or "")
                        state["oa_args"] = [json.loads("".join(p)) for _, p in sorted(parts.items())]
                    else:
                        m = an.messages.create(model="claude-haiku-4-5", max_tokens=100, tools=tools_an,
                                               messages=[{"role": "user", "content": state["q"]}])
                        state["an_calls"] = [(b.name, b.input) for b in m.content if b.type == "tool_use"]
                        state["an_text_blocks"] = sum(b.type == "text" for b in m.content)
                    flowscope.record_state("", dict(state))
        return state

    original = go({})
    assert original["oa_args"] == [{"order": "o-1", "amount": 12}]
    run1 = wait_run(fs, name)
    sent_before = len(fake_provider.requests)
    result = flowscope.replay(run1["run_id"], lambda s, k, nxt: go(s, nxt), from_step=0, llm="recorded-only",
                              client=fs)
    assert len(fake_provider.requests) == sent_before and result.unreplayable == []
    assert result.output["oa_args"] == original["oa_args"]
    assert result.output["an_calls"] == original["an_calls"] == [("refund", {"order": "o-1", "amount": 12})]
    assert result.output["an_text_blocks"] == original["an_text_blocks"] == 0


def test_langgraph_messages_and_subgraphs_fork_through_the_reducers(fs: Client, fake_provider: FakeProvider) -> None:
    from langgraph.graph import END, START, StateGraph

    fixed = {"ok": False}

    def agent(s: Chat) -> Chat:
        return {"messages": [AIMessage("", id="a1", tool_calls=[{"name": "lookup", "args": {"q": "x"}, "id": "c1"}])]}

    def tools(s: Chat) -> Chat:
        return {"messages": [ToolMessage("42", tool_call_id="c1", id="t1")]}

    def check(s: Chat) -> Chat:
        if not fixed["ok"]:
            raise RuntimeError("checker crashed")
        return {"messages": [AIMessage("checked", id="k1")]}

    def respond(s: Chat) -> Chat:
        return {"messages": [AIMessage(f"answer: {s['messages'][-2].content}", id="r1")]}

    inner = StateGraph(Chat)
    inner.add_node("tools", tools)
    inner.add_node("check", check)
    inner.add_edge(START, "tools")
    inner.add_edge("tools", "check")
    inner.add_edge("check", END)

    def build() -> Any:
        g = StateGraph(Chat)
        g.add_node("agent", agent)
        g.add_node("work", inner.compile())
        g.add_node("respond", respond)
        g.add_edge(START, "agent")
        g.add_edge("agent", "work")
        g.add_edge("work", "respond")
        g.add_edge("respond", END)
        return g.compile(name=name)

    name = f"agent-{uuid.uuid4().hex[:6]}"
    with pytest.raises(RuntimeError, match="checker crashed"):
        build().invoke({"messages": [HumanMessage("hi", id="h1")]})
    run1 = wait_run(fs, name)
    steps = [(n["step"], n["name"]) for n in fs.nodes(run1["run_id"])]
    assert steps == [(0, "agent"), (1, "work"), (2, "tools"), (3, "check")]
    with pytest.raises(ReplayError, match=r"step 2 \('tools'\) ran inside a subgraph.*0 \(agent\), 1 \(work\)"):
        flowscope.replay(run1["run_id"], build(), from_step=2, client=fs)

    fixed["ok"] = True
    result = flowscope.replay(run1["run_id"], build(), from_step=0, client=fs)
    seeded = list(result.details["graph"].get_state_history(result.details["config"]))[-1]  # the oldest
    # the fork's checkpoint holds real messages again, through add_messages
    assert seeded.values["messages"] == [HumanMessage("hi", id="h1"), agent({"messages": []})["messages"][0]]
    assert [type(m) for m in result.output["messages"]] == [HumanMessage, AIMessage, ToolMessage, AIMessage, AIMessage]
    assert result.output["messages"][-1].content == "answer: 42"
    run2 = wait_run(fs, name, after={run1["run_id"]})
    assert [n["name"] for n in fs.nodes(run2["run_id"])] == ["agent", "work", "tools", "check", "respond"]
    assert fs.state(run2["run_id"], 0) == fs.state(run1["run_id"], 0)
