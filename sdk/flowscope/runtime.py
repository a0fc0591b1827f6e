"""Building blocks the flow-runtime instrumentations and the public scopes share.

Flow runtimes (LangGraph, PenguiFlow, PocketFlow) do not run a node inside one
Python ``with`` block of ours: work hops between threads, tasks and callbacks.
These functions start spans and build contexts without attaching anything, so
an instrumentation decides itself where the context is current. Each takes the
tracer to start spans with, so an instrumentor honours the ``tracer_provider``
passed to ``instrument()``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span

from . import _otel, _replaying, config
from .context import NODE_KEY, RUN_KEY, Node, Run, current_run
from .core import semconv
from .core.state import encode_value
from .processor import RunAttributesProcessor

logger = logging.getLogger("flowscope")

_NO_INPUT: Any = object()


def open_run(
    flow: str,
    *,
    run_id: str | None = None,
    budget_usd: Decimal | str | float | None = None,
    input: Any = _NO_INPUT,
    attributes: Mapping[str, Any] | None = None,
    context: otel_context.Context | None = None,
    tracer: trace.Tracer | None = None,
) -> tuple[Run, Span, otel_context.Context]:
    """Start a run span (not attached); returns the run, its span and the context under it.

    ``input`` (when given, ``None`` counts as no input) is recorded as the
    run's state snapshot at step -1.
    """
    run_ = Run(flow, run_id, budget_usd)
    fork = _replaying.FORK.get()
    if fork is not None and not fork.claim(run_.id):
        fork = None
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
    if fork is not None:
        attrs[semconv.RUN_FORKED_FROM] = fork.parent_run_id
        attrs[semconv.RUN_FORKED_AT_STEP] = fork.at_step
        run_.continue_after(fork.at_step)
    # The run id goes in the context before the span starts, so the span
    # processor stamps the root itself as well as everything below it.
    ctx = otel_context.set_value(RUN_KEY, run_, context)
    ctx = otel_context.set_value(NODE_KEY, None, ctx)
    span = (tracer or _otel.tracer()).start_span(semconv.run_span_name(flow), context=ctx, attributes=attrs)
    run_.span = span
    ctx = trace.set_span_in_context(span, ctx)
    if fork is not None:
        _copy_prefix(fork, run_, span, ctx, tracer or _otel.tracer())
    if input is not _NO_INPUT and input is not None:
        emit_state(span, run_, "snapshot", "", input, step=-1)
    return run_, span, ctx


def _copy_prefix(
    fork: _replaying.Fork, run_: Run, span: Span, ctx: otel_context.Context, tracer: trace.Tracer
) -> None:
    """The parent's steps 0..k in the fork: its state at each step, and a node span standing for each.

    The node spans (``flowscope.replay.copied``) did not run again; they keep the
    fork's path and steps aligned with the parent's, so a comparison shows
    where the two part. Never raises.
    """
    try:
        for step, ops in fork.states:
            for op, path, value in ops:
                emit_state_of(span, run_, None, op, path, value, step=step, exact=True)
        for node_ in fork.nodes:
            attrs: dict[str, Any] = {
                semconv.SPAN_KIND: semconv.KIND_NODE,
                semconv.NODE_NAME: node_.name,
                semconv.NODE_TYPE: node_.type if node_.type in semconv.NODE_TYPES else "task",
                semconv.NODE_STEP: node_.step,
                semconv.NODE_ATTEMPT: 0,
                semconv.RUN_ID: run_.id,
                semconv.REPLAY_COPIED: True,
            }
            if node_.branch:
                attrs[semconv.ROUTER_BRANCH] = node_.branch
            tracer.start_span(node_.name, context=ctx, attributes=attrs).end()
    except Exception:
        logger.warning("flowscope: could not copy the parent run's steps into the fork", exc_info=True)


def open_node(
    name: str,
    node_type: str = "task",
    *,
    step: int | None = None,
    attempt: int = 0,
    attributes: Mapping[str, Any] | None = None,
    context: otel_context.Context | None = None,
    tracer: trace.Tracer | None = None,
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
    span = (tracer or _otel.tracer()).start_span(name, context=context, attributes=attrs)
    node_ = Node(name, node_type, step, attempt, span)
    ctx = otel_context.set_value(NODE_KEY, node_, context)
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
        emit_state_of(span, run_, None, op, path, value, step=step)
    except Exception:
        logger.warning("flowscope: could not record state at %r", path, exc_info=True)


def ensure_run_processor(tracer_provider: Any = None) -> None:
    """Put flowscope's run-stamping span processor on the SDK provider, once.

    ``flowscope.init()`` installs it on the global provider; a provider set up by
    someone else (the ``opentelemetry-instrument`` distro, the app itself, one
    passed to ``instrument(tracer_provider=...)``) has not got it, and without it
    LLM spans inside a run would not say which run they belong to.
    """
    try:
        from opentelemetry.sdk.trace import TracerProvider

        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider) or _otel.has_processor(provider, RunAttributesProcessor):
            return
        provider.add_span_processor(RunAttributesProcessor())
    except Exception:
        logger.debug("flowscope: could not add the run span processor", exc_info=True)


def emit_state_of(
    span: Span, run_: Run, node_: Node | None, op: str, path: str, value: Any, *, step: int | None = None,
    exact: bool = False,
) -> None:
    """A state event ``op path=value`` on ``span``, made in ``node_`` (or at ``step``); may raise.

    In a fork, what a runtime records as its input (step -1) is the state it
    resumed from, the parent's state at the fork step: it is recorded there
    (``exact=True``: the step as given, for the parent's copied states).
    """
    if not span.is_recording():
        return
    settings = config.current
    if step is None:
        step = node_.step if node_ is not None else -1
    if not exact and run_.fork_step is not None and step < run_.fork_step:
        step = run_.fork_step
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
