"""PenguiFlow, instrumented for real: a run per trace_id, node spans per attempt, messages as state.

The oracle for state is PenguiFlow's own message bus, which receives an envelope
for every message crossing an edge: flowscope's state at a node's step must
equal the edges' latest messages from the input and every node up to that step.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai
from penguiflow import WM, Headers, Message, Node, NodePolicy, create
from penguiflow.types import FinalAnswer, StreamChunk

import flowscope
from flowscope.core import semconv
from flowscope.core.state import join_path, to_jsonable
from flowscope.instrumentation.penguiflow import EVENT_CANCEL, STOP_REASON, STREAM_CHUNKS, TRACE_ID
from tests._runtime_kit import MemoryKit, attrs, children, llm_spans, nodes, parent_of

MODEL = "gpt-4o-mini"
HEADERS = Headers(tenant="acme")


class Bus:
    """PenguiFlow's MessageBus protocol: sees every message that crosses an edge."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def publish(self, envelope: Any) -> None:
        self.envelopes.append(envelope)


def expected_state(envelopes: list[Any], sources: set[str], prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for env in envelopes:
        if env.source in sources and not isinstance(getattr(env.payload, "payload", None), StreamChunk):
            key = f"{env.source}->{env.target}"
            if prefix:
                state.setdefault(prefix[0], {})[key] = to_jsonable(env.payload)
            else:
                state[key] = to_jsonable(env.payload)
    return state


async def run_once(flow: Any, message: Message, fetches: int = 1) -> list[Any]:
    flow.run()
    try:
        await flow.emit(message)
        return [await asyncio.wait_for(flow.fetch(), 10) for _ in range(fetches)]
    finally:
        await flow.stop()


def node_rows(spans: list[Any]) -> list[tuple[str, int, int, str]]:
    return [(attrs(n)[semconv.NODE_NAME], attrs(n)[semconv.NODE_STEP], attrs(n)[semconv.NODE_ATTEMPT],
             n.status.status_code.name) for n in nodes(spans)]


def test_linear_flow_retry_llm_calls_and_state(mem: MemoryKit, fake_provider) -> None:
    aclient = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")
    fails = {"enrich": 2}

    async def draft(msg: Message, ctx: Any) -> Message:
        r = await aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": msg.payload}])
        return msg.model_copy(update={"payload": r.choices[0].message.content})

    async def enrich(msg: Message, ctx: Any) -> Message:
        if fails["enrich"] > 0:
            fails["enrich"] -= 1
            raise ConnectionError("enrichment service down")
        return msg.model_copy(update={"payload": msg.payload + " +facts"})

    async def polish(msg: Message, ctx: Any) -> Message:
        r = await aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "polish"}])
        return msg.model_copy(update={"payload": {"final": msg.payload, "note": r.choices[0].message.content}})

    a = Node(draft, name="draft")
    b = Node(enrich, name="enrich", policy=NodePolicy(max_retries=3, backoff_base=0.001))
    c = Node(polish, name="polish")
    bus = Bus()
    flow = create(a.to(b), b.to(c), c.to(), message_bus=bus)
    flow.name = "writer"
    msg = Message(payload="write about penguins", headers=HEADERS)
    (out,) = asyncio.run(run_once(flow, msg))
    assert out.payload["final"].endswith("+facts")

    (run_span,) = mem.runs("writer")
    run_id = attrs(run_span)[semconv.RUN_ID]
    assert run_id == msg.trace_id == attrs(run_span)[TRACE_ID]  # the trace id is the run id
    spans = mem.run_spans(run_id)
    assert node_rows(spans) == [
        ("draft", 0, 0, "UNSET"),
        ("enrich", 1, 0, "ERROR"), ("enrich", 1, 1, "ERROR"), ("enrich", 1, 2, "UNSET"),
        ("polish", 2, 0, "UNSET"),
    ]
    failed = [n for n in nodes(spans) if n.status.status_code.name == "ERROR"]
    for n in failed:
        assert attrs(n)[semconv.ERROR_TYPE] == "ConnectionError"
        (retry,) = [e for e in n.events if e.name == semconv.EVENT_RETRY]
        assert retry.attributes[semconv.RETRY_BACKOFF_S] > 0
    assert flowscope.core.views.summarize([r for r in map(_record, spans)])["retries"] == 2
    # LLM calls are children of their node's span
    assert sorted(attrs(parent_of(s, spans))[semconv.NODE_NAME] for s in llm_spans(spans)) == ["draft", "polish"]
    assert all(parent_of(n, spans) is run_span for n in nodes(spans))

    view = mem.view(run_id)
    order = ["draft", "enrich", "polish"]
    assert view.state(-1) == expected_state(bus.envelopes, {"OpenSea"})
    for step, name in enumerate(order):
        assert view.state(step) == expected_state(bus.envelopes, {"OpenSea", *order[: step + 1]}), name
    assert set(view.state(2)) == {"OpenSea->draft", "draft->enrich", "enrich->polish", "polish->Rookery"}


