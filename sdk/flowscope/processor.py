"""The span processor that makes every span say which run (and node) it belongs to.

Stamping at span start, from the context, means any span alone identifies its
run: spans of other instrumentations (HTTP clients, databases) that start inside
a flowscope run are attributed to it without a tree walk in the collector.
"""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from . import semconv
from .runs import current_node, current_run


class RunAttributesProcessor(SpanProcessor):
    """Adds ``flowscope.run.id`` and the enclosing node to spans as they start."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        try:
            run = current_run(parent_context)
            if run is None:
                return
            attrs = span.attributes or {}
            if semconv.RUN_ID not in attrs:
                span.set_attribute(semconv.RUN_ID, run.id)
            for key, value in run.attributes.items():
                if key not in attrs:
                    span.set_attribute(key, value)
            if semconv.SPAN_KIND in attrs and attrs[semconv.SPAN_KIND] in (semconv.KIND_NODE, semconv.KIND_RUN):
                return
            node = current_node(parent_context)
            if node is not None and semconv.NODE_STEP not in attrs:
                # Non-node spans inside a node carry the node's name and step so
                # cost-by-node needs no parent walk at query time.
                span.set_attribute(semconv.NODE_NAME, node.name)
                span.set_attribute(semconv.NODE_STEP, node.step)
        except Exception:  # never break span creation in the host app
            pass

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
