"""``flowscope.fallback``: try a model call, fall back to others, and say so on the span.

A fallback that nobody can see is how a cheap model silently becomes an
expensive one (or the reverse). Each candidate runs inside a scope that the
LLM spans it opens register with; the span that finally serves the request
carries ``flowscope.fallback.from`` / ``.to`` / ``.reason``, so the run
summary can count fallbacks and the trace shows which call failed and why.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Protocol

from opentelemetry import trace

from .context import BudgetExceeded
from .core import semconv


class LLMCall(Protocol):
    """What a fallback reads of an LLM call (:class:`flowscope.llm.LLMCall` is one): its span and its
    ``provider/model`` label. A protocol, so this module sits below ``llm`` instead of beside it."""

    @property
    def span(self) -> Any: ...

    @property
    def label(self) -> str: ...

__all__ = ["FallbackScope", "current_scope", "fallback"]

_SCOPE: ContextVar[FallbackScope | None] = ContextVar("flowscope_fallback_scope", default=None)


class FallbackScope:
    """One candidate's attempt: the LLM calls it made, and what it fell back from."""

    __slots__ = ("calls", "failed_calls", "from_label", "marked", "reason")

    def __init__(self, from_label: str | None = None, reason: str | None = None) -> None:
        self.from_label = from_label
        self.reason = reason
        self.calls: list[LLMCall] = []
        self.failed_calls: list[tuple[LLMCall, BaseException]] = []
        self.marked = False

    @property
    def is_fallback(self) -> bool:
        return self.from_label is not None

    def served(self, call: LLMCall) -> None:
        """The first call of a fallback candidate that succeeds is the one that served."""
        if not self.is_fallback or self.marked:
            return
        self.marked = True
        _set_attributes(call.span, self.from_label or "", call.label, self.reason or "")

    def failure_label(self, fn: Callable[..., Any]) -> str:
        """What this candidate was, named by its failed LLM call when it made one."""
        if self.failed_calls:
            return self.failed_calls[-1][0].label
        if self.calls:
            return self.calls[-1].label
        return getattr(fn, "__qualname__", None) or repr(fn)


def current_scope() -> FallbackScope | None:
    return _SCOPE.get()


def _set_attributes(span: Any, from_label: str, to_label: str, reason: str) -> None:
    if span.is_recording():
        span.set_attribute(semconv.FALLBACK_FROM, from_label)
        span.set_attribute(semconv.FALLBACK_TO, to_label)
        span.set_attribute(semconv.FALLBACK_REASON, reason)


def _reason(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    return f"{name} ({status})" if isinstance(status, int) else name


def _label_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _mark_untraced_success(scope: FallbackScope, fn: Callable[..., Any]) -> None:
    """A fallback candidate that served without any LLM span (e.g. a canned answer):
    record the fallback on the current span so it is not invisible."""
    if scope.is_fallback and not scope.marked:
        scope.marked = True
        _set_attributes(trace.get_current_span(), scope.from_label or "", _label_of(fn), scope.reason or "")


def fallback(
    primary: Callable[[], Any],
    *alternatives: Callable[[], Any],
    on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
) -> Any:
    """Call ``primary()``; if it raises one of ``on``, call the next alternative, and so on.

    Returns the first result. With async callables (or callables that return
    awaitables, like ``lambda: aclient.chat.completions.create(...)``) it
    returns an awaitable: ``await flowscope.fallback(...)``. When every
    candidate fails the last error is raised. ``BudgetExceeded`` never falls
    back: trying a different model does not make a spent budget unspent.
    """
    candidates = (primary, *alternatives)
    for fn in candidates:
        if not callable(fn):
            raise TypeError(f"flowscope.fallback takes callables, got {fn!r}")
    catch = on if isinstance(on, tuple) else (on,)
    if any(inspect.iscoroutinefunction(fn) for fn in candidates):
        return _run_async(candidates, catch, 0, None, FallbackScope())

    scope = FallbackScope()
    for index, fn in enumerate(candidates):
        token = _SCOPE.set(scope)
        try:
            result = fn()
        except BudgetExceeded:
            raise
        except catch as exc:
            if index == len(candidates) - 1:
                raise
            scope = FallbackScope(scope.failure_label(fn), _reason(exc))
            continue
        finally:
            _SCOPE.reset(token)
        if inspect.isawaitable(result):
            return _run_async(candidates, catch, index, result, scope)
        _mark_untraced_success(scope, fn)
        return result
    raise AssertionError("unreachable")  # pragma: no cover


async def _run_async(
    candidates: tuple[Callable[[], Any], ...],
    catch: tuple[type[BaseException], ...],
    start: int,
    pending: Awaitable[Any] | None,
    scope: FallbackScope,
) -> Any:
    for index in range(start, len(candidates)):
        fn = candidates[index]
        token = _SCOPE.set(scope)
        try:
            if pending is not None:
                awaitable, pending = pending, None
                result = await awaitable
            else:
                result = fn()
                if inspect.isawaitable(result):
                    result = await result
        except BudgetExceeded:
            raise
        except catch as exc:
            if index == len(candidates) - 1:
                raise
            scope = FallbackScope(scope.failure_label(fn), _reason(exc))
            continue
        finally:
            _SCOPE.reset(token)
        _mark_untraced_success(scope, fn)
        return result
    raise AssertionError("unreachable")  # pragma: no cover
