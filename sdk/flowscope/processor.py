"""The span processor that makes every span say which run (and node) it belongs to.

Stamping at span start, from the context, means any span alone identifies its
run: spans of other instrumentations (HTTP clients, databases) that start inside
a flowscope run are attributed to it without a tree walk in the collector.

A span with no local run but a run id in its W3C baggage was caused by a run in
another service; it takes that run id (and the run attributes that came with
it), so the downstream work and its cost land in the caller's run.

The processor also remembers which spans of each run are still open, so that
``set_run_attributes`` can write onto them (the run span, the current node)
and not only onto spans started afterwards.
"""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from ._otel import set_attributes
from .attributes import remote_run_attributes, remote_run_id
from .context import current_node, current_run, span_closed, span_opened
from .core import semconv

try:  # where W3C baggage lives in a context; reading it directly skips a copy per span
    from opentelemetry.baggage import _BAGGAGE_KEY
except ImportError:  # pragma: no cover - an API without it: always look
    _BAGGAGE_KEY = None  # type: ignore[assignment]

class RunAttributesProcessor(SpanProcessor):
    """Adds ``flowscope.run.id``, the run attributes and the enclosing node to spans as they start."""

    # What it reads at start (run id, node step) an LLM span has either way: see _otel.start_policy.
    flowscope_start_attributes_indifferent = True

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        try:
            ctx = parent_context if parent_context is not None else otel_context.get_current()
            run = current_run(ctx)
            if run is None:
                if _BAGGAGE_KEY is None or ctx.get(_BAGGAGE_KEY):  # no baggage: nothing propagated
                    self._stamp_remote(span, ctx)
                return
            parent_context = ctx
            attrs = span.attributes or {}
            add: dict[str, object] = {}  # set once at the end: one lock, one validation pass
            if semconv.RUN_ID not in attrs:
                add[semconv.RUN_ID] = run.id
            if run.attributes:
                for key, value in list(run.attributes.items()):
                    if key not in attrs:
                        add[key] = value
            remote = remote_run_id(parent_context)
            if remote is not None and remote != run.id and semconv.RUN_PARENT_ID not in attrs:
                # A run started inside another service's run stays its own run
                # (its own steps and state) but says whose work it was.
                add[semconv.RUN_PARENT_ID] = remote
            span_id = span.context.span_id if span.context is not None else None
            if span_id is not None:
                span_opened(span_id, run, span)
            if attrs.get(semconv.SPAN_KIND) not in (semconv.KIND_NODE, semconv.KIND_RUN):
                node = current_node(parent_context)
                if node is not None and semconv.NODE_STEP not in attrs:
                    # Non-node spans inside a node carry the node's name, step and type so
                    # cost-by-node needs no parent walk at query time, and a live stream
                    # can announce the node (with its type) before the node span ends.
                    add[semconv.NODE_NAME] = node.name
                    add[semconv.NODE_STEP] = node.step
                    add[semconv.NODE_TYPE] = node.type
            if add:
                set_attributes(span, add)
        except Exception:  # never break span creation in the host app
            pass

    @staticmethod
    def _stamp_remote(span: Span, parent_context: otel_context.Context | None) -> None:
        remote = remote_run_attributes(parent_context)
        if not remote:
            return
        attrs = span.attributes or {}
        for key, value in remote.items():
            if key not in attrs:
                span.set_attribute(key, value)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            if span.context is not None:
                span_closed(span.context.span_id)
        except Exception:
            pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
