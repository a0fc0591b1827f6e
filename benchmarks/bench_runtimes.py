"""Overhead per node span for each flow runtime, measured against the same flow uninstrumented.

    python benchmarks/bench_runtimes.py [--nodes 20] [--runs 40] [--rounds 5]

Every runtime runs a chain of ``--nodes`` trivial nodes (each writes one key of
state, so state capture is part of the price). Instrumented and uninstrumented
batches alternate in the same process (instrument() / uninstrument() between
them) so both see the same machine load; the table reports medians over rounds.
Spans go through the real OTel SDK and flowscope's processors to an exporter
that drops them, so the number is what the host app pays, not the network.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import operator
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypedDict

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import flowscope


class DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


# --- one runnable flow per runtime: build once, return a "run it once" callable ---------------


def pocketflow_sync(n: int) -> Callable[[], Any]:
    import pocketflow

    class Step(pocketflow.Node):
        def post(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> None:
            shared[self.params.get("key", "k")] = shared.get("count", 0)
            shared["count"] = shared.get("count", 0) + 1

    nodes = [Step() for _ in range(n)]
    for a, b in itertools.pairwise(nodes):
        a >> b
    flow = pocketflow.Flow(start=nodes[0])
    return lambda: flow.run({"count": 0})


def pocketflow_async(n: int) -> Callable[[], Any]:
    import pocketflow

    class Step(pocketflow.AsyncNode):
        async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> None:
            shared["count"] = shared.get("count", 0) + 1

    nodes = [Step() for _ in range(n)]
    for a, b in itertools.pairwise(nodes):
        a >> b
    flow = pocketflow.AsyncFlow(start=nodes[0])
    loop = _loop()
    return lambda: loop.run_until_complete(flow.run_async({"count": 0}))


class Log(TypedDict):
    log: Annotated[list, operator.add]
    count: int


def _langgraph(n: int) -> Any:
    from langgraph.graph import START, StateGraph

    g = StateGraph(Log)
    prev = START
    for i in range(n):
        name = f"n{i}"
        g.add_node(name, lambda s, i=i: {"log": [i], "count": s["count"] + 1})
        g.add_edge(prev, name)
        prev = name
    return g.compile()


def langgraph_sync(n: int) -> Callable[[], Any]:
    app = _langgraph(n)
    return lambda: app.invoke({"log": [], "count": 0})


def langgraph_async(n: int) -> Callable[[], Any]:
    app = _langgraph(n)
    loop = _loop()
    return lambda: loop.run_until_complete(app.ainvoke({"log": [], "count": 0}))


def penguiflow_chain(n: int) -> Callable[[], Any]:
    from penguiflow import Headers, Message, Node, create

    async def step(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": msg.payload + 1})

    nodes = [Node(step, name=f"n{i}") for i in range(n)]
    adj = [a.to(b) for a, b in itertools.pairwise(nodes)] + [nodes[-1].to()]
    loop = _loop()
    flow = create(*adj)
    loop.run_until_complete(_start(flow))
    _cleanups.insert(0, lambda: loop.run_until_complete(flow.stop()))
    headers = Headers(tenant="bench")

    async def once() -> Any:
        await flow.emit(Message(payload=0, headers=headers))
        return await flow.fetch()

    return lambda: loop.run_until_complete(once())


async def _start(flow: Any) -> None:
    flow.run()


_cleanups: list[Callable[[], Any]] = []


def _loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    _cleanups.append(loop.close)
    return loop


def handmade(n: int) -> Callable[[], Any]:
    """Decorated functions (flowscope.node) vs the same plain functions."""

    def step(i: int) -> int:
        return i + 1

    traced = flowscope.node(step)

    def plain_run() -> int:
        v = 0
        for _ in range(n):
            v = step(v)
        return v

    def traced_run() -> int:
        with flowscope.run("bench"):
            v = 0
            for _ in range(n):
                v = traced(v)
                flowscope.record_state("v", v)
            return v

    return lambda: traced_run() if _instrumented["on"] else plain_run()


_instrumented = {"on": False}

RUNTIMES: list[tuple[str, str | None, Callable[[int], Callable[[], Any]]]] = [
    ("PocketFlow Flow", "pocketflow", pocketflow_sync),
    ("PocketFlow AsyncFlow", "pocketflow", pocketflow_async),
    ("LangGraph invoke", "langgraph", langgraph_sync),
    ("LangGraph ainvoke", "langgraph", langgraph_async),
    ("PenguiFlow emit/fetch", "penguiflow", penguiflow_chain),
    ("flowscope.node (hand-made)", None, handmade),
]


def _toggle(name: str | None, on: bool) -> None:
    _instrumented["on"] = on
    if name is None:
        return
    from flowscope.instrumentation import get_instrumentor

    inst = get_instrumentor(name)
    if on and not inst.is_instrumented_by_opentelemetry:
        inst.instrument()
    elif not on and inst.is_instrumented_by_opentelemetry:
        inst.uninstrument()


def _batch(fn: Callable[[], Any], runs: int) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - start) / runs


def measure(name: str | None, factory: Callable[[int], Callable[[], Any]], nodes: int, runs: int,
            rounds: int) -> tuple[float, float]:
    """Median seconds per run (uninstrumented, instrumented), alternating batches."""
    _toggle(name, True)
    fn = factory(nodes)
    for on in (False, True):  # warm both paths
        _toggle(name, on)
        _batch(fn, max(2, runs // 5))
    base: list[float] = []
    inst: list[float] = []
    for _ in range(rounds):
        _toggle(name, False)
        base.append(_batch(fn, runs))
        _toggle(name, True)
        inst.append(_batch(fn, runs))
        flowscope.force_flush()
    return statistics.median(base), statistics.median(inst)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=40, help="runs per batch")
    parser.add_argument("--rounds", type=int, default=5, help="alternating batches per side")
    parser.add_argument("--only", help="substring of a runtime name")
    args = parser.parse_args(argv)

    flowscope.init(service_name="bench", exporter=DropExporter(), instrument=False, max_queue_size=1 << 16)
    rows = []
    for label, name, factory in RUNTIMES:
        if args.only and args.only.lower() not in label.lower():
            continue
        base, inst = measure(name, factory, args.nodes, args.runs, args.rounds)
        per_node = (inst - base) / args.nodes * 1e6
        rows.append((label, base / args.nodes * 1e6, inst / args.nodes * 1e6, per_node, (inst - base) / base * 100))
    for cleanup in _cleanups:
        cleanup()

    print(f"\nflow runtimes: {args.nodes} nodes per run, {args.runs} runs x {args.rounds} rounds, medians")
    header = f"{'runtime':<28} {'plain µs/node':>14} {'traced µs/node':>15} {'overhead µs/node':>17} {'overhead':>9}"
    print(header)
    print("-" * len(header))
    for label, b, i, o, pct in rows:
        print(f"{label:<28} {b:>14.1f} {i:>15.1f} {o:>17.1f} {pct:>8.0f}%")


if __name__ == "__main__":
    main()
