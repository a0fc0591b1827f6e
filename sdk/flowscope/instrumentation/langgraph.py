"""Instrumentation for LangGraph: a graph invocation is a run, each node execution a node span.

Where it hooks, and why there:

* ``Pregel.stream`` / ``Pregel.astream``: every ``invoke``/``ainvoke``/``stream``
  goes through them, so one wrapper gives one run per invocation. The run's
  context is attached only while the graph's own generator frame runs, which is
  where LangGraph schedules nodes, so thread-pool and asyncio tasks inherit it
  and the caller's context is never left pointing at our span between chunks.
* ``run_with_retry`` / ``arun_with_retry`` (as the runner calls them): one call
  per node execution. The task handed on is the same task with its ``proc``
  wrapped, so each *attempt* under a ``RetryPolicy`` is its own node span with
  the same step and ``flowscope.node.attempt`` 0, 1, 2, … and LLM calls made in
  the node are children of the attempt that made them.
* ``PregelLoop.tick`` / ``after_tick``: state. A node returns an *update*;
  reducers (``add_messages``, ``operator.add``) turn updates into state only
  when the superstep ends. So the state is read from the graph's channels right
  after LangGraph applied the writes, which is exactly what its checkpointer
  saves, and the difference is recorded as ``flowscope.state`` events. Node
  spans have ended by then, so the events go on the run span, each naming the
  step of the node that wrote the channel (the last one in the superstep if
  several did): state at a superstep's last node step equals the checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection
from datetime import datetime
from typing import Any

import wrapt
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Span

from .. import config
from .._otel import detach, end_span, traced_agen, traced_gen
from ..attributes import apply_run_attributes
from ..context import Run, current_node, current_run
from ..core import semconv
from ..core.state import StateTracker, encode_value, split_path
from ..runtime import emit_state, ensure_run_processor, open_node, open_run
from ..waiting import record_wait
from ._base import GLOBAL, FlowscopeInstrumentor, Telemetry

logger = logging.getLogger("flowscope")

# Where spans go: the providers passed to instrument() (see Telemetry).
_tel: Telemetry = GLOBAL

ATTR_RUNTIME = "flowscope.runtime"
RUNTIME = "langgraph"
RUN_RESUMED = "flowscope.run.resumed"
EVENT_INTERRUPT = "flowscope.interrupt"
EVENT_RESUME = "flowscope.resume"
INTERRUPT_VALUE = "flowscope.interrupt.value"
RESUME_VALUE = "flowscope.resume.value"
STATUS_INTERRUPTED = "interrupted"
CHECKPOINT_NS = "flowscope.langgraph.checkpoint_ns"

_BRANCH_PREFIX = "branch:to:"
_GRAPH_RUN_KEY = otel_context.create_key("flowscope.langgraph.run")
_GRAPH_KEY = otel_context.create_key("flowscope.langgraph.graph")
_SCOPE_KEY = otel_context.create_key("flowscope.langgraph.step")


class _StepScope:
    """A node execution's step, and the latest step started inside it (a subgraph's nodes).

    A subgraph node finishes after its inner nodes, which have later steps; what
    it wrote belongs to the latest of them, so state never moves backwards in steps.
    """

    __slots__ = ("max_step", "parent", "step")

    def __init__(self, step: int, parent: _StepScope | None) -> None:
        self.step = step
        self.max_step = step
        self.parent = parent
        while parent is not None:
            parent.max_step = max(parent.max_step, step)
            parent = parent.parent


class _GraphRun:
    """One graph invocation: its run, its span, and what its state looked like last."""

    def __init__(self, run_: Run, span: Span, *, owns_run: bool, node_step: int | None = None) -> None:
        self.run = run_
        self.span = span  # where state events go: open for the whole invocation
        self.owns_run = owns_run
        self.loop: Any = None  # the PregelLoop whose state this is (the outermost one)
        self.tracker: StateTracker | None = None
        self.task_steps: dict[str, _StepScope] = {}
        # state changes before any node ran (the input) belong to step -1, or,
        # for a graph inside a hand-made run, to the node standing for the graph
        self.last_step = -1 if node_step is None else node_step
        self.interrupted = False
        self.resumed = False


# --- the run: Pregel.stream / astream ----------------------------------------------


def _is_resume(graph_input: Any) -> tuple[bool, Any]:
    try:
        from langgraph.types import Command

        if isinstance(graph_input, Command):
            return graph_input.resume is not None, graph_input.resume
    except Exception:
        pass
    return graph_input is None, None


def _call_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    graph_input = args[0] if args else kwargs.get("input")
    config = args[1] if len(args) > 1 else kwargs.get("config")
    return graph_input, config if isinstance(config, dict) else {}


def _begin(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[otel_context.Context, Any]:
    """Context for one invocation's frames, and what to close when it ends."""
    ctx = otel_context.set_value(_GRAPH_KEY, instance)
    if otel_context.get_value(_SCOPE_KEY) is not None:
        # A subgraph inside a LangGraph node: its nodes nest under that node, its
        # state is the parent's business (the parent's checkpoint holds it).
        node_ = current_node()
        if node_ is not None and node_.span.is_recording():
            node_.span.set_attribute(semconv.NODE_TYPE, "subflow")
        return ctx, None
    graph_input, config = _call_args(args, kwargs)
    name = config.get("run_name") or getattr(instance, "name", None) or "LangGraph"
    thread_id = (config.get("configurable") or {}).get("thread_id")
    resumed, resume_value = _is_resume(graph_input)
    attrs: dict[str, Any] = {ATTR_RUNTIME: RUNTIME}
    if thread_id is not None:
        attrs[semconv.GEN_AI_CONVERSATION_ID] = str(thread_id)
    run_ = current_run()
    if run_ is None:
        run_, span, ctx = open_run(str(name), attributes=attrs, context=ctx, tracer=_tel.tracer)
        # config metadata (user_id, tenant, session_id, ...) and the thread become run
        # attributes: stamped on every span of the run, and carried as baggage.
        metadata = config.get("metadata")
        apply_run_attributes(
            {**({"session_id": str(thread_id)} if thread_id is not None else {}),
             **(metadata if isinstance(metadata, dict) else {})},
            run=run_,
        )
        graph_run = _GraphRun(run_, span, owns_run=True)
        if run_.fork_step is not None:
            # a replay continuing a seeded thread (invoke(None)) is a fork, not a resumed interrupt;
            # the state it starts from is the parent's at the fork step
            resumed = False
            graph_run.last_step = run_.fork_step
    else:
        node_, ctx = open_node(str(name), "subflow", attributes=attrs, context=ctx, tracer=_tel.tracer)
        span = node_.span
        graph_run = _GraphRun(run_, span, owns_run=False, node_step=node_.step)
    graph_run.resumed = resumed
    if resumed and span.is_recording():
        span.set_attribute(RUN_RESUMED, True)
        event: dict[str, Any] = {}
        if resume_value is not None:
            event[RESUME_VALUE] = _json(resume_value)
        span.add_event(EVENT_RESUME, event)
    return otel_context.set_value(_GRAPH_RUN_KEY, graph_run, ctx), graph_run


