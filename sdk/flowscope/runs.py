"""Runs, nodes and tools: the span tree ``run → node → llm/tool``.

A run's bookkeeping (step counter, state sequence, money spent) rides in the
OpenTelemetry ``Context`` next to the active span, so it follows the work the
same way spans do: into ``asyncio`` tasks, through ``contextvars.copy_context``
into thread pools, and into anything an OTel propagator carries.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from . import config
from .core import semconv
from .core.ids import new_run_id
from .core.state import encode_value

logger = logging.getLogger("flowscope")

_RUN_KEY = otel_context.create_key("flowscope.run")
_NODE_KEY = otel_context.create_key("flowscope.node")

F = TypeVar("F", bound=Callable[..., Any])


class BudgetExceeded(RuntimeError):
    """Raised before a call is sent when its run has already spent its budget."""

    def __init__(self, run_id: str, budget_usd: Decimal, spent_usd: Decimal) -> None:
        super().__init__(
            f"run {run_id} has spent ${spent_usd} of its ${budget_usd} budget; the call was not sent"
        )
        self.run_id = run_id
        self.budget_usd = budget_usd
        self.spent_usd = spent_usd


@functools.lru_cache(maxsize=1)
def _tracer() -> trace.Tracer:
    # Cached: a ProxyTracer follows the global provider once one is set, and
    # get_tracer() per span is a measurable share of per-node overhead.
    from ._version import __version__

    return trace.get_tracer("flowscope", __version__)


class Run:
    """A live run: its id, its counters and what it has spent so far."""

    def __init__(self, flow: str, run_id: str | None = None, budget_usd: Decimal | str | float | None = None):
        self.id = run_id or new_run_id()
        self.flow = flow
        self.budget_usd = Decimal(str(budget_usd)) if budget_usd is not None else None
        self._steps = itertools.count()
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self.cost_usd = Decimal(0)
        self.llm_calls = 0
        self.unpriced_calls = 0
        self.budget_exceeded = False
        self.span: Span | None = None
        self.attributes: dict[str, Any] = {}

    def next_step(self) -> int:
        return next(self._steps)

    def next_seq(self) -> int:
        return next(self._seq)

    def add_cost(self, cost: Decimal | None) -> None:
        with self._lock:
            self.llm_calls += 1
            if cost is None:
                self.unpriced_calls += 1
            else:
                self.cost_usd += cost

    def check_budget(self) -> None:
        """Refuse to start a call once the budget is spent (spent >= budget)."""
        if self.budget_usd is None:
            return
        with self._lock:
            spent = self.cost_usd
        if spent >= self.budget_usd:
            self.budget_exceeded = True
            if self.span is not None and self.span.is_recording():
                self.span.set_attribute(semconv.BUDGET_EXCEEDED, True)
                # one event per refused call: when it happened and what had been spent
                self.span.add_event(
                    semconv.BUDGET_EXCEEDED,
                    {semconv.BUDGET_USD: str(self.budget_usd), "flowscope.budget.spent_usd": format(spent, "f")},
                )
            raise BudgetExceeded(self.id, self.budget_usd, spent)

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, flow={self.flow!r}, cost_usd={self.cost_usd})"


class Node:
    """A live node span: where its LLM calls, retries and state changes are recorded."""

    __slots__ = ("attempt", "name", "retries", "span", "step", "type")

    def __init__(self, name: str, node_type: str, step: int, attempt: int, span: Span):
        self.name = name
        self.type = node_type
        self.step = step
        self.attempt = attempt
        self.span = span
        self.retries = 0

    def record_retry(self, attempt: int, exc: BaseException, backoff_s: float | None = None) -> None:
        """One failed try inside this node (``flowscope.retry`` event + running count)."""
        try:
            self.retries += 1
            if not self.span.is_recording():
                return
            attrs: dict[str, Any] = {semconv.RETRY_ATTEMPT: attempt, semconv.ERROR_TYPE: _error_type(exc)}
            if backoff_s is not None:
                attrs[semconv.RETRY_BACKOFF_S] = float(backoff_s)
            self.span.add_event(semconv.EVENT_RETRY, attrs)
            self.span.set_attribute(semconv.RETRY_COUNT, self.retries)
        except Exception:
            logger.debug("flowscope: could not record a retry", exc_info=True)


def current_run(ctx: otel_context.Context | None = None) -> Run | None:
    return otel_context.get_value(_RUN_KEY, ctx)  # type: ignore[return-value]


def current_node(ctx: otel_context.Context | None = None) -> Node | None:
    return otel_context.get_value(_NODE_KEY, ctx)  # type: ignore[return-value]


class _Scope:
    """A span that is a context manager (sync and async) and a decorator at once."""

    def __init__(self) -> None:
        self._token: object | None = None
        self._span: Span | None = None

    # subclasses
    def _start(self) -> tuple[Span, otel_context.Context]:
        raise NotImplementedError

    def _on_end(self, span: Span) -> None:
        """Hook run just before the span ends."""

    def _fresh(self) -> _Scope:
        """A new scope with the same arguments, so a decorator can be re-entered."""
        raise NotImplementedError

    def __enter__(self) -> Any:
        span, ctx = self._start()
        self._span = span
        self._token = otel_context.attach(ctx)
        return self._value()

    def _value(self) -> Any:
        return self._span

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        span = self._span
        try:
            if span is not None:
                if exc is not None and not isinstance(exc, GeneratorExit):
                    record_error(span, exc)
                self._on_end(span)
                span.end()
        finally:
            if self._token is not None:
                _safe_detach(self._token)
                self._token = None

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._fresh():
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        if inspect.isasyncgenfunction(func):

            @functools.wraps(func)
            async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
                scope = self._fresh()
                # The span stays open across yields but the context is only
                # attached while our own frame runs, so the caller's context
                # is never left pointing at our span between items.
                span, ctx = scope._start()
                scope._span = span
                def on_end(exc: BaseException | None) -> None:
                    if exc is not None:
                        record_error(span, exc)
                    scope._on_end(span)
                    span.end()

                inner = traced_agen(func(*args, **kwargs), ctx, on_end)
                try:
                    async for item in inner:
                        yield item
                finally:
                    # ``async for`` does not pass an early close on (``yield from``
                    # would, but async generators have none): close the inner one
                    # now, so the wrapped generator ends under our context.
                    await inner.aclose()

            return agen_wrapper  # type: ignore[return-value]

        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                scope = self._fresh()
                span, ctx = scope._start()
                scope._span = span
                def on_end(exc: BaseException | None) -> None:
                    if exc is not None:
                        record_error(span, exc)
                    scope._on_end(span)
                    span.end()

                yield from traced_gen(func(*args, **kwargs), ctx, on_end)

            return gen_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def _safe_detach(token: object) -> None:
    """Detach without the OTel error log when a generator finishes in another context."""
    try:
        otel_context._RUNTIME_CONTEXT.detach(token)  # type: ignore[attr-defined]
    except Exception:
        pass


def traced_gen(gen: Any, ctx: otel_context.Context, on_end: Callable[[BaseException | None], None]) -> Any:
    """:func:`traced_agen` for plain generators: ``ctx`` attached only while ``gen`` runs."""
    exc: BaseException | None = None
    try:
        while True:
            token = otel_context.attach(ctx)
            try:
                item = next(gen)
            except StopIteration:
                return
            finally:
                _safe_detach(token)
            yield item
    except GeneratorExit:
        token = otel_context.attach(ctx)
        try:
            gen.close()
        finally:
            _safe_detach(token)
        raise
    except BaseException as e:
        exc = e
        raise
    finally:
        on_end(exc)


async def traced_agen(
    agen: Any, ctx: otel_context.Context, on_end: Callable[[BaseException | None], None]
) -> Any:
    """Yield from ``agen`` with ``ctx`` attached only while ``agen`` runs.

    The span stays open across yields, but the caller's context is never left
    pointing at it between items (no "Failed to detach context"). A consumer
    that stops early gets the inner generator closed at once, under ``ctx``,
    rather than whenever it is collected. ``on_end`` gets the error, if any.
    """
    exc: BaseException | None = None
    try:
        while True:
            token = otel_context.attach(ctx)
            try:
                item = await agen.__anext__()
            except StopAsyncIteration:
                return
            finally:
                _safe_detach(token)
            yield item
    except GeneratorExit:
        token = otel_context.attach(ctx)
        try:
            await agen.aclose()
        finally:
            _safe_detach(token)
        raise
    except BaseException as e:
        exc = e
        raise
    finally:
        on_end(exc)


def record_error(span: Span, exc: BaseException) -> None:
    if not span.is_recording():
        return
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:1000]))
    span.set_attribute(semconv.ERROR_TYPE, _error_type(exc))


def _error_type(exc: BaseException) -> str:
    code = getattr(exc, "error_type", None) or getattr(exc, "code", None)
    if isinstance(code, str) and code:
        return code
    return type(exc).__qualname__


class RunScope(_Scope):
    def __init__(
        self,
        flow: str,
        *,
        run_id: str | None = None,
        budget_usd: Decimal | str | float | None = None,
        input: Any = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.flow = flow
        self._run_id = run_id
        self._budget = budget_usd
        self._input = input
        self._attributes = dict(attributes or {})
        self.run: Run | None = None

    def _fresh(self) -> RunScope:
        return RunScope(self.flow, budget_usd=self._budget, attributes=self._attributes)

    def _start(self) -> tuple[Span, otel_context.Context]:
        run, span, ctx = open_run(
            self.flow, run_id=self._run_id, budget_usd=self._budget, input=self._input,
            attributes=self._attributes,
        )
        self.run = run
        return span, ctx

    def _value(self) -> Run:
        assert self.run is not None
        return self.run

    def _on_end(self, span: Span) -> None:
        run = self.run
        if run is None or not span.is_recording():
            return
        if run.budget_exceeded:
            span.set_attribute(semconv.BUDGET_EXCEEDED, True)


class NodeScope(_Scope):
    def __init__(self, name: str, node_type: str = "task", attempt: int = 0, step: int | None = None):
        super().__init__()
        if node_type not in semconv.NODE_TYPES:
            raise ValueError(f"node type must be one of {semconv.NODE_TYPES}, not {node_type!r}")
        self.name = name
        self.node_type = node_type
        self.attempt = attempt
        self._step = step
        self.node: Node | None = None

    def _fresh(self) -> NodeScope:
        return NodeScope(self.name, self.node_type, self.attempt, self._step)

    def _start(self) -> tuple[Span, otel_context.Context]:
        node, ctx = open_node(self.name, self.node_type, step=self._step, attempt=self.attempt)
        self.node = node
        return node.span, ctx

    def _value(self) -> Node:
        assert self.node is not None
        return self.node


class ToolScope(_Scope):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def _fresh(self) -> ToolScope:
        return ToolScope(self.name)

    def _start(self) -> tuple[Span, otel_context.Context]:
        attrs = {
            semconv.GEN_AI_OPERATION_NAME: semconv.OP_EXECUTE_TOOL,
            semconv.GEN_AI_TOOL_NAME: self.name,
            semconv.SPAN_KIND: semconv.KIND_TOOL,
        }
        span = _tracer().start_span(semconv.tool_span_name(self.name), attributes=attrs)
        return span, trace.set_span_in_context(span)


# --- building blocks for runtime instrumentations -------------------------------
#
# Flow runtimes (LangGraph, PenguiFlow, PocketFlow) do not run a node inside one
# Python ``with`` block of ours: work hops between threads, tasks and callbacks.
# These functions start spans and build contexts without attaching anything, so
# an instrumentation decides itself where the context is current.

_NO_INPUT: Any = object()


def open_run(
    flow: str,
    *,
    run_id: str | None = None,
    budget_usd: Decimal | str | float | None = None,
    input: Any = _NO_INPUT,
    attributes: Mapping[str, Any] | None = None,
    context: otel_context.Context | None = None,
) -> tuple[Run, Span, otel_context.Context]:
    """Start a run span (not attached); returns the run, its span and the context under it.

    ``input`` (when given, ``None`` counts as no input) is recorded as the
    run's state snapshot at step -1.
    """
    run_ = Run(flow, run_id, budget_usd)
    attrs: dict[str, Any] = {
        semconv.GEN_AI_OPERATION_NAME: semconv.OP_INVOKE_WORKFLOW,
        semconv.GEN_AI_WORKFLOW_NAME: flow,
        semconv.SPAN_KIND: semconv.KIND_RUN,
        semconv.RUN_ID: run_.id,
    }
    if run_.budget_usd is not None:
        attrs[semconv.BUDGET_USD] = str(run_.budget_usd)
    if attributes:
        attrs.update(attributes)
    # The run id goes in the context before the span starts, so the span
    # processor stamps the root itself as well as everything below it.
    ctx = otel_context.set_value(_RUN_KEY, run_, context)
    ctx = otel_context.set_value(_NODE_KEY, None, ctx)
    span = _tracer().start_span(semconv.run_span_name(flow), context=ctx, attributes=attrs)
    run_.span = span
    ctx = trace.set_span_in_context(span, ctx)
    if input is not _NO_INPUT and input is not None:
        emit_state(span, run_, "snapshot", "", input, step=-1)
    return run_, span, ctx


def open_node(
    name: str,
    node_type: str = "task",
    *,
    step: int | None = None,
    attempt: int = 0,
    attributes: Mapping[str, Any] | None = None,
    context: otel_context.Context | None = None,
) -> tuple[Node, otel_context.Context]:
    """Start a node span under ``context`` (default: the current one), not attached.

    ``step`` defaults to the run's next step; pass it explicitly to give every
    attempt of one node execution the same step.
    """
    run_ = current_run(context)
    if step is None:
        step = run_.next_step() if run_ is not None else 0
    attrs: dict[str, Any] = {
        semconv.SPAN_KIND: semconv.KIND_NODE,
        semconv.NODE_NAME: name,
        semconv.NODE_TYPE: node_type if node_type in semconv.NODE_TYPES else "task",
        semconv.NODE_STEP: step,
        semconv.NODE_ATTEMPT: attempt,
    }
    if run_ is not None:
        # Said here, not only by the span processor, so a node span names its run
        # even under a provider flowscope.init() did not set up.
        attrs[semconv.RUN_ID] = run_.id
    if attributes:
        attrs.update(attributes)
    span = _tracer().start_span(name, context=context, attributes=attrs)
    node_ = Node(name, node_type, step, attempt, span)
    ctx = otel_context.set_value(_NODE_KEY, node_, context)
    return node_, trace.set_span_in_context(span, ctx)


def emit_state(
    span: Span, run_: Run, op: str, path: str, value: Any = None, *, step: int | None = None
) -> None:
    """Record one state event on ``span`` as of node step ``step`` (-1: the input).

    For runtimes that learn what a node changed only after its span ended (a
    LangGraph superstep applies reducers once all its nodes are done): the
    event then goes on a span still open and names the step it belongs to.
    Never raises.
    """
    try:
        _emit_state(span, run_, None, op, path, value, step=step)
    except Exception:
        logger.warning("flowscope: could not record state at %r", path, exc_info=True)


def ensure_run_processor() -> None:
    """Put flowscope's run-stamping span processor on the global SDK provider, once.

    ``flowscope.init()`` installs it; a provider set up by someone else (the
    ``opentelemetry-instrument`` distro, the app itself) has not got it, and
    without it LLM spans inside a run would not say which run they belong to.
    """
    try:
        from opentelemetry.sdk.trace import TracerProvider

        from .processor import RunAttributesProcessor

        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            return
        active = getattr(provider, "_active_span_processor", None)
        current = getattr(active, "_span_processors", ())
        if any(isinstance(p, RunAttributesProcessor) for p in current):
            return
        provider.add_span_processor(RunAttributesProcessor())
    except Exception:
        logger.debug("flowscope: could not add the run span processor", exc_info=True)


def end_span(span: Span, exc: BaseException | None = None) -> None:
    """End a span, recording ``exc`` as its error; never raises."""
    try:
        if exc is not None and not isinstance(exc, GeneratorExit):
            record_error(span, exc)
        span.end()
    except Exception:
        logger.debug("flowscope: could not end span", exc_info=True)


# --- public constructors --------------------------------------------------------


def run(
    flow: str,
    *,
    run_id: str | None = None,
    budget_usd: Decimal | str | float | None = None,
    input: Any = None,
    attributes: Mapping[str, Any] | None = None,
) -> RunScope:
    """Start a run: ``with flowscope.run("checkout-flow") as run: ...`` (``run.id`` is its id)."""
    return RunScope(flow, run_id=run_id, budget_usd=budget_usd, input=input, attributes=attributes)


@overload
def flow(func: F) -> F: ...
@overload
def flow(name: str | None = None, *, budget_usd: Any = None) -> Callable[[F], F]: ...


def flow(func: Any = None, *, name: str | None = None, budget_usd: Any = None) -> Any:
    """Decorator: every call of the function is a run named after it (or ``name``)."""
    if isinstance(func, str):
        name, func = func, None
    if callable(func):
        return RunScope(name or func.__name__, budget_usd=budget_usd)(func)
    return lambda f: RunScope(name or f.__name__, budget_usd=budget_usd)(f)


def node(name: Any = None, *, type: str = "task", attempt: int = 0) -> Any:
    """A node of the current run: ``with flowscope.node("plan")``, ``@flowscope.node``
    or ``@flowscope.node(type="router")``."""
    if callable(name):
        return NodeScope(name.__name__, type, attempt)(name)
    if name is None:
        return lambda f: NodeScope(f.__name__, type, attempt)(f)
    return NodeScope(name, type, attempt)


def tool(name: Any = None) -> Any:
    """A tool call span (``execute_tool {name}``): context manager or decorator."""
    if callable(name):
        return ToolScope(name.__name__)(name)
    if name is None:
        return lambda f: ToolScope(f.__name__)(f)
    return ToolScope(name)


def set_branch(branch: str) -> None:
    """Record which branch a router node took."""
    node_ = current_node()
    span = node_.span if node_ is not None else trace.get_current_span()
    if span.is_recording():
        span.set_attribute(semconv.ROUTER_BRANCH, str(branch))


def record_state(path: str, value: Any = None, *, op: str = "set") -> None:
    """Record a state change for time travel, on the span that made it.

    Never raises: a value that cannot be recorded is logged and skipped so the
    host app is never broken by its own observability.
    """
    try:
        if op not in semconv.STATE_OPS:
            raise ValueError(f"state op must be one of {semconv.STATE_OPS}, not {op!r}")
        run_ = current_run()
        if run_ is None:
            return
        node_ = current_node()
        span = node_.span if node_ is not None else (run_.span or trace.get_current_span())
        _emit_state(span, run_, node_, op, path, value)
    except Exception:
        logger.warning("flowscope: could not record state at %r", path, exc_info=True)


def _emit_state(
    span: Span, run_: Run, node_: Node | None, op: str, path: str, value: Any, *, step: int | None = None
) -> None:
    if not span.is_recording():
        return
    settings = config.current
    if step is None:
        step = node_.step if node_ is not None else -1
    attrs: dict[str, Any] = {
        semconv.STATE_SEQ: run_.next_seq(),
        semconv.STATE_OP: op,
        semconv.STATE_PATH: path,
        semconv.NODE_STEP: step,
    }
    if op != "delete":
        text, truncated = encode_value(
            path, value, max_bytes=settings.state_max_bytes, redact=settings.redact
        )
        attrs[semconv.STATE_VALUE] = text
        if truncated:
            attrs[semconv.STATE_TRUNCATED] = True
    span.add_event(semconv.EVENT_STATE, attrs)
