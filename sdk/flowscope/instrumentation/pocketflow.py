"""Instrumentation for PocketFlow: flows are runs, nodes are node spans, ``shared`` is the state.

PocketFlow has no callback or middleware API, so the runtime's own entry points
are wrapped at class level: ``_run`` / ``_run_async`` (one call per node or
flow execution) and ``Node._exec`` / ``AsyncNode._exec`` (the retry loop). A
top-level ``Flow`` run opens a run span; a flow running inside another flow
or inside a ``flowscope.run`` becomes a ``subflow`` node. After every node the
shared store is diffed against what was last recorded and the difference goes
out as ``flowscope.state`` events, so state at step k is the shared store as
node k left it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from typing import Any

import wrapt
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.utils import unwrap

from .._otel import detach, end_span
from ..context import Node, Run, current_node, current_run
from ..core import semconv
from ..core.state import StateTracker
from ..runtime import emit_state, ensure_run_processor, open_node, open_run
from ._base import GLOBAL, FlowscopeInstrumentor, Telemetry

logger = logging.getLogger("flowscope")

# Where spans go: the providers passed to instrument() (see Telemetry).
_tel: Telemetry = GLOBAL

NODE_FALLBACK = "flowscope.node.fallback"
EVENT_FALLBACK = "flowscope.node.fallback"
ATTR_RUNTIME = "flowscope.runtime"
RUNTIME = "pocketflow"

_SHARED_KEY = otel_context.create_key("flowscope.pocketflow.shared")
_SELF_KEY = otel_context.create_key("flowscope.pocketflow.self")

# (class name, method) pairs wrapped; every class defines its own copy.
_SYNC_RUNS = (("BaseNode", "_run"), ("Flow", "_run"), ("BatchFlow", "_run"))
_ASYNC_RUNS = (
    ("AsyncNode", "_run_async"),
    ("AsyncFlow", "_run_async"),
    ("AsyncBatchFlow", "_run_async"),
    ("AsyncParallelBatchFlow", "_run_async"),
)
_EXECS = (("Node", "_exec"), ("AsyncNode", "_exec"))


class _SharedState:
    """What one run has recorded of its shared store, and the last step that ran."""

    __slots__ = ("last_step", "run", "shared", "tracker")

    def __init__(self, run_: Run, shared: Any, *, recorded: bool = True) -> None:
        self.run = run_
        self.shared = shared
        # recorded=False: nothing of this store was recorded yet (no run snapshot),
        # so the first record() sends all of it.
        self.tracker = StateTracker(shared if recorded else None)
        self.last_step = -1

    def record(self, span: Any, step: int) -> None:
        """Send what changed in the shared store since the last record, as of ``step``."""
        try:
            if not isinstance(self.shared, dict):
                return
            for op, path, value in self.tracker.changes(self.shared):
                emit_state(span, self.run, op, path, value, step=step)
        except Exception:
            logger.debug("flowscope: could not diff the PocketFlow shared store", exc_info=True)


def _name(instance: Any) -> str:
    """A node's or flow's name: its ``name`` attribute, else its class.

    A flow that is an instance of one of PocketFlow's own classes (``Flow``,
    ``AsyncFlow``, ``BatchFlow``...) would be named "Flow" whatever it does, so it is
    named after its start node instead: ``Flow(start=Lookup())`` is "Lookup flow"
    (docs/usage.md). Subclass the flow, or set ``flow.name``, to name it yourself.
    """
    name = getattr(instance, "name", None)
    if isinstance(name, str) and name:
        return name
    cls = type(instance)
    start = getattr(instance, "start_node", None)
    if cls.__module__.split(".")[0] == "pocketflow" and start is not None and start is not instance:
        return f"{_name(start)} flow"
    return cls.__name__


def _shared_arg(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else kwargs.get("shared")


_flow_class: list[type] = []


def _is_flow(instance: Any) -> bool:
    if not _flow_class:
        import pocketflow

        _flow_class.append(pocketflow.Flow)
    return isinstance(instance, _flow_class[0])


# --- entering a node or flow -------------------------------------------------------


class _Entry:
    """The spans and context one ``_run``/``_run_async`` call opened; closed by ``leave``."""

    __slots__ = ("is_run", "node", "span", "state", "token")

    def __init__(self) -> None:
        self.span: Any = None
        self.node: Node | None = None
        self.state: _SharedState | None = None
        self.is_run = False
        self.token: object | None = None


def _enter(instance: Any, shared: Any) -> _Entry | None:
    """Open the span for one flow/node execution and attach its context; None: pass through."""
    if otel_context.get_value(_SELF_KEY) is instance:
        return None  # a subclass calling super()._run: already traced
    entry = _Entry()
    state: _SharedState | None = otel_context.get_value(_SHARED_KEY)  # type: ignore[assignment]
    run_ = current_run()
    if _is_flow(instance):
        if run_ is None:
            run_, span, ctx = open_run(_name(instance), input=shared, attributes={ATTR_RUNTIME: RUNTIME}, tracer=_tel.tracer)
            entry.is_run = True
            entry.span = span
            state = _SharedState(run_, shared)
        else:
            node_, ctx = open_node(_name(instance), "subflow", tracer=_tel.tracer)
            entry.node, entry.span = node_, node_.span
            if state is None or state.shared is not shared:
                # A flow inside a hand-made run: its shared store starts being state here.
                state = _SharedState(run_, shared, recorded=False)
                state.last_step = node_.step
                state.record(node_.span, node_.step)
    else:
        if run_ is None:
            return None  # a bare node.run() outside any run: nothing to attach it to
        successors = getattr(instance, "successors", None) or {}
        node_type = "router" if len(successors) > 1 else "task"
        node_, ctx = open_node(_name(instance), node_type, tracer=_tel.tracer)
        entry.node, entry.span = node_, node_.span
        if state is None or state.shared is not shared:
            state = _SharedState(run_, shared, recorded=False)
            state.record(node_.span, node_.step)
    entry.state = state
    if entry.node is not None and state is not None:
        state.last_step = max(state.last_step, entry.node.step)
    ctx = otel_context.set_value(_SHARED_KEY, state, ctx)
    ctx = otel_context.set_value(_SELF_KEY, instance, ctx)
    entry.token = otel_context.attach(ctx)
    return entry


def _leave(entry: _Entry, instance: Any, result: Any, exc: BaseException | None) -> None:
    try:
        if entry.token is not None:
            detach(entry.token)
    except Exception:
        pass
    try:
        span = entry.span
        node_ = entry.node
        state = entry.state
        if node_ is not None and not _is_flow(instance):
            successors = getattr(instance, "successors", None) or {}
            if isinstance(result, str) and len(successors) > 1 and span.is_recording():
                span.set_attribute(semconv.ROUTER_BRANCH, result)
            if node_.attempt and span.is_recording():
                span.set_attribute(semconv.NODE_ATTEMPT, node_.attempt)
            if state is not None:
                state.record(span, node_.step)
        elif state is not None:
            # The flow's own prep/post, after its last node: attributed to that node's step.
            state.record(span, state.last_step)
        end_span(span, exc)
    except Exception:
        logger.debug("flowscope: could not close a PocketFlow span", exc_info=True)


def _run_sync(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        entry = _enter(instance, _shared_arg(args, kwargs))
    except Exception:
        logger.debug("flowscope: could not open a PocketFlow span", exc_info=True)
        entry = None
    if entry is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        _leave(entry, instance, None, exc)
        raise
    _leave(entry, instance, result, None)
    return result


async def _run_async(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        entry = _enter(instance, _shared_arg(args, kwargs))
    except Exception:
        logger.debug("flowscope: could not open a PocketFlow span", exc_info=True)
        entry = None
    if entry is None:
        return await wrapped(*args, **kwargs)
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _leave(entry, instance, None, exc)
        raise
    _leave(entry, instance, result, None)
    return result


# --- the retry loop ----------------------------------------------------------------
#
# PocketFlow's retry loop calls the user's exec() directly, so the attempts are
# only visible from inside it. These wrappers run the same loop (same attribute
# ``cur_retry``, same sleep, same fallback) and record each failed try.


def _record_fallback(node_: Node, exc: BaseException) -> None:
    span = node_.span
    if span.is_recording():
        span.add_event(EVENT_FALLBACK, {semconv.ERROR_TYPE: type(exc).__qualname__})
        span.set_attribute(NODE_FALLBACK, True)


def _exec_sync(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    node_ = current_node()
    if node_ is None or kwargs:
        return wrapped(*args, **kwargs)
    (prep_res,) = args
    max_retries = instance.max_retries
    for instance.cur_retry in range(max_retries):
        try:
            result = instance.exec(prep_res)
        except Exception as exc:
            if instance.cur_retry == max_retries - 1:
                _record_fallback(node_, exc)
                return instance.exec_fallback(prep_res, exc)
            node_.record_retry(instance.cur_retry, exc, instance.wait)
            if instance.wait > 0:
                time.sleep(instance.wait)
            continue
        node_.attempt = max(node_.attempt, instance.cur_retry)
        return result
    return None


async def _exec_async(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    node_ = current_node()
    if node_ is None or kwargs:
        return await wrapped(*args, **kwargs)
    (prep_res,) = args
    max_retries = instance.max_retries
    for i in range(max_retries):
        try:
            result = await instance.exec_async(prep_res)
        except Exception as exc:
            if i == max_retries - 1:
                _record_fallback(node_, exc)
                return await instance.exec_fallback_async(prep_res, exc)
            node_.record_retry(i, exc, instance.wait)
            if instance.wait > 0:
                await asyncio.sleep(instance.wait)
            continue
        node_.attempt = max(node_.attempt, i)
        return result
    return None


class PocketFlowInstrumentor(FlowscopeInstrumentor):
    """``PocketFlowInstrumentor().instrument()``; instrumenting twice is harmless."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("pocketflow >= 0.0.3",)

    def _instrument(self, **kwargs: Any) -> None:
        global _tel
        _tel = Telemetry.from_kwargs(kwargs)
        ensure_run_processor(_tel.tracer_provider)
        for cls, method in _SYNC_RUNS:
            wrapt.wrap_function_wrapper("pocketflow", f"{cls}.{method}", _run_sync)
        for cls, method in _ASYNC_RUNS:
            wrapt.wrap_function_wrapper("pocketflow", f"{cls}.{method}", _run_async)
        wrapt.wrap_function_wrapper("pocketflow", "Node._exec", _exec_sync)
        wrapt.wrap_function_wrapper("pocketflow", "AsyncNode._exec", _exec_async)

    def _uninstrument(self, **kwargs: Any) -> None:
        import pocketflow

        for cls, method in (*_SYNC_RUNS, *_ASYNC_RUNS, *_EXECS):
            unwrap(getattr(pocketflow, cls), method)
