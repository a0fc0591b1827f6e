"""Instrumentation for PenguiFlow: every ``trace_id`` is a run; messages crossing edges are its state.

PenguiFlow runs long-lived node workers that pull messages of many traces from
bounded queues, so a run is not a call stack: it starts when the first message
of a trace enters a flow and ends when the flow's pending count for the trace
drops to zero (its last result fetched) or the flow stops. Hooks:

* the runtime's own middleware API (a ``FlowEvent`` per node start, success,
  error, timeout, retry, failure, cancel, deadline skip) closes node spans and
  records retries, ``FlowError`` codes (as ``error.type``) and cancellations;
* ``_execute_with_reliability`` / ``_invoke_node`` (wrapped, since events
  cannot carry a context): one node step per message a node handles, one node
  span per attempt, with the span's context current when PenguiFlow creates the
  invocation task, so LLM calls inside the node are its children;
* ``_send_to_floe`` / ``_send_to_floe_nowait``: every message that crosses an
  edge is recorded as state at path ``"source->target"`` (a subflow's edges under
  the name of the node that called it); stream chunks are counted and give the
  time to first chunk instead;
* ``_finalize_message`` / ``stop``: end of a trace.

A playbook run with ``call_playbook`` inside a node shares the trace id, so it
becomes a ``subflow`` node of the same run, nested under the calling node.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Collection
from typing import Any

import wrapt
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Span

from .._otel import end_span, record_error
from ..attributes import apply_run_attributes
from ..context import Node, Run, current_node, current_run
from ..core import semconv
from ..core.ids import is_run_id
from ..core.state import join_path
from ..runtime import emit_state, ensure_run_processor, open_node, open_run
from ._base import GLOBAL, FlowscopeInstrumentor, Telemetry

logger = logging.getLogger("flowscope")

# Where spans go: the providers passed to instrument() (see Telemetry).
_tel: Telemetry = GLOBAL

ATTR_RUNTIME = "flowscope.runtime"
RUNTIME = "penguiflow"
TRACE_ID = "flowscope.penguiflow.trace_id"
STOP_REASON = "flowscope.run.stop_reason"
STREAM_CHUNKS = "flowscope.stream.chunks"
EVENT_CANCEL = "flowscope.cancel"
TRACE_CANCELLED = "TRACE_CANCELLED"  # one spelling for a cancelled trace, on its run and its nodes
EVENT_DEADLINE_SKIP = "flowscope.deadline.skip"
EVENT_STOP = "flowscope.stop"

_EXEC_KEY = otel_context.create_key("flowscope.penguiflow.exec")
_enabled = False

# trace ids already used as run ids here: a trace id reused for a second
# round trip after its run ended gets a fresh run id, not a merged run
_used_ids: OrderedDict[str, None] = OrderedDict()
_used_lock = threading.Lock()


def _claim_run_id(trace_id: str) -> str | None:
    if not is_run_id(trace_id):
        return None
    with _used_lock:
        if trace_id in _used_ids:
            return None
        _used_ids[trace_id] = None
        if len(_used_ids) > 100_000:
            _used_ids.popitem(last=False)
    return trace_id


class _Trace:
    """One trace inside one flow: the run (or subflow node) and where its spans hang."""

    __slots__ = ("cancelled", "chunks", "ctx", "error", "last_step", "node", "owns_run", "prefix", "run",
                 "span", "started", "stop_reason")

    def __init__(self, run_: Run, span: Span, ctx: otel_context.Context, *, owns_run: bool,
                 node: Node | None, prefix: tuple[str, ...]) -> None:
        self.run = run_
        self.span = span
        self.ctx = ctx
        self.owns_run = owns_run
        self.node = node
        self.prefix = prefix
        self.cancelled = False
        # the FlowError the flow delivered for this trace (emit_errors_to_rookery): its result
        self.error: tuple[str, str] | None = None
        self.stop_reason: str | None = None
        self.chunks = 0
        self.started = time.monotonic()
        # the step a message sent from outside any node belongs to: the input
        # (-1, or the subflow node's own step) until a node has run
        self.last_step = node.step if node is not None else -1


class _Exec:
    """One node handling one message: its step, its attempts, the open attempt span."""

    __slots__ = ("attempt_started", "attempts", "chunks", "max_step", "node", "parent", "pf_node", "recorded",
                 "step", "trace")

    def __init__(self, trace: _Trace, pf_node: Any, step: int, parent: _Exec | None) -> None:
        self.trace = trace
        self.pf_node = pf_node
        self.step = step
        # A node that runs a playbook finishes after the subflow's nodes, which
        # have later steps: what it sends afterwards belongs to the latest of them.
        self.max_step = step
        self.parent = parent
        while parent is not None:
            parent.max_step = max(parent.max_step, step)
            parent = parent.parent
        self.attempts = 0
        self.node: Node | None = None
        self.attempt_started = 0.0
        self.chunks = 0
        self.recorded = False  # the open attempt's error is already on its span

    def close(self, exc: BaseException | None = None) -> None:
        node_, self.node = self.node, None
        if node_ is not None:
            end_span(node_.span, None if self.recorded else exc)
        self.recorded = False


_traces: weakref.WeakKeyDictionary[Any, dict[str, _Trace]] = weakref.WeakKeyDictionary()


def _flow_name(flow: Any) -> str:
    name = getattr(flow, "name", None)
    return name if isinstance(name, str) and name else "penguiflow"


def _label(endpoint: Any) -> str:
    name = getattr(endpoint, "name", None)
    return str(name or getattr(endpoint, "node_id", None) or "*")


def _message_run_attributes(run_: Run, message: Any) -> None:
    """``Message.meta`` (user_id, tenant, session_id, ...) and the header's tenant become run attributes."""
    meta = getattr(message, "meta", None)
    found = dict(meta) if isinstance(meta, dict) else {}
    tenant = getattr(getattr(message, "headers", None), "tenant", None)
    if tenant and "tenant" not in found:
        found["tenant"] = tenant
    if found:
        apply_run_attributes(found, run=run_)


