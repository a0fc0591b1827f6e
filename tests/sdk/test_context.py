"""Spans stay parented across asyncio tasks, gather, thread pools and generators.

Each test checks the whole run: every span has its parent inside the run (no
orphans), LLM spans hang under the node that made them, and OpenTelemetry never
logs "Failed to detach context" (the symptom of a context attached in one task
or generator frame and detached in another).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import operator
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypedDict

import openai
import pocketflow
import pytest
from langgraph.graph import START, StateGraph
from opentelemetry import context as otel_context
from opentelemetry import trace

import flowscope
from flowscope.core import semconv
from tests._runtime_kit import MemoryKit, attrs, llm_spans, nodes, parent_of

MODEL = "gpt-4o-mini"


class Log(TypedDict):
    log: Annotated[list, operator.add]


class Counter(TypedDict):
    n: int


@pytest.fixture()
def mem(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.DEBUG, logger="opentelemetry.context")
    kit = MemoryKit()
    yield kit
    detach_errors = [r for r in caplog.records if "Failed to detach context" in r.getMessage()]
    assert detach_errors == []


def assert_tree(mem: MemoryKit, run_id: str) -> list[Any]:
    """One root (the run span); every other span's parent is in the run."""
    spans = mem.run_spans(run_id)
    ids = {s.context.span_id for s in spans}
    roots = [s for s in spans if s.parent is None or s.parent.span_id not in ids]
    assert [attrs(r)[semconv.SPAN_KIND] for r in roots] == ["run"], [s.name for s in roots]
    assert len({s.context.trace_id for s in spans}) == 1
    return spans


def llm_parents(spans: list[Any]) -> list[str]:
    return sorted(attrs(parent_of(s, spans))[semconv.NODE_NAME] for s in llm_spans(spans))


def test_asyncio_tasks_and_gather(mem: MemoryKit, fake_provider) -> None:
    aclient = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")

    @flowscope.node
    async def fetch(i: int) -> str:
        await asyncio.sleep(0.001 * (3 - i))  # finish out of order
        r = await aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"q{i}"}])
        return r.choices[0].message.content

    async def background() -> None:
        with flowscope.node("background"):
            await aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "bg"}])

    async def main() -> str:
        with flowscope.run("fan-out") as run:
            task = asyncio.create_task(background())
            await asyncio.gather(*(fetch(i) for i in range(3)))
            await task
            with flowscope.node("after"):
                await asyncio.gather(*(asyncio.create_task(asyncio.sleep(0)) for _ in range(3)))
                await aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "end"}])
        return run.id

    run_id = asyncio.run(main())
    spans = assert_tree(mem, run_id)
    assert llm_parents(spans) == ["after", "background", "fetch", "fetch", "fetch"]
    assert sorted(attrs(n)[semconv.NODE_STEP] for n in nodes(spans)) == [0, 1, 2, 3, 4]
    run_span = next(s for s in spans if attrs(s)[semconv.SPAN_KIND] == "run")
    assert all(parent_of(n, spans) is run_span for n in nodes(spans))
    # the caller's context is back to what it was
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_thread_pools(mem: MemoryKit, fake_provider) -> None:
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")
    seen_threads: set[int] = set()

    def work(i: int) -> str:
        seen_threads.add(threading.get_ident())
        with flowscope.node(f"worker-{i}"):
            r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": str(i)}])
            return r.choices[0].message.content

    def otel_propagated(ctx: otel_context.Context) -> None:
        token = otel_context.attach(ctx)
        try:
            work(99)
        finally:
            otel_context.detach(token)

    with flowscope.run("threads") as run, ThreadPoolExecutor(max_workers=3) as pool:
        # contextvars.copy_context: the stdlib way, per submission
        futures = [pool.submit(contextvars.copy_context().run, work, i) for i in range(4)]
        for f in futures:
            f.result()
        # OpenTelemetry propagation: hand the context over explicitly
        pool.submit(otel_propagated, otel_context.get_current()).result()

    async def via_to_thread() -> str:
        with flowscope.run("to-thread") as run2:
            await asyncio.gather(*(asyncio.to_thread(work, i) for i in range(2)))
        return run2.id

    run2_id = asyncio.run(via_to_thread())
    assert threading.get_ident() not in seen_threads
    spans = assert_tree(mem, run.id)
    assert llm_parents(spans) == sorted(["worker-0", "worker-1", "worker-2", "worker-3", "worker-99"])
    spans2 = assert_tree(mem, run2_id)
    assert llm_parents(spans2) == ["worker-0", "worker-1"]


