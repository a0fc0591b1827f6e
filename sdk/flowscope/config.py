"""SDK settings: one object, filled from ``init()`` arguments first, then env vars.

Standard OpenTelemetry variables win over ours wherever one exists, because
that is what users already set in their deployments.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_ENDPOINT = "http://localhost:4318"
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
FLOWSCOPE_CAPTURE_CONTENT_ENV = "FLOWSCOPE_CAPTURE_CONTENT"

_TRUE = {"1", "true", "yes", "on"}


def env_flag(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() in _TRUE


def traces_endpoint(endpoint: str | None) -> str:
    """Resolve the OTLP/HTTP traces URL the way the OTel exporters do.

    An explicit ``endpoint`` is a base URL (``/v1/traces`` is appended), like
    ``OTEL_EXPORTER_OTLP_ENDPOINT``; ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is
    used verbatim, per the OTLP exporter specification.
    """
    if endpoint:
        return _join(endpoint, "v1/traces")
    signal = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if signal:
        return signal
    return _join(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT, "v1/traces")


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path


@dataclass
class Settings:
    service_name: str | None = None
    endpoint: str | None = None
    headers: dict[str, str] | None = None
    capture_content: bool = False
    redact: Callable[[str, Any], Any] | None = None
    state_max_bytes: int = 64 * 1024
    max_queue_size: int = 8192
    export_timeout_s: float = 10.0
    metrics: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        *,
        service_name: str | None = None,
        endpoint: str | None = None,
        headers: dict[str, str] | None = None,
        capture_content: bool | None = None,
        redact: Callable[[str, Any], Any] | None = None,
        state_max_bytes: int | None = None,
        max_queue_size: int | None = None,
        metrics: bool | None = None,
    ) -> Settings:
        if capture_content is None:
            capture_content = env_flag(CAPTURE_CONTENT_ENV) or env_flag(FLOWSCOPE_CAPTURE_CONTENT_ENV)
        if state_max_bytes is None:
            state_max_bytes = int(os.environ.get("FLOWSCOPE_STATE_MAX_BYTES", 64 * 1024))
        if max_queue_size is None:
            max_queue_size = int(os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE", 8192))
        if metrics is None:
            metrics = env_flag("FLOWSCOPE_METRICS")
        return cls(
            service_name=service_name,
            endpoint=endpoint,
            headers=headers,
            capture_content=capture_content,
            redact=redact,
            state_max_bytes=state_max_bytes,
            max_queue_size=max_queue_size,
            metrics=metrics,
        )


# The active settings; instrumentations read it at call time so that init()
# called after instrumentation still takes effect.
current = Settings()
