"""PocketFlow, instrumented for real: runs, node order, retries, fallbacks, batches and shared-store state.

The oracle for state is PocketFlow's own shared dict: every node copies it at the
end of its ``post``, and flowscope's state at that node's step must equal the copy.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import openai
import pocketflow
import pytest

import flowscope
from flowscope.core import semconv, views
from flowscope.instrumentation.pocketflow import EVENT_FALLBACK, NODE_FALLBACK, PocketFlowInstrumentor
from tests._runtime_kit import MemoryKit, attrs, children, llm_spans, nodes, parent_of

MODEL = "gpt-4o-mini"


class Recorder:
    """Copies of the shared store, one per finished node, in execution order."""

    def __init__(self) -> None:
        self.snapshots: list[tuple[str, dict[str, Any]]] = []

    def take(self, name: str, shared: dict[str, Any]) -> None:
        self.snapshots.append((name, copy.deepcopy(shared)))


def build_flow(client: openai.OpenAI, rec: Recorder, fail_first: dict[str, int]) -> pocketflow.Flow:
    class Load(pocketflow.Node):
        def prep(self, shared):
            return shared["question"]

        def exec(self, question):
            return question.strip()

        def post(self, shared, prep_res, exec_res):
            shared["question"] = exec_res
            shared["history"] = [exec_res]
            rec.take("Load", shared)

    class Classify(pocketflow.Node):
        def exec(self, _):
            r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "classify"}])
            return r.choices[0].message.content

        def post(self, shared, prep_res, exec_res):
            shared["label"] = exec_res
            rec.take("Classify", shared)
            return "deep"

    class Deep(pocketflow.Node):
        def exec(self, _):
            if fail_first["Deep"] > 0:
                fail_first["Deep"] -= 1
                raise TimeoutError("flaky upstream")
            r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "think"}])
            return r.choices[0].message.content

        def post(self, shared, prep_res, exec_res):
            shared["history"].append("deep")
            shared["answer"] = exec_res
            del shared["label"]
            rec.take("Deep", shared)

    class Shallow(pocketflow.Node):
        def post(self, shared, prep_res, exec_res):
            shared["answer"] = "shallow"
            rec.take("Shallow", shared)

    class Draft(pocketflow.Node):
        def post(self, shared, prep_res, exec_res):
            shared.setdefault("doc", {})["draft"] = "v1"
            rec.take("Draft", shared)

    class Review(pocketflow.Node):
        def exec(self, _):
            r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "review"}])
            return r.choices[0].message.content

        def post(self, shared, prep_res, exec_res):
            shared["doc"]["review"] = exec_res
            shared["doc"]["draft"] = "v2"
            rec.take("Review", shared)

    class Finish(pocketflow.Node):
        def post(self, shared, prep_res, exec_res):
            shared["history"].append("finish")
            shared["done"] = True
            rec.take("Finish", shared)

    load, classify, deep, shallow = Load(), Classify(), Deep(max_retries=3, wait=0), Shallow()
    draft, review, finish = Draft(), Review(), Finish()
    draft >> review
    sub = pocketflow.Flow(start=draft)
    sub.name = "Editing"
    load >> classify
    classify - "deep" >> deep
    classify - "shallow" >> shallow
    deep >> sub
    sub >> finish
    flow = pocketflow.Flow(start=load)
    flow.name = "Answering"
    return flow


def test_flow_spans_order_retries_and_state(mem: MemoryKit, fake_provider) -> None:
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")
    rec = Recorder()
    flow = build_flow(client, rec, {"Deep": 2})
    shared: dict[str, Any] = {"question": "  why is the sky blue? "}
    flow.run(shared)

    (run_span,) = mem.runs("Answering")
    run_id = attrs(run_span)[semconv.RUN_ID]
    spans = mem.run_spans(run_id)
    ns = nodes(spans)
    names = [attrs(n)[semconv.NODE_NAME] for n in ns]
    assert names == ["Load", "Classify", "Deep", "Editing", "Draft", "Review", "Finish"]
    assert [attrs(n)[semconv.NODE_STEP] for n in ns] == list(range(7))

    by_name = {attrs(n)[semconv.NODE_NAME]: n for n in ns}
    # branch taken by the router node
    assert attrs(by_name["Classify"])[semconv.NODE_TYPE] == "router"
    assert attrs(by_name["Classify"])[semconv.ROUTER_BRANCH] == "deep"
    # two failed tries, then success on the third
    deep = by_name["Deep"]
    assert attrs(deep)[semconv.RETRY_COUNT] == 2
    assert attrs(deep)[semconv.NODE_ATTEMPT] == 2
    retries = [e for e in deep.events if e.name == semconv.EVENT_RETRY]
    assert [e.attributes[semconv.RETRY_ATTEMPT] for e in retries] == [0, 1]
    assert {e.attributes[semconv.ERROR_TYPE] for e in retries} == {"TimeoutError"}
    # the subflow nests its nodes
    editing = by_name["Editing"]
    assert attrs(editing)[semconv.NODE_TYPE] == "subflow"
    assert [attrs(c)[semconv.NODE_NAME] for c in children(editing, spans)] == ["Draft", "Review"]
    assert parent_of(editing, spans) is run_span
    # LLM calls are children of the node that made them
    llms = llm_spans(spans)
    assert len(llms) == 3
    assert sorted(attrs(parent_of(s, spans))[semconv.NODE_NAME] for s in llms) == ["Classify", "Deep", "Review"]

    # state at every step equals PocketFlow's own shared dict at that point
    view = mem.view(run_id)
    assert view.state(-1) == {"question": "  why is the sky blue? "}
    step_of = {attrs(n)[semconv.NODE_NAME]: attrs(n)[semconv.NODE_STEP] for n in ns}
    for name, snapshot in rec.snapshots:
        assert view.state(step_of[name]) == snapshot, name
    # the subflow's own step shows the store as it entered the subflow
    assert view.state(step_of["Editing"]) == dict(rec.snapshots[2][1])
    assert view.state(6) == shared
    assert views.state_at(view.events, 100) == shared


def test_failure_after_retries_marks_node_and_run(mem: MemoryKit) -> None:
    class Broken(pocketflow.Node):
        def exec(self, _):
            raise ValueError("bad input")

    flow = pocketflow.Flow(start=Broken(max_retries=2))
    with pytest.raises(ValueError, match="bad input"):
        flow.run({"x": 1})
    (run_span,) = mem.runs("Broken flow")
    spans = mem.run_spans(attrs(run_span)[semconv.RUN_ID])
    (node,) = nodes(spans)
    assert node.status.status_code.name == "ERROR"
    assert attrs(node)[semconv.ERROR_TYPE] == "ValueError"
    assert attrs(node)[semconv.RETRY_COUNT] == 1
    assert run_span.status.status_code.name == "ERROR"
    assert any(e.name == EVENT_FALLBACK for e in node.events)  # the default fallback re-raised


def test_exec_fallback_recovers(mem: MemoryKit) -> None:
    class Guarded(pocketflow.Node):
        def exec(self, _):
            raise ConnectionError("down")

        def exec_fallback(self, prep_res, exc):
            return "cached answer"

        def post(self, shared, prep_res, exec_res):
            shared["answer"] = exec_res

    shared: dict[str, Any] = {}
    pocketflow.Flow(start=Guarded(max_retries=3)).run(shared)
    assert shared == {"answer": "cached answer"}
    (run_span,) = mem.runs("Guarded flow")
    run_id = attrs(run_span)[semconv.RUN_ID]
    (node,) = nodes(mem.run_spans(run_id))
    assert node.status.status_code.name != "ERROR"
    assert attrs(node)[NODE_FALLBACK] is True
    assert attrs(node)[semconv.RETRY_COUNT] == 2
    assert mem.view(run_id).state(0) == {"answer": "cached answer"}


def test_batch_flow_and_batch_node(mem: MemoryKit) -> None:
    rec = Recorder()

    class Square(pocketflow.BatchNode):
        def prep(self, shared):
            return shared["numbers"]

        def exec(self, item):
            return item * item * self.params["scale"]

        def post(self, shared, prep_res, exec_res):
            shared.setdefault("results", []).append(sum(exec_res))
            rec.take("Square", shared)

    class PerScale(pocketflow.BatchFlow):
        def prep(self, shared):
            return [{"scale": 1}, {"scale": 10}]

    shared: dict[str, Any] = {"numbers": [1, 2, 3]}
    PerScale(start=Square()).run(shared)
    assert shared["results"] == [14, 140]
    (run_span,) = mem.runs("PerScale")
    run_id = attrs(run_span)[semconv.RUN_ID]
    ns = nodes(mem.run_spans(run_id))
    assert [attrs(n)[semconv.NODE_NAME] for n in ns] == ["Square", "Square"]
    view = mem.view(run_id)
    for step, (_, snapshot) in enumerate(rec.snapshots):
        assert view.state(step) == snapshot


def test_async_flow_parallel_batch_with_llm_calls(mem: MemoryKit, fake_provider) -> None:
    aclient = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")

    class Summarize(pocketflow.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return shared["docs"]

        async def exec_async(self, doc):
            r = await aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": doc}])
            return r.choices[0].message.content

        async def post_async(self, shared, prep_res, exec_res):
            shared["summaries"] = exec_res
            return "default"

    class Tag(pocketflow.AsyncNode):
        async def exec_async(self, _):
            await asyncio.sleep(0)
            return "tagged"

        async def post_async(self, shared, prep_res, exec_res):
            shared[f"tag_{self.params.get('lang', 'none')}"] = exec_res

    class Langs(pocketflow.AsyncParallelBatchFlow):
        async def prep_async(self, shared):
            return [{"lang": "en"}, {"lang": "fr"}, {"lang": "de"}]

    summarize = Summarize()
    summarize >> Langs(start=Tag())
    flow = pocketflow.AsyncFlow(start=summarize)
    shared: dict[str, Any] = {"docs": ["one doc", "two doc", "three doc"]}
    asyncio.run(flow.run_async(shared))
    assert len(shared["summaries"]) == 3 and shared["tag_en"] == shared["tag_fr"] == "tagged"

    (run_span,) = mem.runs("Summarize flow")
    run_id = attrs(run_span)[semconv.RUN_ID]
    spans = mem.run_spans(run_id)
    ns = nodes(spans)
    assert [attrs(n)[semconv.NODE_NAME] for n in ns][:2] == ["Summarize", "Langs"]
    assert sorted(attrs(n)[semconv.NODE_NAME] for n in ns[2:]) == ["Tag", "Tag", "Tag"]
    llms = llm_spans(spans)
    assert len(llms) == 3
    summarize_span = ns[0]
    assert all(parent_of(s, spans) is summarize_span for s in llms)
    langs = ns[1]
    assert all(parent_of(n, spans) is langs for n in ns[2:])
    assert mem.view(run_id).state(max(attrs(n)[semconv.NODE_STEP] for n in ns)) == shared


def test_flow_inside_a_hand_made_run(mem: MemoryKit) -> None:
    class Step(pocketflow.Node):
        def post(self, shared, prep_res, exec_res):
            shared["n"] = shared.get("n", 0) + 1

    with flowscope.run("outer") as run:
        with flowscope.node("before"):
            flowscope.record_state("phase", "start")
        pocketflow.Flow(start=Step()).run({"n": 0})
    spans = mem.run_spans(run.id)
    ns = nodes(spans)
    assert [(attrs(n)[semconv.NODE_NAME], attrs(n)[semconv.NODE_TYPE]) for n in ns] == [
        ("before", "task"), ("Step flow", "subflow"), ("Step", "task")]
    assert mem.view(run.id).state(2) == {"phase": "start", "n": 1}


def test_instrument_twice_and_uninstrument(mem: MemoryKit) -> None:
    inst = PocketFlowInstrumentor()
    inst.instrument()  # already instrumented by init(): harmless
    shared: dict[str, Any] = {}

    class Once(pocketflow.Node):
        def post(self, shared, prep_res, exec_res):
            shared["ran"] = shared.get("ran", 0) + 1

    pocketflow.Flow(start=Once()).run(shared)
    assert shared == {"ran": 1}
    assert len(nodes(mem.spans())) == 1
    inst.uninstrument()
    try:
        mem.clear()
        pocketflow.Flow(start=Once()).run(shared)
        assert shared == {"ran": 2}
        assert mem.spans() == []
    finally:
        inst.instrument()


def test_state_through_the_collector(traced, fake_provider) -> None:
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")
    rec = Recorder()
    flow = build_flow(client, rec, {"Deep": 1})
    shared: dict[str, Any] = {"question": "what is flowscope?"}
    with flowscope.run("pocket-outer") as run:
        flow.run(shared)
    assert flowscope.force_flush()
    traced.wait_for_run(run.id, spans=12)  # run + subflow-run + 7 nodes + 3 llm
    listing = traced.get(f"/api/v1/runs/{run.id}/nodes").json()["nodes"]
    names = [n["name"] for n in listing]
    assert names == ["Answering", "Load", "Classify", "Deep", "Editing", "Draft", "Review", "Finish"]
    step_of = {n["name"]: n["step"] for n in listing}
    for name, snapshot in rec.snapshots:
        got = traced.get(f"/api/v1/runs/{run.id}/state", params={"at": step_of[name]}).json()
        assert got["state"] == snapshot, name


def test_run_names_follow_the_flow_not_pocketflows_base_class(mem: MemoryKit) -> None:
    """A run is named after its flow's ``name``, else its class; a plain ``Flow``/``AsyncFlow``
    (PocketFlow's own class says nothing about the flow) after its start node (issue 20)."""

    class Lookup(pocketflow.Node):
        pass

    class Refunds(pocketflow.Flow):
        pass

    pocketflow.Flow(start=Lookup()).run({})
    Refunds(start=Lookup()).run({})
    named = pocketflow.Flow(start=Lookup())
    named.name = "support"
    named.run({})
    asyncio.run(pocketflow.AsyncFlow(start=Lookup()).run_async({}))
    pocketflow.Flow().run({})  # no start node: nothing better than the class
    got = sorted(attrs(r)[semconv.GEN_AI_WORKFLOW_NAME] for r in mem.runs())
    assert got == sorted(["Lookup flow", "Refunds", "support", "Lookup flow", "Flow"])