def _trace(flow: Any, trace_id: str, *, create: bool, message: Any = None) -> _Trace | None:
    traces = _traces.get(flow)
    if traces is None:
        if not create:
            return None
        traces = _traces.setdefault(flow, {})
    found = traces.get(trace_id)
    if found is not None or not create:
        return found
    attrs = {ATTR_RUNTIME: RUNTIME, TRACE_ID: trace_id}
    run_ = current_run()
    if run_ is None:
        run_, span, ctx = open_run(_flow_name(flow), run_id=_claim_run_id(trace_id), attributes=attrs, tracer=_tel.tracer)
        _message_run_attributes(run_, message)
        found = _Trace(run_, span, ctx, owns_run=True, node=None, prefix=())
    else:
        parent = current_node()
        node_, ctx = open_node(_flow_name(flow) if hasattr(flow, "name") else "playbook", "subflow",
                               attributes=attrs, tracer=_tel.tracer)
        prefix = (parent.name,) if parent is not None else (node_.name,)
        found = _Trace(run_, node_.span, ctx, owns_run=False, node=node_, prefix=prefix)
    traces[trace_id] = found
    return found


def _close_trace(flow: Any, trace_id: str, *, reason: str | None = None) -> None:
    traces = _traces.get(flow)
    found = traces.pop(trace_id, None) if traces is not None else None
    if found is None:
        return
    span = found.span
    try:
        if span.is_recording():
            if found.stop_reason:
                span.set_attribute(STOP_REASON, found.stop_reason)
            if found.chunks:
                span.set_attribute(STREAM_CHUNKS, found.chunks)
            if found.cancelled:
                span.set_attribute(semconv.ERROR_TYPE, TRACE_CANCELLED)
                span.set_status(semconv_status_error("trace cancelled"))
            elif found.error is not None:
                # What the flow delivered was an error: the run failed, whatever else it did.
                code, message = found.error
                span.set_attribute(semconv.ERROR_TYPE, code)
                span.set_status(semconv_status_error(f"{code}: {message}"[:1000]))
            elif reason is not None:
                span.add_event(EVENT_STOP, {"reason": reason})
    except Exception:
        pass
    end_span(span)


