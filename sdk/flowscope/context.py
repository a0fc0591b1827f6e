"""The run context: the live run and node that work in this context belongs to.

A run's bookkeeping (step counter, state sequence, money spent) rides in the
OpenTelemetry ``Context`` next to the active span, so it follows the work the
same way spans do: into ``asyncio`` tasks, through ``contextvars.copy_context``
into thread pools, and into anything an OTel propagator carries.
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from decimal import Decimal
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Span

from ._otel import error_type
from .core import semconv
from .core.ids import new_run_id

logger = logging.getLogger("flowscope")

RUN_KEY = otel_context.create_key("flowscope.run")
NODE_KEY = otel_context.create_key("flowscope.node")


class BudgetExceeded(RuntimeError):
    """Raised before a call is sent when its run has spent its budget, or when the call
    could cost more than what is left (``estimate_usd``, its worst case)."""

    def __init__(
        self, run_id: str, budget_usd: Decimal, spent_usd: Decimal, estimate_usd: Decimal | None = None
    ) -> None:
        could = "" if estimate_usd is None else f" and the call could cost up to ${format(estimate_usd, 'f')}"
        super().__init__(
            f"run {run_id} has spent ${format(spent_usd, 'f')} of its ${format(budget_usd, 'f')} budget{could}; "
            "the call was not sent"
        )
        self.run_id = run_id
        self.budget_usd = budget_usd
        self.spent_usd = spent_usd
        self.estimate_usd = estimate_usd


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
        # a fork (flowscope.replay) continues its parent after this step: its own steps come after it
        self.fork_step: int | None = None

    def continue_after(self, step: int) -> None:
        """This run is a fork of another after ``step``: its next node is step ``step + 1``."""
        self.fork_step = step
        self._steps = itertools.count(step + 1)

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

    def replace_cost(self, counted: Decimal | None, actual: Decimal) -> None:
        """A call already counted at ``counted`` (None: as unpriced) really cost ``actual``."""
        with self._lock:
            if counted is None:
                self.unpriced_calls = max(0, self.unpriced_calls - 1)
                self.cost_usd += actual
            else:
                self.cost_usd += actual - counted

    def check_budget(self, estimate: Decimal | None = None) -> None:
        """Refuse to start a call that could pass the budget: spent + its worst-case
        ``estimate`` > budget (without an estimate: once the budget is spent, spent >= budget)."""
        if self.budget_usd is None:
            return
        with self._lock:
            spent = self.cost_usd
        if spent >= self.budget_usd or (estimate is not None and spent + estimate > self.budget_usd):
            self.budget_exceeded = True
            if self.span is not None and self.span.is_recording():
                self.span.set_attribute(semconv.BUDGET_EXCEEDED, True)
                # one event per refused call: when it happened and what had been spent
                self.span.add_event(
                    semconv.BUDGET_EXCEEDED,
                    {semconv.BUDGET_USD: str(self.budget_usd), "flowscope.budget.spent_usd": format(spent, "f")},
                )
            raise BudgetExceeded(self.id, self.budget_usd, spent, estimate)

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
            attrs: dict[str, Any] = {semconv.RETRY_ATTEMPT: attempt, semconv.ERROR_TYPE: error_type(exc)}
            if backoff_s is not None:
                attrs[semconv.RETRY_BACKOFF_S] = float(backoff_s)
            self.span.add_event(semconv.EVENT_RETRY, attrs)
            self.span.set_attribute(semconv.RETRY_COUNT, self.retries)
        except Exception:
            logger.debug("flowscope: could not record a retry", exc_info=True)


def current_run(ctx: otel_context.Context | None = None) -> Run | None:
    return otel_context.get_value(RUN_KEY, ctx)  # type: ignore[return-value]


def current_node(ctx: otel_context.Context | None = None) -> Node | None:
    return otel_context.get_value(NODE_KEY, ctx)  # type: ignore[return-value]


# --- spans of local runs that are still open ------------------------------------------------
#
# ``set_run_attributes`` must reach the spans of the run that already started (the
# run span, the current node); the span processor registers them here as they start.

_open_lock = threading.Lock()
# span id -> (its run, the span); only spans of a local run, only until they end.
_open: dict[int, tuple[weakref.ref[Run], Span]] = {}


def open_spans(run: Run) -> list[Span]:
    """Spans of ``run`` that have started and not yet ended, in this process."""
    with _open_lock:
        return [span for ref, span in _open.values() if ref() is run]


def span_opened(span_id: int, run: Run, span: Span) -> None:
    with _open_lock:
        _open[span_id] = (weakref.ref(run), span)


def span_closed(span_id: int) -> None:
    if _open:
        with _open_lock:
            _open.pop(span_id, None)
