"""Runtime metadata becomes run attributes: LangGraph config metadata, PenguiFlow Message.meta."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from penguiflow import Headers, Message, Node, create

from flowscope.core import semconv
from tests._runtime_kit import MemoryKit, attrs, nodes


class S(TypedDict):
    x: int


def test_langgraph_config_metadata_and_thread_are_run_attributes() -> None:
    mem = MemoryKit()
    g = StateGraph(S)
    g.add_node("step", lambda s: {"x": s["x"] + 1})
    g.add_edge(START, "step")
    g.add_edge("step", END)
    graph = g.compile()
    graph.invoke({"x": 1}, config={"metadata": {"user_id": "u-7", "tenant": "acme", "langgraph_other": 1},
                                   "configurable": {"thread_id": "t-1"}})
    (run,) = mem.runs()
    spans = mem.run_spans(attrs(run)[semconv.RUN_ID])
    (node,) = nodes(spans)
    for span in (run, node):  # on every span of the run, not only the root
        a = attrs(span)
        assert a[semconv.USER_ID] == "u-7"
        assert a[semconv.RUN_ATTR_PREFIX + "tenant"] == "acme"
        assert a[semconv.GEN_AI_CONVERSATION_ID] == "t-1"
    assert not any(k.endswith("langgraph_other") for k in attrs(run))  # other metadata stays out


def test_penguiflow_message_meta_and_tenant_are_run_attributes() -> None:
    mem = MemoryKit()

    async def echo(msg: Message, ctx: Any) -> Message:
        return msg

    node = Node(echo, name="echo")
    flow = create(node.to())
    flow.name = "meta-flow"

    async def go() -> None:
        flow.run()
        try:
            await flow.emit(Message(payload="hi", headers=Headers(tenant="globex"), meta={"user_id": "u-9"}))
            await asyncio.wait_for(flow.fetch(), 10)
        finally:
            await flow.stop()

    asyncio.run(go())
    (run,) = mem.runs("meta-flow")
    a = attrs(run)
    assert a[semconv.USER_ID] == "u-9"
    assert a[semconv.RUN_ATTR_PREFIX + "tenant"] == "globex"