def _summary(spans: list[Any]) -> dict[str, Any]:
    return flowscope.core.views.summarize([_record(s) for s in spans])


def _record(span: Any) -> Any:
    from tests._runtime_kit import record

    return record(span)


def test_router_failure_and_timeout_codes(mem: MemoryKit) -> None:
    async def triage(msg: Message, ctx: Any) -> None:
        target = slow if msg.payload == "slow" else broken
        await ctx.emit(msg, to=target)
        return None

    async def broken_fn(msg: Message, ctx: Any) -> Message:
        raise ValueError("cannot parse")

    async def slow_fn(msg: Message, ctx: Any) -> Message:
        await asyncio.sleep(5)
        return msg

    router = Node(triage, name="triage")
    broken = Node(broken_fn, name="broken")
    slow = Node(slow_fn, name="slow", policy=NodePolicy(timeout_s=0.05, max_retries=1, backoff_base=0.001))
    flow = create(router.to(broken, slow), broken.to(), slow.to(), emit_errors_to_rookery=True)

    async def go() -> list[Any]:
        flow.run()
        try:
            m1 = Message(payload="bad", headers=HEADERS)
            m2 = Message(payload="slow", headers=HEADERS)
            await flow.emit(m1)
            await flow.emit(m2)
            return [await asyncio.wait_for(flow.fetch(), 10) for _ in range(2)]
        finally:
            await flow.stop()

    results = asyncio.run(go())
    codes = sorted(str(getattr(r.code, "value", r.code)) for r in results)
    assert codes == ["NODE_EXCEPTION", "NODE_TIMEOUT"]

    runs = mem.runs("penguiflow")
    assert len(runs) == 2
    by_last: dict[str, list[Any]] = {}
    for r in runs:
        ns = nodes(mem.run_spans(attrs(r)[semconv.RUN_ID]))
        by_last[attrs(ns[-1])[semconv.NODE_NAME]] = ns
    bad = by_last["broken"]
    assert [attrs(n)[semconv.NODE_NAME] for n in bad] == ["triage", "broken"]
    assert attrs(bad[-1])[semconv.ERROR_TYPE] == "NODE_EXCEPTION"
    timed = by_last["slow"]
    assert [(attrs(n)[semconv.NODE_NAME], attrs(n)[semconv.NODE_ATTEMPT]) for n in timed] == [
        ("triage", 0), ("slow", 0), ("slow", 1)]
    assert [attrs(n)[semconv.ERROR_TYPE] for n in timed[1:]] == ["NODE_TIMEOUT", "NODE_TIMEOUT"]
    assert all(n.status.status_code.name == "ERROR" for n in timed[1:])
    # each trace's only result is a FlowError: its flow delivered an error, so the run is an error run
    for ns in (bad, timed):
        run_id = attrs(ns[0])[semconv.RUN_ID]
        assert _summary(mem.run_spans(run_id))["status"] == "error", run_id