def test_async_generators(mem: MemoryKit, fake_provider) -> None:
    aclient = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")

    @flowscope.node(type="llm")
    async def stream_words(n: int) -> AsyncIterator[str]:
        for i in range(n):
            r = await aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"w{i}"}])
            yield r.choices[0].message.content

    @flowscope.node
    def numbers(n: int) -> Iterator[int]:
        yield from range(n)

    async def consume_in_other_task(agen: AsyncIterator[str]) -> list[str]:
        return [w async for w in agen]

    async def main() -> str:
        with flowscope.run("generators") as run:
            # fully consumed in another task
            words = await asyncio.create_task(consume_in_other_task(stream_words(2)))
            assert len(words) == 2
            # abandoned early: closed by aclose(), from this task
            gen = stream_words(5)
            async for _ in gen:
                break
            await gen.aclose()
            # ... and its span ended right then, not whenever the generator is collected
            ended = [n for n in nodes(mem.run_spans(run.id)) if attrs(n)[semconv.NODE_NAME] == "stream_words"]
            assert len(ended) == 2
            # interleaved with other work on the same task
            other = stream_words(2)
            first = await other.__anext__()
            with flowscope.node("between"):
                await aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": first}])
            await other.__anext__()
            await other.aclose()
            # a sync generator stopped early
            for i in numbers(10):
                if i == 2:
                    break
            # the caller never sees a generator's span as current between items
            assert trace.get_current_span() is run.span
        return run.id

    run_id = asyncio.run(main())
    spans = assert_tree(mem, run_id)
    names = [attrs(n)[semconv.NODE_NAME] for n in nodes(spans)]
    assert names == ["stream_words", "stream_words", "stream_words", "between", "numbers"]
    assert llm_parents(spans) == ["between", *["stream_words"] * 5]
    assert all(n.end_time is not None for n in nodes(spans))


def test_runtime_task_fan_out(mem: MemoryKit, fake_provider) -> None:
    """LangGraph's own thread pool and PocketFlow's gather carry the node context too."""
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")
    aclient = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")

    def ask(name: str) -> Any:
        def fn(state: Log) -> dict[str, Any]:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": name}])
            return {"log": [name]}

        return fn

    g = StateGraph(Log)
    for name in ("a", "b", "c"):
        g.add_node(name, ask(name))
        g.add_edge(START, name)
    g.compile().invoke({"log": []})
    (run_span,) = mem.runs("LangGraph")
    spans = assert_tree(mem, attrs(run_span)[semconv.RUN_ID])
    assert llm_parents(spans) == ["a", "b", "c"]

    class Many(pocketflow.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return [1, 2, 3]

        async def exec_async(self, item):
            await aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": str(item)}])
            return item

    asyncio.run(pocketflow.AsyncFlow(start=Many()).run_async({}))
    (run_span,) = mem.runs("Many flow")  # a plain AsyncFlow is named after its start node
    spans = assert_tree(mem, attrs(run_span)[semconv.RUN_ID])
    assert llm_parents(spans) == ["Many", "Many", "Many"]


def test_langgraph_stream_abandoned_early(mem: MemoryKit) -> None:
    g = StateGraph(Counter)
    g.add_node("one", lambda s: {"n": s["n"] + 1})
    g.add_node("two", lambda s: {"n": s["n"] + 1})
    g.add_edge(START, "one")
    g.add_edge("one", "two")
    app = g.compile()

    for _chunk in app.stream({"n": 0}):
        break  # closes the graph's generator from the caller
    assert trace.get_current_span() is trace.INVALID_SPAN

    async def astream_early() -> None:
        async for _chunk in app.astream({"n": 0}):
            break

    asyncio.run(astream_early())
    runs = mem.runs("LangGraph")
    assert len(runs) == 2
    for r in runs:
        spans = assert_tree(mem, attrs(r)[semconv.RUN_ID])
        assert [attrs(n)[semconv.NODE_NAME] for n in nodes(spans)] == ["one"]
        assert r.end_time is not None
