"""GenAI client metrics: token usage, operation duration and cost, via the OTel metrics SDK.

Spans answer "what happened in this run"; metrics answer "how much, how fast,
across everything" without storing a span per call, which is what alerting
and capacity dashboards want. Names follow the GenAI semantic conventions
(``gen_ai.client.token.usage``, ``gen_ai.client.operation.duration``); cost is
ours (``flowscope.client.cost``, USD).

Off unless asked for (``init(metrics=True)`` or ``FLOWSCOPE_METRICS=true``):
then exported over OTLP/HTTP next to the traces (``/v1/metrics`` of the same
endpoint, or ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``). We keep our own
``MeterProvider`` rather than installing a global one, so an application that
already configured metrics keeps its own pipeline untouched.

Counter values are floats because the OTel metrics API has no decimal type;
the exact Decimal cost stays on the spans.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import config
from ._otel import error_type
from ._version import __version__
from .core import semconv

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource

    from .core.pricing import Cost, Usage

__all__ = [
    "COST_METRIC",
    "DURATION_METRIC",
    "TOKEN_USAGE_METRIC",
    "Instruments",
    "disable",
    "enable",
    "enabled",
    "force_flush",
    "record_call",
]

logger = logging.getLogger("flowscope")

TOKEN_USAGE_METRIC = "gen_ai.client.token.usage"
DURATION_METRIC = "gen_ai.client.operation.duration"
COST_METRIC = "flowscope.client.cost"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"

# Bucket boundaries recommended by the GenAI semantic conventions.
_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
_DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]

_lock = threading.Lock()
_state: dict[str, Any] = {"provider": None, "instruments": None}


class Instruments:
    """The three instruments of one meter provider: token usage, duration, cost.

    ``enable()`` makes the default set; an instrumentor given
    ``instrument(meter_provider=...)`` makes its own, so its calls are recorded
    where the caller asked.
    """

    __slots__ = ("cost", "duration", "tokens")

    def __init__(self, meter_provider: Any) -> None:
        meter = meter_provider.get_meter("flowscope", __version__)
        self.tokens = meter.create_histogram(
            TOKEN_USAGE_METRIC,
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            DURATION_METRIC,
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.cost = meter.create_counter(COST_METRIC, unit="USD", description="Cost of GenAI calls in US dollars")


def enabled() -> bool:
    return _state["instruments"] is not None


def default_instruments() -> Instruments | None:
    """The instruments ``enable()`` set up, or None while metrics are off."""
    return _state["instruments"]  # type: ignore[no-any-return]


def metrics_endpoint(endpoint: str | None) -> str:
    """OTLP/HTTP metrics URL, resolved the way the OTel exporters resolve it."""
    if endpoint:
        return endpoint.rstrip("/") + "/v1/metrics"
    signal = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    if signal:
        return signal
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or config.DEFAULT_ENDPOINT
    return base.rstrip("/") + "/v1/metrics"


def enable(
    *,
    reader: MetricReader | None = None,
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    resource: Resource | None = None,
    export_interval_s: float = 60.0,
) -> MeterProvider:
    """Start recording GenAI client metrics; replaces a previous ``enable``.

    ``reader`` overrides the OTLP exporter (tests pass an
    ``InMemoryMetricReader``); otherwise metrics go to ``endpoint``'s
    ``/v1/metrics`` every ``export_interval_s`` seconds.
    """
    from opentelemetry.sdk.metrics import MeterProvider

    if reader is None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        kwargs: dict[str, Any] = {"endpoint": metrics_endpoint(endpoint)}
        if headers:
            kwargs["headers"] = dict(headers)
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(**kwargs), export_interval_millis=int(export_interval_s * 1000)
        )
    provider_kwargs: dict[str, Any] = {"metric_readers": [reader]}
    if resource is not None:
        provider_kwargs["resource"] = resource
    provider = MeterProvider(**provider_kwargs)
    instruments = Instruments(provider)
    with _lock:
        old = _state["provider"]
        _state.update(provider=provider, instruments=instruments)
    if old is not None:
        _shutdown(old)
    return provider


def disable() -> None:
    """Stop recording and flush what was recorded."""
    with _lock:
        old = _state["provider"]
        _state.update(provider=None, instruments=None)
    if old is not None:
        _shutdown(old)


def force_flush(timeout_s: float = 10.0) -> bool:
    provider = _state["provider"]
    if provider is None:
        return True
    try:
        return bool(provider.force_flush(int(timeout_s * 1000)))
    except Exception:
        logger.warning("flowscope: metrics flush failed", exc_info=True)
        return False


def _shutdown(provider: Any) -> None:
    try:
        provider.shutdown()
    except Exception:
        logger.warning("flowscope: metrics shutdown failed", exc_info=True)


def record_call(
    *,
    operation: str,
    provider: str,
    request_model: str | None,
    response_model: str | None,
    usage: Usage | None,
    duration_s: float,
    cost: Cost | None,
    error: BaseException | None = None,
    instruments: Instruments | None = None,
) -> None:
    """Record one finished LLM call on ``instruments`` (default: ``enable()``'s).
    Cheap no-op while metrics are disabled."""
    inst = instruments if instruments is not None else _state["instruments"]
    if inst is None:
        return
    tokens, duration, counter = inst.tokens, inst.duration, inst.cost
    attrs: dict[str, Any] = {
        semconv.GEN_AI_OPERATION_NAME: operation,
        semconv.GEN_AI_PROVIDER_NAME: provider,
    }
    if request_model:
        attrs[semconv.GEN_AI_REQUEST_MODEL] = request_model
    if response_model:
        attrs[semconv.GEN_AI_RESPONSE_MODEL] = response_model
    if error is not None:
        attrs[semconv.ERROR_TYPE] = error_type(error)
    duration.record(max(duration_s, 0.0), attrs)
    if usage is not None and tokens is not None:
        tokens.record(usage.input_tokens, {**attrs, GEN_AI_TOKEN_TYPE: "input"})
        tokens.record(usage.output_tokens, {**attrs, GEN_AI_TOKEN_TYPE: "output"})
    if cost is not None and cost.total_usd is not None and counter is not None:
        counter.add(float(cost.total_usd), {**attrs, semconv.COST_SOURCE: cost.source})