def test_playbook_subflow_nests_under_the_calling_node(mem: MemoryKit) -> None:
    sub_bus = Bus()

    async def lookup(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": msg.payload + " [looked up]"})

    async def summarize(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": msg.payload + " [summarized]"})

    def playbook() -> tuple[Any, None]:
        x, y = Node(lookup, name="lookup"), Node(summarize, name="summarize")
        sub = create(x.to(y), y.to(), message_bus=sub_bus)
        sub.name = "research-playbook"
        return sub, None

    async def research(msg: Message, ctx: Any) -> Message:
        found = await ctx.call_playbook(playbook, msg)
        return msg.model_copy(update={"payload": found})

    async def answer(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": "answer: " + msg.payload})

    bus = Bus()
    r, a = Node(research, name="research"), Node(answer, name="answer")
    flow = create(r.to(a), a.to(), message_bus=bus)
    flow.name = "qa"
    (out,) = asyncio.run(run_once(flow, Message(payload="q", headers=HEADERS)))
    assert out.payload == "answer: q [looked up] [summarized]"

    (run_span,) = mem.runs("qa")
    run_id = attrs(run_span)[semconv.RUN_ID]
    spans = mem.run_spans(run_id)
    ns = nodes(spans)
    assert [attrs(n)[semconv.NODE_NAME] for n in ns] == ["research", "research-playbook", "lookup", "summarize",
                                                          "answer"]
    research_span, sub_span = ns[0], ns[1]
    assert attrs(sub_span)[semconv.NODE_TYPE] == "subflow"
    assert parent_of(sub_span, spans) is research_span
    assert [attrs(c)[semconv.NODE_NAME] for c in children(sub_span, spans)] == ["lookup", "summarize"]
    # stop() cancels the subflow's workers, which inherited the calling node's context: that
    # is PenguiFlow's node_cancelled (no trace id), not a cancelled trace, so nothing failed
    assert [(attrs(n)[semconv.NODE_NAME], n.status.status_code.name, attrs(n).get(semconv.ERROR_TYPE))
            for n in ns if n.status.status_code.name == "ERROR"] == []
    assert _summary(spans)["status"] == "ok" and _summary(spans)["errors"] == 0
    # the calling node was open until it returned, so it ended after its subflow did
    assert research_span.end_time >= sub_span.end_time

    view = mem.view(run_id)
    top = expected_state(bus.envelopes, {"OpenSea", "research", "answer"})
    inner = expected_state(sub_bus.envelopes, {"OpenSea", "lookup", "summarize"}, prefix=("research",))
    assert view.state(4) == {**top, **inner}
    # inside the subflow, after "lookup": the parent input plus the subflow's first two edges
    lookup_only = expected_state(sub_bus.envelopes, {"OpenSea", "lookup"}, prefix=("research",))
    assert view.state(2) == {**expected_state(bus.envelopes, {"OpenSea"}), **lookup_only}
    assert join_path(["research", "OpenSea->lookup"]) == "research.OpenSea->lookup"


def test_streaming_chunks_give_time_to_first_chunk(mem: MemoryKit) -> None:
    async def stream(msg: Message, ctx: Any) -> Message:
        for i, word in enumerate(["pen", "gu", "ins"]):
            await ctx.emit_chunk(parent=msg, text=word, done=i == 2)
        return msg.model_copy(update={"payload": "penguins"})

    s = Node(stream, name="stream")
    flow = create(s.to())
    results = asyncio.run(run_once(flow, Message(payload="go", headers=HEADERS), fetches=4))
    assert [r.payload.text for r in results[:3]] == ["pen", "gu", "ins"]
    (run_span,) = mem.runs("penguiflow")
    (node,) = nodes(mem.run_spans(attrs(run_span)[semconv.RUN_ID]))
    assert attrs(node)[STREAM_CHUNKS] == 3
    assert 0 < attrs(node)[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] < 5
    assert attrs(run_span)[STREAM_CHUNKS] == 3
    assert attrs(run_span)[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    # chunks are not state; the final message is
    assert set(mem.view(attrs(run_span)[semconv.RUN_ID]).state(0)) == {"OpenSea->stream", "stream->Rookery"}


def test_cancel_deadline_and_hop_budget(mem: MemoryKit) -> None:
    started = asyncio.Event

    async def waits(msg: Message, ctx: Any) -> Message:
        await asyncio.sleep(5)
        return msg

    w = Node(waits, name="waits")
    flow = create(w.to())

    async def cancel_one() -> None:
        flow.run()
        try:
            msg = Message(payload="x", headers=HEADERS)
            await flow.emit(msg)
            await asyncio.sleep(0.05)
            assert await flow.cancel(msg.trace_id)
            await asyncio.sleep(0.05)
        finally:
            await flow.stop()

    asyncio.run(cancel_one())
    (run_span,) = mem.runs("penguiflow")
    assert attrs(run_span)[semconv.ERROR_TYPE] == "TRACE_CANCELLED"
    assert any(e.name == EVENT_CANCEL for e in run_span.events)
    (node,) = nodes(mem.run_spans(attrs(run_span)[semconv.RUN_ID]))
    assert node.status.status_code.name == "ERROR"
    assert attrs(node)[semconv.ERROR_TYPE] == "TRACE_CANCELLED"  # one spelling, the run's
    del started

    # a message past its deadline is skipped; the runtime answers DEADLINE_EXCEEDED
    mem.clear()
    expired = Message(payload="late", headers=HEADERS, deadline_s=time.time() - 1)
    (out,) = asyncio.run(run_once(create(Node(waits, name="waits").to()), expired))
    assert isinstance(out.payload, FinalAnswer)
    (run_span,) = mem.runs("penguiflow")
    assert attrs(run_span)[STOP_REASON] == "DEADLINE_EXCEEDED"
    assert nodes(mem.run_spans(attrs(run_span)[semconv.RUN_ID])) == []

    # a controller loop that runs out of hops
    mem.clear()

    async def controller(msg: Message, ctx: Any) -> Message:
        wm = msg.payload
        return msg.model_copy(update={"payload": wm.model_copy(update={"facts": [*wm.facts, wm.hops]})})

    loop_node = Node(controller, name="controller", allow_cycle=True)
    loop_flow = create(loop_node.to(loop_node), allow_cycles=True)
    (out,) = asyncio.run(run_once(loop_flow, Message(payload=WM(query="q", budget_hops=3), headers=HEADERS)))
    assert isinstance(out.payload, FinalAnswer)
    (run_span,) = mem.runs("penguiflow")
    assert attrs(run_span)[STOP_REASON] == "HOP_BUDGET_EXHAUSTED"
    steps = nodes(mem.run_spans(attrs(run_span)[semconv.RUN_ID]))
    assert [attrs(n)[semconv.NODE_NAME] for n in steps[:3]] == ["controller"] * 3
    assert attrs(steps[2]).get(STOP_REASON) == "HOP_BUDGET_EXHAUSTED"


def test_concurrent_traces_are_separate_runs(mem: MemoryKit, fake_provider) -> None:
    aclient = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")

    async def think(msg: Message, ctx: Any) -> Message:
        await asyncio.sleep(0.01)
        r = await aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": msg.payload}])
        return msg.model_copy(update={"payload": r.choices[0].message.content})

    async def done(msg: Message, ctx: Any) -> Message:
        return msg

    t, d = Node(think, name="think"), Node(done, name="done")
    flow = create(t.to(d), d.to())

    async def go() -> list[Message]:
        flow.run()
        try:
            msgs = [Message(payload=f"question {i}", headers=HEADERS) for i in range(4)]
            for m in msgs:
                await flow.emit(m)
            for _ in msgs:
                await asyncio.wait_for(flow.fetch(), 10)
            return msgs
        finally:
            await flow.stop()

    msgs = asyncio.run(go())
    runs = mem.runs("penguiflow")
    assert sorted(attrs(r)[semconv.RUN_ID] for r in runs) == sorted(m.trace_id for m in msgs)
    for r in runs:
        spans = mem.run_spans(attrs(r)[semconv.RUN_ID])
        assert [attrs(n)[semconv.NODE_NAME] for n in nodes(spans)] == ["think", "done"]
        (llm,) = llm_spans(spans)
        assert parent_of(llm, spans) is nodes(spans)[0]
        assert all(s.context.trace_id == r.context.trace_id for s in spans)
