"""``flowscope.init()``: wire the OTel SDK, the exporter and the instrumentations.

Also ``shutdown``, ``force_flush``, ``stats`` and :func:`tracer_provider`, the
public hook for tools that add a span processor of their own (the test kit).

If the application already installed a TracerProvider we add our processors to
it rather than replace it: their exporters, samplers and resource stay theirs.
Export always goes through a batch processor with a bounded queue, so the host
app never waits on the network.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from . import config
from . import metrics as metrics_mod
from ._export import BoundedBatchProcessor, ExportStats
from ._otel import indifferent_to_start_attributes
from .attributes import install_propagator
from .core import pricing as pricing_mod
from .instrumentation import instrument_all
from .runtime import ensure_run_processor

logger = logging.getLogger("flowscope")

_lock = threading.RLock()
_state: dict[str, Any] = {"provider": None, "owns_provider": False, "export": None, "atexit": False}


class _SwappableProcessor(SpanProcessor):
    """One processor registered once; ``init()`` again swaps what it delegates to.

    A TracerProvider cannot drop a processor, so re-initialising (tests, notebooks)
    would otherwise stack exporters and send every span twice.
    """

    def __init__(self) -> None:
        self.inner: SpanProcessor | None = None

    @property
    def flowscope_start_attributes_indifferent(self) -> bool:  # see _otel.start_policy
        inner = self.inner
        return inner is None or indifferent_to_start_attributes(inner)

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        inner = self.inner
        if inner is not None:
            inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        inner = self.inner
        if inner is not None:
            inner.on_end(span)

    def shutdown(self, timeout_millis: int | None = None) -> None:
        inner, self.inner = self.inner, None
        if inner is None:
            return
        if timeout_millis is not None and isinstance(inner, BoundedBatchProcessor):
            inner.shutdown(timeout_millis)
        else:
            inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        inner = self.inner
        return inner.force_flush(timeout_millis) if inner is not None else True


def _make_exporter(settings: config.Settings) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    kwargs: dict[str, Any] = {"endpoint": config.traces_endpoint(settings.endpoint)}
    if settings.headers:
        kwargs["headers"] = dict(settings.headers)
    return OTLPSpanExporter(**kwargs)


def init(
    service_name: str | None = None,
    endpoint: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    api_key: str | None = None,
    capture_content: bool | None = None,
    pricing: Any = None,
    redact: Callable[[str, Any], Any] | None = None,
    instrument: bool | Iterable[str] = True,
    exporter: SpanExporter | None = None,
    state_max_bytes: int | None = None,
    max_queue_size: int | None = None,
    metrics: bool | None = None,
    resource_attributes: Mapping[str, Any] | None = None,
) -> TracerProvider:
    """Start tracing LLM calls and flows. Every argument is optional.

    ``endpoint`` is the collector's base URL (``/v1/traces`` is appended); by
    default ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``
    or ``http://localhost:4318``. ``exporter`` replaces the OTLP exporter
    (the test kit passes an in-memory one). ``instrument`` is ``True`` for every
    supported library that is installed, ``False`` for none, or a list of names.
    """
    with _lock:
        hdrs = dict(headers or {})
        if api_key:
            hdrs.setdefault("authorization", f"Bearer {api_key}")
        settings = config.Settings.resolve(
            service_name=service_name,
            endpoint=endpoint,
            headers=hdrs or None,
            capture_content=capture_content,
            redact=redact,
            state_max_bytes=state_max_bytes,
            max_queue_size=max_queue_size,
            metrics=metrics,
        )
        config.current = settings
        if pricing is not None or os.environ.get(pricing_mod.PRICING_FILE_ENV):
            # Read and checked now: a missing or invalid pricing file stops init with the
            # file and the reason (PricingFileError), instead of every call going unpriced.
            pricing_mod.configure(pricing)

        provider = _provider(service_name, resource_attributes)
        swappable: _SwappableProcessor = _state["export"]
        old = swappable.inner
        # Bounded, never-blocking, counting, secret-scrubbing export (see _export.py).
        swappable.inner = BoundedBatchProcessor(
            exporter or _make_exporter(settings),
            max_queue_size=settings.max_queue_size,
            redact=settings.redact,
        )
        if old is not None:
            old.shutdown()

        # Runs follow requests into other services as W3C baggage.
        install_propagator()

        if instrument:
            names = None if instrument is True else list(instrument)  # type: ignore[arg-type]
            instrument_all(names)

        if settings.metrics:  # GenAI client metrics over OTLP next to the traces
            metrics_mod.enable(endpoint=settings.endpoint, headers=settings.headers, resource=provider.resource)

        if not _state["atexit"]:
            atexit.register(shutdown)
            _state["atexit"] = True
        return provider


def tracer_provider() -> TracerProvider:
    """The SDK ``TracerProvider`` flowscope traces with, set up (with its run processor and no
    exporter yet) if ``init()`` has not run: the hook for tools that add their own span
    processor, such as the test kit's in-memory capture.

    Raises ``RuntimeError`` when the global provider is neither an SDK provider nor the
    API's placeholder, i.e. another OpenTelemetry implementation owns tracing.
    """
    with _lock:
        existing = trace.get_tracer_provider()
        if _state["provider"] is None and not isinstance(existing, (TracerProvider, trace.ProxyTracerProvider)):
            raise RuntimeError(
                "flowscope needs the OpenTelemetry SDK TracerProvider; the installed global provider is a "
                f"{type(existing).__module__}.{type(existing).__qualname__}"
            )
        return _provider(None, None)


def _provider(service_name: str | None, resource_attributes: Mapping[str, Any] | None) -> TracerProvider:
    provider = _state["provider"]
    if provider is not None:
        return provider
    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        provider = existing
        _state["owns_provider"] = False
        if service_name and provider.resource.attributes.get("service.name") != service_name:
            logger.warning(
                "flowscope: a TracerProvider was already installed with service.name=%r; keeping it "
                "(service_name=%r ignored)",
                provider.resource.attributes.get("service.name"),
                service_name,
            )
    else:
        attrs: dict[str, Any] = dict(resource_attributes or {})
        if service_name:
            attrs["service.name"] = service_name
        provider = TracerProvider(resource=Resource.create(attrs))
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:  # lost a race with another installer
            provider = trace.get_tracer_provider()  # type: ignore[assignment]
        _state["owns_provider"] = True
    ensure_run_processor()  # once per provider, whoever got there first
    swappable = _SwappableProcessor()
    provider.add_span_processor(swappable)
    _state["provider"] = provider
    _state["export"] = swappable
    return provider


def stats() -> dict[str, int]:
    """Export counters: spans ``exported``, ``dropped`` (queue full), ``failed`` (collector
    unreachable past the exporter's retries), ``queued`` now, ``redacted_values``.

    Tracing never blocks or breaks the application, so this is where lost spans
    become visible instead.
    """
    swappable: _SwappableProcessor | None = _state["export"]
    inner = swappable.inner if swappable is not None else None
    if isinstance(inner, BoundedBatchProcessor):
        return inner.snapshot_stats().as_dict()
    return ExportStats().as_dict()


def force_flush(timeout_s: float = 10.0) -> bool:
    """Export everything finished so far; returns False if it timed out."""
    swappable: _SwappableProcessor | None = _state["export"]
    if swappable is None:
        return True
    try:
        return swappable.force_flush(int(timeout_s * 1000))
    except Exception:
        logger.warning("flowscope: flush failed", exc_info=True)
        return False


SHUTDOWN_TIMEOUT_ENV = "FLOWSCOPE_SHUTDOWN_TIMEOUT_S"
DEFAULT_SHUTDOWN_TIMEOUT_S = 2.0


def shutdown_timeout(timeout_s: float | None = None) -> float:
    """``timeout_s``, else ``FLOWSCOPE_SHUTDOWN_TIMEOUT_S``, else 2 s."""
    if timeout_s is not None:
        return max(0.0, timeout_s)
    raw = os.environ.get(SHUTDOWN_TIMEOUT_ENV, "").strip()
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_SHUTDOWN_TIMEOUT_S
    except ValueError:
        return DEFAULT_SHUTDOWN_TIMEOUT_S


def shutdown(timeout_s: float | None = None) -> None:
    """Flush for at most ``timeout_s`` in all (default 2 s, ``FLOWSCOPE_SHUTDOWN_TIMEOUT_S``), then
    stop exporting; spans still unsent are counted and named in one warning line. Runs at exit
    too, so a dead, hung or slow collector delays the app's exit by this bound at most. Safe to
    call more than once."""
    with _lock:
        swappable: _SwappableProcessor | None = _state["export"]
        if swappable is None:
            return
        try:
            swappable.shutdown(int(shutdown_timeout(timeout_s) * 1000))
        except Exception as exc:  # one line, never a traceback at the app's exit
            logger.warning("flowscope: shutdown failed: %s: %s", type(exc).__name__, exc)
