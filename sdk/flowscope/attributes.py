"""Run attributes: who and what a run was for, on every span, in every service.

``set_run_attributes(user_id=..., tenant=..., session_id=..., **custom)`` stores
the attributes on the current :class:`~flowscope.context.Run`; the span processor
copies them onto every span the run starts from then on, and they are written
onto the run's spans that are still open (the run span, the current node, ...).
Spans that already ended cannot change (OpenTelemetry spans are immutable once
ended), so call it early, ideally right after the run starts.

Names: ``user_id`` → ``user.id``, ``session_id`` → ``gen_ai.conversation.id``
(the standard names other tools already read); everything else, ``tenant``
included, → ``flowscope.run.attr.<name>``. :func:`attribute_key` is the one
place that resolves a name, so the collector's ``group_by=attr:<name>`` agrees.

Across processes the run id and these attributes travel as W3C baggage: the
:class:`RunBaggagePropagator` writes them into the ``baggage`` header of every
request an OpenTelemetry HTTP instrumentation (httpx, requests, ...) sends
while a run is active, and the span processor of the service that receives
the request stamps its spans with the same ``flowscope.run.id``. The calling
run and everything it caused downstream are then one run with one cost.
Baggage is sent to every instrumented destination, so only put in run
attributes what you would put in a request header; set
``FLOWSCOPE_PROPAGATE_RUN=false`` to keep them in-process.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators import textmap
from opentelemetry.propagators.composite import CompositePropagator

from . import config
from ._otel import propagators_of
from .context import Run, current_run, open_spans
from .core import semconv
from .core.run_attributes import (
    AttributeValue,
    is_run_attribute_key,
    normalize_run_attributes,
    run_attributes_from,
)

logger = logging.getLogger("flowscope")

PROPAGATE_ENV = "FLOWSCOPE_PROPAGATE_RUN"
# Baggage is a request header: values longer than this stay in-process.
_MAX_BAGGAGE_VALUE = 256


def _apply(run: Run | None, attrs: Mapping[str, AttributeValue]) -> None:
    if not attrs:
        return
    if run is not None:
        run.attributes.update(attrs)
        spans = open_spans(run)
        if run.span is not None and run.span not in spans:
            spans.append(run.span)
    else:
        spans = [trace.get_current_span()]
    for span in spans:
        if span.is_recording():
            span.set_attributes(dict(attrs))


def set_run_attributes(
    *,
    user_id: Any = None,
    tenant: Any = None,
    session_id: Any = None,
    **custom: Any,
) -> dict[str, AttributeValue]:
    """Attach attributes to every span of the current run, here and downstream.

    Returns the span attributes that were set (``{}`` outside a run). Outside a
    local run but inside one propagated from another service, they go on the
    current span only. Never raises.
    """
    try:
        attrs = normalize_run_attributes({"user_id": user_id, "tenant": tenant, "session_id": session_id,
                                          **custom})
        install_propagator()
        run = current_run()
        if run is None and remote_run_id() is None:
            logger.debug("flowscope: set_run_attributes called outside a run; ignored")
            return {}
        _apply(run, attrs)
        return attrs
    except Exception:
        logger.warning("flowscope: could not set run attributes", exc_info=True)
        return {}


def apply_run_attributes(mapping: Mapping[str, Any] | None, run: Run | None = None) -> dict[str, AttributeValue]:
    """For runtime instrumentations: apply the run attributes found in ``mapping``
    (see :func:`run_attributes_from`) to ``run`` (default: the current run). Never raises."""
    try:
        attrs = run_attributes_from(mapping)
        if attrs:
            _apply(run or current_run(), attrs)
        return attrs
    except Exception:
        logger.warning("flowscope: could not apply run attributes", exc_info=True)
        return {}


# --- across processes -----------------------------------------------------------------


def remote_run_id(ctx: otel_context.Context | None = None) -> str | None:
    """The run id another service propagated to us in baggage, if any."""
    value = baggage.get_baggage(semconv.RUN_ID, ctx)
    return str(value) if value else None


def remote_run_attributes(ctx: otel_context.Context | None = None) -> dict[str, str]:
    """Run id and run attributes received in baggage, as span attributes."""
    entries = baggage.get_all(ctx)
    if not entries.get(semconv.RUN_ID):
        return {}
    return {k: str(v) for k, v in entries.items() if k == semconv.RUN_ID or is_run_attribute_key(k)}


def _baggage_value(value: Any) -> str | None:
    text = json.dumps(value, separators=(",", ":")) if isinstance(value, list) else str(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    return text if len(text) <= _MAX_BAGGAGE_VALUE else None


class RunBaggagePropagator(W3CBaggagePropagator):
    """W3C baggage plus the active run: its id and run attributes ride along.

    Computed at inject time from the run in the context, so attributes set
    after the request context was created still travel, and nothing has to
    be attached to (and later detached from) the context.
    """

    def inject(
        self,
        carrier: textmap.CarrierT,
        context: otel_context.Context | None = None,
        setter: textmap.Setter[textmap.CarrierT] = textmap.default_setter,
    ) -> None:
        ctx = context if context is not None else otel_context.get_current()
        try:
            run = current_run(ctx)
            if run is not None:
                ctx = baggage.set_baggage(semconv.RUN_ID, run.id, ctx)
                for key, value in list(run.attributes.items()):
                    if is_run_attribute_key(key):
                        text = _baggage_value(value)
                        if text is not None:
                            ctx = baggage.set_baggage(key, text, ctx)
        except Exception:
            logger.debug("flowscope: could not add the run to baggage", exc_info=True)
        super().inject(carrier, ctx, setter)


def install_propagator() -> bool:
    """Make the global propagator carry the run (idempotent); False when turned off.

    The W3C baggage propagator in the configured set is replaced by ours (a
    superset of it); if none is configured ours is added, other propagators
    (tracecontext, b3, ...) are kept as they are.
    """
    if not config.env_flag(PROPAGATE_ENV, default=True):
        return False
    if os.environ.get("OTEL_PROPAGATORS", "").strip().lower() == "none":  # propagation turned off
        return False
    current = propagate.get_global_textmap()
    members = list(propagators_of(current))
    if any(isinstance(p, RunBaggagePropagator) for p in members):
        return True
    replaced = [RunBaggagePropagator() if type(p) is W3CBaggagePropagator else p for p in members]
    if not any(isinstance(p, RunBaggagePropagator) for p in replaced):
        replaced.append(RunBaggagePropagator())
    propagate.set_global_textmap(CompositePropagator(replaced))
    return True