def semconv_status_error(message: str) -> Any:
    from opentelemetry.trace import Status, StatusCode

    return Status(StatusCode.ERROR, message)


# --- node executions ---------------------------------------------------------------


async def _execute_with_reliability(wrapped: Any, instance: Any, args: tuple[Any, ...],
                                    kwargs: dict[str, Any]) -> Any:
    ex: _Exec | None = None
    token = None
    try:
        pf_node, message = args[0], args[2]
        trace_id = getattr(message, "trace_id", None)
        if _enabled and isinstance(trace_id, str):
            found = _trace(instance, trace_id, create=True, message=message)
            if found is not None:
                parent = otel_context.get_value(_EXEC_KEY)
                ex = _Exec(found, pf_node, found.run.next_step(), parent if isinstance(parent, _Exec) else None)
                found.last_step = max(found.last_step, ex.step)
                token = otel_context.attach(otel_context.set_value(_EXEC_KEY, ex, found.ctx))
    except Exception:
        logger.debug("flowscope: could not trace a PenguiFlow node", exc_info=True)
    if ex is None:
        return await wrapped(*args, **kwargs)
    try:
        return await wrapped(*args, **kwargs)
    except BaseException as exc:
        ex.close(exc)
        raise
    finally:
        ex.close()
        if token is not None:
            otel_context.detach(token)


