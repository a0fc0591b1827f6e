"""The public scopes: ``flowscope.run``, ``flow``, ``node`` and ``tool``, and what a node records.

Each is a context manager (sync and async) and a decorator (functions,
coroutines, generators and async generators) at once, opening the span tree
``run → node → llm/tool`` through :mod:`flowscope.runtime`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span

from . import _otel
from .context import Node, Run, current_node, current_run
from .core import semconv
from .runtime import emit_state_of, open_node, open_run

logger = logging.getLogger("flowscope")

F = TypeVar("F", bound=Callable[..., Any])


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
                    _otel.record_error(span, exc)
                self._on_end(span)
                span.end()
        finally:
            if self._token is not None:
                _otel.detach(self._token)
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
                        _otel.record_error(span, exc)
                    scope._on_end(span)
                    span.end()

                inner = _otel.traced_agen(func(*args, **kwargs), ctx, on_end)
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
                        _otel.record_error(span, exc)
                    scope._on_end(span)
                    span.end()

                yield from _otel.traced_gen(func(*args, **kwargs), ctx, on_end)

            return gen_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


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
        span = _otel.tracer().start_span(semconv.tool_span_name(self.name), attributes=attrs)
        return span, trace.set_span_in_context(span)


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
def flow(func: str | None = None, *, name: str | None = None, budget_usd: Any = None) -> Callable[[F], F]: ...


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
    r"""Record a state change for time travel, on the span that made it.

    ``path`` is dotted (``"order.total"`` sets ``total`` inside ``order``), so a key that
    holds a dot is escaped: ``r"price\.usd"`` is the one key ``price.usd`` (docs/usage.md).

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
        emit_state_of(span, run_, node_, op, path, value)
    except Exception:
        logger.warning("flowscope: could not record state at %r", path, exc_info=True)


