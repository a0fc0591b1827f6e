"""Operations: health, readiness, version and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from flowscope import __version__ as sdk_version
from flowscope.pricing import get_catalog

from . import models
from .deps import get_collector
from .schema import latest_version

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=models.Health)
def healthz() -> Any:
    return {"status": "ok"}


@router.get("/readyz", response_model=models.Ready)
def readyz(request: Request) -> Any:
    col = get_collector(request)
    ok, version, detail = col.readiness()
    body = {
        "status": "ready" if ok else "not ready",
        "clickhouse": version,
        "schema_version": col.schema_version,
        "expected_schema_version": latest_version(),
        "detail": detail,
    }
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/version", response_model=models.Version)
def version(request: Request) -> Any:
    return {
        "version": sdk_version,
        "pricing_version": get_catalog().version,
        "schema_version": latest_version(),
        "clickhouse": get_collector(request).target.redacted(),
    }


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> str:
    col = get_collector(request)
    s, w = col.stats, col.writer
    series = [
        ("flowscope_requests_total", "counter", "OTLP export requests received", s.requests),
        ("flowscope_requests_rejected_total", "counter", "OTLP requests refused (4xx)", s.requests_rejected),
        ("flowscope_duplicate_requests_total", "counter", "Repeated requests answered without a write",
         s.duplicate_requests),
        ("flowscope_spans_received_total", "counter", "Spans decoded from accepted requests", s.spans_received),
        ("flowscope_spans_rejected_total", "counter", "Spans refused", s.spans_rejected),
        ("flowscope_spans_written_total", "counter", "Spans inserted into ClickHouse",
         w.stats.spans_written if w else 0),
        ("flowscope_insert_failures_total", "counter", "Failed ClickHouse insert attempts",
         w.stats.insert_failures if w else 0),
        ("flowscope_queue_spans", "gauge", "Spans waiting to be written", w.pending_spans if w else 0),
        ("flowscope_insert_seconds_total", "counter", "Time spent in ClickHouse inserts",
         w.stats.insert_seconds_total if w else 0),
        ("flowscope_inserts_total", "counter", "ClickHouse inserts", w.stats.inserts if w else 0),
    ]
    out = []
    for name, kind, help_, value in series:
        out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {value}"]
    return "\n".join(out) + "\n"
