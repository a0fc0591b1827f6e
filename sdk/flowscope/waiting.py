"""Time a run spends waiting (a human approval, a LangGraph interrupt) as a span of its own.

Without it, a node that waits an hour for a person looks like an hour of
latency, and an LLM call issued right after looks slow too. A ``wait`` span is
none of node, llm or tool: the run summary reports its time as ``waiting_ms``
and nothing counts it as model or node work.

    with flowscope.wait("approval"):
        decision = approvals.block_until_decided(ticket)

When the wait is only known after the fact (the process that paused is not
the one that resumed), :func:`record_wait` writes it with explicit times.
"""

from __future__ import annotations

import logging
import time

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span

from ._otel import tracer as _tracer
from .core import semconv
from .scopes import _Scope

logger = logging.getLogger("flowscope")

KIND_WAIT = semconv.KIND_WAIT
WAIT_REASON = semconv.WAIT_REASON


def wait_span_name(reason: str) -> str:
    return f"wait {reason}"


def _attributes(reason: str) -> dict[str, str]:
    return {semconv.SPAN_KIND: KIND_WAIT, WAIT_REASON: reason}


class WaitScope(_Scope):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason

    def _fresh(self) -> WaitScope:
        return WaitScope(self.reason)

    def _start(self) -> tuple[Span, otel_context.Context]:
        span = _tracer().start_span(wait_span_name(self.reason), attributes=_attributes(self.reason))
        return span, trace.set_span_in_context(span)


def wait(reason: str = "wait") -> WaitScope:
    """A waiting period of the current run: context manager (sync or async) or decorator."""
    return WaitScope(str(reason))


def record_wait(reason: str, start_ns: int, end_ns: int | None = None) -> None:
    """Record a wait that already happened, from ``start_ns`` to ``end_ns`` (default now),
    as ``time.time_ns()`` values. Never raises."""
    try:
        end = end_ns if end_ns is not None else time.time_ns()
        span = _tracer().start_span(wait_span_name(reason), start_time=int(start_ns),
                                    attributes=_attributes(str(reason)))
        span.end(end_time=max(int(end), int(start_ns)))
    except Exception:
        logger.warning("flowscope: could not record a wait", exc_info=True)