async def _invoke_node(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    ex: _Exec | None = otel_context.get_value(_EXEC_KEY)  # type: ignore[assignment]
    if ex is None or not _enabled:
        return await wrapped(*args, **kwargs)
    token = None
    try:
        ex.close()  # a previous attempt nobody closed
        attempt = ex.attempts
        ex.attempts += 1
        pf_node = ex.pf_node
        attrs: dict[str, Any] = {ATTR_RUNTIME: RUNTIME}
        if attempt:
            attrs[semconv.RETRY_COUNT] = 1  # this attempt is one retry: sums to the node's retries
        ex.node, ctx = open_node(str(getattr(pf_node, "name", None) or "node"), "task", step=ex.step,
                                 attempt=attempt, attributes=attrs, tracer=_tel.tracer)
        ex.attempt_started = time.monotonic()
        token = otel_context.attach(ctx)
    except Exception:
        logger.debug("flowscope: could not open a PenguiFlow node span", exc_info=True)
    try:
        return await wrapped(*args, **kwargs)
    except BaseException as exc:
        node_ = ex.node
        if node_ is not None:
            record_error(node_.span, exc)
            ex.recorded = True
            if isinstance(exc, TimeoutError) and node_.span.is_recording():
                node_.span.set_attribute(semconv.ERROR_TYPE, "NODE_TIMEOUT")
            elif type(exc).__name__ == "TraceCancelled" and node_.span.is_recording():
                # PenguiFlow's exception, spelled as the run spells it (and its FlowError codes)
                node_.span.set_attribute(semconv.ERROR_TYPE, TRACE_CANCELLED)
        raise
    finally:
        if token is not None:
            otel_context.detach(token)


async def _middleware(event: Any) -> None:
    """Our PenguiFlow middleware: node lifecycle events close spans and record what happened."""
    if not _enabled:
        return
    try:
        kind = event.event_type
        ex: _Exec | None = otel_context.get_value(_EXEC_KEY)  # type: ignore[assignment]
        node_ = ex.node if ex is not None else None
        if kind == "node_success" and ex is not None:
            ex.close()
        elif kind == "node_retry" and ex is not None and node_ is not None:
            extra = event.extra or {}
            exc_repr = str(extra.get("exception", ""))
            span = node_.span
            if span.is_recording():
                span.add_event(semconv.EVENT_RETRY, {
                    semconv.RETRY_ATTEMPT: max(0, int(event.attempt) - 1),
                    semconv.ERROR_TYPE: exc_repr.split("(", 1)[0] or "error",
                    semconv.RETRY_BACKOFF_S: float(extra.get("sleep_s") or 0.0),
                })
            ex.close()
        elif kind == "node_failed" and ex is not None:
            payload = event.error_payload or {}
            code = payload.get("code")
            if node_ is not None and code and node_.span.is_recording():
                node_.span.set_attribute(semconv.ERROR_TYPE, str(code))
                node_.span.set_status(semconv_status_error(str(payload.get("message") or code)[:1000]))
            ex.close()
        elif kind == "node_trace_cancelled" and ex is not None:
            # Only this one means the trace was cancelled. ``node_cancelled`` (no trace id) is
            # stop() cancelling a worker task; a playbook subflow's workers inherited the
            # calling node's context, so reading it as a cancellation closed a node that was
            # still running (and succeeded) as TRACE_CANCELLED.
            if node_ is not None and node_.span.is_recording():
                node_.span.set_attribute(semconv.ERROR_TYPE, TRACE_CANCELLED)
                node_.span.set_status(semconv_status_error("trace cancelled"))
            ex.close()
        elif kind == "trace_cancel_start":
            _mark_trace(event, cancelled=True)
        elif kind == "deadline_skip":
            found = _mark_trace(event, reason="DEADLINE_EXCEEDED")
            if found is not None and found.span.is_recording():
                found.span.add_event(EVENT_DEADLINE_SKIP, {semconv.NODE_NAME: str(event.node_name or "")})
    except Exception:
        logger.debug("flowscope: PenguiFlow event not recorded", exc_info=True)


def _mark_trace(event: Any, *, cancelled: bool = False, reason: str | None = None) -> _Trace | None:
    trace_id = event.trace_id
    if not isinstance(trace_id, str):
        return None
    first: _Trace | None = None
    for traces in list(_traces.values()):  # the flow and any subflow sharing the trace
        found = traces.get(trace_id)
        if found is None:
            continue
        if cancelled and not found.cancelled:
            found.cancelled = True
            if found.span.is_recording():
                found.span.add_event(EVENT_CANCEL)
        if reason and not found.stop_reason:
            found.stop_reason = reason
        first = first or found
    return first


# --- messages crossing edges ------------------------------------------------------


_STOP_TEXTS: dict[str, str] = {}


def _stop_reasons() -> dict[str, str]:
    if not _STOP_TEXTS:
        from penguiflow import core

        _STOP_TEXTS.update({
            core.BUDGET_EXCEEDED_TEXT: "HOP_BUDGET_EXHAUSTED",
            core.TOKEN_BUDGET_EXCEEDED_TEXT: "TOKEN_BUDGET_EXHAUSTED",
            core.DEADLINE_EXCEEDED_TEXT: "DEADLINE_EXCEEDED",
        })
    return _STOP_TEXTS


def _on_edge(flow: Any, floe: Any, message: Any) -> None:
    trace_id = getattr(message, "trace_id", None)
    if not _enabled or not isinstance(trace_id, str):
        return
    found = _trace(flow, trace_id, create=True, message=message)
    if found is None:
        return
    ex: _Exec | None = otel_context.get_value(_EXEC_KEY)  # type: ignore[assignment]
    if ex is not None and ex.trace is not found:
        ex = None
    payload = getattr(message, "payload", None)
    from penguiflow.errors import FlowError
    from penguiflow.types import FinalAnswer, StreamChunk

    if isinstance(message, FlowError) and _label(floe.target) == "Rookery" and found.error is None:
        found.error = (str(message.code), str(message.message))

    if isinstance(payload, StreamChunk):
        _on_chunk(found, ex, floe)
        return
    if isinstance(payload, FinalAnswer):
        reason = _stop_reasons().get(payload.text)
        if reason:
            found.stop_reason = found.stop_reason or reason
            if ex is not None and ex.node is not None and ex.node.span.is_recording():
                ex.node.span.set_attribute(STOP_REASON, reason)
    path = join_path([*found.prefix, f"{_label(floe.source)}->{_label(floe.target)}"])
    if ex is not None and ex.node is not None:
        emit_state(ex.node.span, found.run, "set", path, message, step=ex.max_step)
    elif ex is not None:
        emit_state(found.span, found.run, "set", path, message, step=ex.max_step)
    else:  # from outside any node: the input, or the runtime itself (a deadline answer)
        emit_state(found.span, found.run, "set", path, message, step=found.last_step)


def _on_chunk(found: _Trace, ex: _Exec | None, floe: Any) -> None:
    now = time.monotonic()
    if ex is not None and ex.node is not None:
        ex.chunks += 1
        span = ex.node.span
        if span.is_recording():
            if ex.chunks == 1:
                span.set_attribute(semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, now - ex.attempt_started)
            span.set_attribute(STREAM_CHUNKS, ex.chunks)
    if _label(floe.target) == "Rookery":
        found.chunks += 1
        if found.chunks == 1 and found.span.is_recording():
            found.span.set_attribute(semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, now - found.started)


async def _send_to_floe(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        _on_edge(instance, args[0], args[1])
    except Exception:
        logger.debug("flowscope: could not record a PenguiFlow message", exc_info=True)
    return await wrapped(*args, **kwargs)


def _send_to_floe_nowait(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        _on_edge(instance, args[0], args[1])
    except Exception:
        logger.debug("flowscope: could not record a PenguiFlow message", exc_info=True)
    return wrapped(*args, **kwargs)


# --- trace and flow lifecycle ------------------------------------------------------


async def _finalize_message(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = await wrapped(*args, **kwargs)
    try:
        trace_id = getattr(args[0] if args else None, "trace_id", None)
        if isinstance(trace_id, str) and trace_id not in instance._trace_counts:
            _close_trace(instance, trace_id)
    except Exception:
        logger.debug("flowscope: could not end a PenguiFlow run", exc_info=True)
    return result


def _run(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        if _middleware not in instance._middlewares:
            instance._middlewares.append(_middleware)
    except Exception:
        logger.debug("flowscope: could not add the PenguiFlow middleware", exc_info=True)
    return wrapped(*args, **kwargs)


async def _stop(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    finally:
        try:
            for trace_id in list((_traces.get(instance) or {}).keys()):
                _close_trace(instance, trace_id, reason="flow stopped")
        except Exception:
            logger.debug("flowscope: could not end PenguiFlow runs", exc_info=True)


_PATCHES = (
    ("_execute_with_reliability", _execute_with_reliability),
    ("_invoke_node", _invoke_node),
    ("_send_to_floe", _send_to_floe),
    ("_send_to_floe_nowait", _send_to_floe_nowait),
    ("_finalize_message", _finalize_message),
    ("run", _run),
    ("stop", _stop),
)


class PenguiFlowInstrumentor(FlowscopeInstrumentor):
    """``PenguiFlowInstrumentor().instrument()``; instrumenting twice is harmless."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("penguiflow >= 3.0",)

    def _instrument(self, **kwargs: Any) -> None:
        global _tel
        _tel = Telemetry.from_kwargs(kwargs)
        ensure_run_processor(_tel.tracer_provider)
        global _enabled
        for method, wrapper in _PATCHES:
            wrapt.wrap_function_wrapper("penguiflow.core", f"PenguiFlow.{method}", wrapper)
        _enabled = True

    def _uninstrument(self, **kwargs: Any) -> None:
        global _enabled
        from penguiflow.core import PenguiFlow

        _enabled = False
        for method, _ in _PATCHES:
            unwrap(PenguiFlow, method)