def _json(value: Any) -> str:
    text, _ = encode_value("", value, max_bytes=config.current.state_max_bytes, redact=config.current.redact)
    return text


def _finish(graph_run: _GraphRun | None, exc: BaseException | None) -> None:
    if graph_run is None:
        return
    span = graph_run.span
    try:
        if graph_run.interrupted and span.is_recording():
            span.set_attribute(semconv.RUN_STATUS, STATUS_INTERRUPTED)
        if exc is not None and _is_bubble_up(exc):
            exc = None  # an interrupt or a command for a parent graph is not a failure
    except Exception:
        logger.debug("flowscope: could not finish a LangGraph run", exc_info=True)
    end_span(span, exc)


def _is_bubble_up(exc: BaseException) -> bool:
    try:
        from langgraph.errors import GraphBubbleUp

        return isinstance(exc, GraphBubbleUp)
    except Exception:
        return False


def _stream(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        ctx, graph_run = _begin(instance, args, kwargs)
    except Exception:
        logger.debug("flowscope: could not start a LangGraph run", exc_info=True)
        return wrapped(*args, **kwargs)
    return traced_gen(wrapped(*args, **kwargs), ctx, lambda exc: _finish(graph_run, exc))


def _astream(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        ctx, graph_run = _begin(instance, args, kwargs)
    except Exception:
        logger.debug("flowscope: could not start a LangGraph run", exc_info=True)
        return wrapped(*args, **kwargs)
    return traced_agen(wrapped(*args, **kwargs), ctx, lambda exc: _finish(graph_run, exc))


# --- the nodes: run_with_retry / arun_with_retry -------------------------------------


def _hidden(task: Any) -> bool:
    name = getattr(task, "name", "")
    if not isinstance(name, str) or name.startswith("__"):
        return True
    tags = (getattr(task, "config", None) or {}).get("tags") or ()
    return "langsmith:hidden" in tags


def _node_type(graph: Any, task: Any) -> str:
    try:
        if getattr(task, "subgraphs", None):
            return "subflow"
        builder = getattr(graph, "builder", None)
        if builder is not None:
            spec = getattr(builder, "nodes", {}).get(task.name)
            runnable = getattr(spec, "runnable", None)
            if runnable is not None and type(runnable).__name__ == "ToolNode":
                return "tool"
            if getattr(builder, "branches", {}).get(task.name):
                return "router"
    except Exception:
        pass
    return "task"


def _branch(graph: Any, task: Any) -> str | None:
    """Where a router went: the branch channels it wrote that no static edge explains."""
    try:
        builder = getattr(graph, "builder", None)
        static = {end for start, end in getattr(builder, "edges", ()) if start == task.name}
        targets: list[str] = []
        for channel, value in list(task.writes):
            if isinstance(channel, str) and channel.startswith(_BRANCH_PREFIX):
                target = channel[len(_BRANCH_PREFIX):]
            elif channel == "__pregel_tasks":
                target = str(getattr(value, "node", "") or "")
            else:
                continue
            if isinstance(target, str) and target not in static and target not in targets:
                targets.append(target)
        return ",".join(targets) if targets else None
    except Exception:
        return None


class _AttemptProc:
    """Stands in for a task's runnable: every invoke is one attempt, one node span."""

    __slots__ = ("_attempts", "_graph", "_proc", "_scope", "_superstep", "_task", "_type")

    def __init__(self, proc: Any, task: Any, graph: Any, scope: _StepScope, node_type: str) -> None:
        self._proc = proc
        self._task = task
        self._graph = graph
        self._scope = scope
        self._type = node_type
        self._attempts = 0
        meta = (getattr(task, "config", None) or {}).get("metadata") or {}
        self._superstep = meta.get("langgraph_step")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._proc, name)

    def _open(self) -> tuple[Any, otel_context.Context]:
        attempt = self._attempts
        self._attempts += 1
        attrs: dict[str, Any] = {ATTR_RUNTIME: RUNTIME}
        if attempt:
            attrs[semconv.RETRY_COUNT] = 1  # this attempt is one retry: sums to the node's retries
        if isinstance(self._superstep, int):
            attrs[semconv.NODE_SUPERSTEP] = self._superstep
        ns = ((getattr(self._task, "config", None) or {}).get("metadata") or {}).get("langgraph_checkpoint_ns")
        if isinstance(ns, str) and "|" in ns:
            attrs[CHECKPOINT_NS] = ns
        node_, ctx = open_node(self._task.name, self._type, step=self._scope.step, attempt=attempt,
                               attributes=attrs, tracer=_tel.tracer)
        return node_, otel_context.set_value(_SCOPE_KEY, self._scope, ctx)

    def _close(self, node_: Any, exc: BaseException | None) -> None:
        try:
            span = node_.span
            if exc is not None and _is_bubble_up(exc):
                _record_interrupt(span, exc)
                exc = None
            elif exc is None and self._type == "router" and span.is_recording():
                branch = _branch(self._graph, self._task)
                if branch:
                    span.set_attribute(semconv.ROUTER_BRANCH, branch)
            end_span(span, exc)
        except Exception:
            logger.debug("flowscope: could not close a LangGraph node span", exc_info=True)

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        try:
            node_, ctx = self._open()
        except Exception:
            return self._proc.invoke(input, config, **kwargs)
        token = otel_context.attach(ctx)
        try:
            result = self._proc.invoke(input, config, **kwargs)
        except BaseException as exc:
            self._close(node_, exc)
            raise
        finally:
            detach(token)
        self._close(node_, None)
        return result

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        try:
            node_, ctx = self._open()
        except Exception:
            return await self._proc.ainvoke(input, config, **kwargs)
        token = otel_context.attach(ctx)
        try:
            result = await self._proc.ainvoke(input, config, **kwargs)
        except BaseException as exc:
            self._close(node_, exc)
            raise
        finally:
            detach(token)
        self._close(node_, None)
        return result

    async def astream(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        try:
            node_, ctx = self._open()
        except Exception:
            async for chunk in self._proc.astream(input, config, **kwargs):
                yield chunk
            return
        agen = self._proc.astream(input, config, **kwargs)
        try:
            while True:
                token = otel_context.attach(ctx)
                try:
                    chunk = await agen.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    detach(token)
                yield chunk
        except BaseException as exc:
            self._close(node_, None if isinstance(exc, GeneratorExit) else exc)
            raise
        self._close(node_, None)


def _record_interrupt(span: Span, exc: BaseException) -> None:
    try:
        from langgraph.errors import GraphInterrupt

        if not isinstance(exc, GraphInterrupt):
            return
        graph_run: _GraphRun | None = otel_context.get_value(_GRAPH_RUN_KEY)  # type: ignore[assignment]
        if graph_run is not None:
            graph_run.interrupted = True
        if not span.is_recording():
            return
        interrupts = exc.args[0] if exc.args else ()
        for item in interrupts or ():
            span.add_event(EVENT_INTERRUPT, {INTERRUPT_VALUE: _json(getattr(item, "value", item))})
        span.set_attribute(semconv.RUN_STATUS, STATUS_INTERRUPTED)
    except Exception:
        logger.debug("flowscope: could not record a LangGraph interrupt", exc_info=True)


def _prepare_task(task: Any) -> Any:
    """The same task with its runnable wrapped, or the task itself if it is not ours to trace."""
    if current_run() is None or _hidden(task):
        return task
    graph = otel_context.get_value(_GRAPH_KEY)
    run_ = current_run()
    assert run_ is not None
    parent = otel_context.get_value(_SCOPE_KEY)
    scope = _StepScope(run_.next_step(), parent if isinstance(parent, _StepScope) else None)
    graph_run: _GraphRun | None = otel_context.get_value(_GRAPH_RUN_KEY)  # type: ignore[assignment]
    if graph_run is not None:
        graph_run.task_steps[task.id] = scope
        graph_run.last_step = max(graph_run.last_step, scope.step)
    proc = _AttemptProc(task.proc, task, graph, scope, _node_type(graph, task))
    return dataclasses.replace(task, proc=proc)


def _run_with_retry(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if args:
        try:
            args = (_prepare_task(args[0]), *args[1:])
        except Exception:
            logger.debug("flowscope: could not trace a LangGraph task", exc_info=True)
    return wrapped(*args, **kwargs)


# --- the state: PregelLoop.tick / after_tick ---------------------------------------


def _values(loop: Any) -> Any:
    from langgraph.pregel._io import read_channels

    return read_channels(loop.channels, loop.stream_keys)


def _owning(loop: Any) -> _GraphRun | None:
    graph_run: _GraphRun | None = otel_context.get_value(_GRAPH_RUN_KEY)  # type: ignore[assignment]
    if graph_run is None:
        return None
    if graph_run.loop is None:
        graph_run.loop = loop
    return graph_run if graph_run.loop is loop else None


def _tick(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        graph_run = _owning(instance)
        if graph_run is not None and graph_run.tracker is None:
            graph_run.tracker = StateTracker()
            if graph_run.resumed:
                _record_interrupt_wait(instance)
            if graph_run.owns_run:
                values = graph_run.tracker.reset(_values(instance))
                emit_state(graph_run.span, graph_run.run, "snapshot", "", values, step=graph_run.last_step)
            else:  # inside a hand-made run: add the graph's keys, keep the run's own
                for op, path, value in graph_run.tracker.changes(_values(instance)):
                    emit_state(graph_run.span, graph_run.run, op, path, value, step=graph_run.last_step)
    except Exception:
        graph_run = None
        logger.debug("flowscope: could not read LangGraph state", exc_info=True)
    try:
        return wrapped(*args, **kwargs)
    except BaseException as exc:
        if graph_run is not None and _is_bubble_up(exc):
            graph_run.interrupted = True  # interrupt_before
        raise


def _record_interrupt_wait(loop: Any) -> None:
    """A resumed run waited from the checkpoint it resumes (saved at the interrupt) until now."""
    try:
        ts = (getattr(loop, "checkpoint", None) or {}).get("ts")
        if isinstance(ts, str) and ts:
            start_ns = int(datetime.fromisoformat(ts).timestamp() * 1e9)
            record_wait("interrupt", start_ns)
    except Exception:
        logger.debug("flowscope: could not record the interrupt wait", exc_info=True)


def _after_tick(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return wrapped(*args, **kwargs)
    except BaseException as exc:
        graph_run_ = otel_context.get_value(_GRAPH_RUN_KEY)
        if isinstance(graph_run_, _GraphRun) and graph_run_.loop is instance and _is_bubble_up(exc):
            graph_run_.interrupted = True  # interrupt_after
        raise
    finally:
        # In `finally`: interrupt_after raises after the writes were applied.
        _record_superstep(instance)


def _record_superstep(loop: Any) -> None:
    try:
        graph_run = _owning(loop)
        if graph_run is None or graph_run.tracker is None:
            return
        changes = graph_run.tracker.changes(_values(loop))
        if not changes:
            return
        tasks = list(getattr(loop, "tasks", {}).values())
        stepped = [(graph_run.task_steps[t.id].max_step, t) for t in tasks if t.id in graph_run.task_steps]
        fallback = max((s for s, _ in stepped), default=graph_run.last_step)
        for op, path, value in changes:
            parts = split_path(path)
            channel = parts[0] if parts else None
            writers = [s for s, t in stepped if any(w[0] == channel for w in list(t.writes))]
            step = max(writers) if writers else fallback
            emit_state(graph_run.span, graph_run.run, op, path, value, step=step)
    except Exception:
        logger.debug("flowscope: could not record LangGraph state", exc_info=True)


class LangGraphInstrumentor(FlowscopeInstrumentor):
    """``LangGraphInstrumentor().instrument()``; instrumenting twice is harmless."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("langgraph >= 1.0",)

    def _instrument(self, **kwargs: Any) -> None:
        global _tel
        _tel = Telemetry.from_kwargs(kwargs)
        ensure_run_processor(_tel.tracer_provider)
        wrapt.wrap_function_wrapper("langgraph.pregel.main", "Pregel.stream", _stream)
        wrapt.wrap_function_wrapper("langgraph.pregel.main", "Pregel.astream", _astream)
        wrapt.wrap_function_wrapper("langgraph.pregel._runner", "run_with_retry", _run_with_retry)
        wrapt.wrap_function_wrapper("langgraph.pregel._runner", "arun_with_retry", _run_with_retry)
        wrapt.wrap_function_wrapper("langgraph.pregel._loop", "PregelLoop.tick", _tick)
        wrapt.wrap_function_wrapper("langgraph.pregel._loop", "PregelLoop.after_tick", _after_tick)

    def _uninstrument(self, **kwargs: Any) -> None:
        from langgraph.pregel import _loop, _runner, main

        unwrap(main.Pregel, "stream")
        unwrap(main.Pregel, "astream")
        unwrap(_runner, "run_with_retry")
        unwrap(_runner, "arun_with_retry")
        unwrap(_loop.PregelLoop, "tick")
        unwrap(_loop.PregelLoop, "after_tick")
