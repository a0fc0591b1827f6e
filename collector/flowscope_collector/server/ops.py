"""Operations: health, readiness, version and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from flowscope._version import __version__ as sdk_version
from flowscope.core.pricing import get_catalog

from ..buffer import quarantine
from ..store.schema import latest_version
from . import models
from .deps import get_collector

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=models.Health)
async def healthz() -> Any:
    """Liveness: the process answers. Needs no API key; says nothing about ClickHouse (see /readyz).
    Answered on the event loop, never behind the thread pool that decodes and queries: a busy
    collector still says it is alive."""
    return {"status": "ok"}


@router.get("/readyz", response_model=models.Ready, responses={
    **models.errors(401, 403),
    503: {"model": models.Ready, "description": "Not ready: ClickHouse unreachable or the schema behind; "
                                                "detail says why"}})
def readyz(request: Request) -> Any:
    """Readiness: ClickHouse reachable and the schema at the expected version; also spans lost
    or in quarantine, which stay unstored until replayed."""
    col = get_collector(request)
    ok, version, detail = col.readiness()
    body = {
        "status": "ready" if ok else "not ready",
        "clickhouse": version,
        "schema_version": col.schema_version,
        "expected_schema_version": latest_version(),
        "detail": detail,
    }
    # Ready or not, acknowledged spans in quarantine are lost until replayed: say so here.
    requests, spans = quarantine.totals(col.wal_dir)
    body["quarantined_requests"], body["quarantined_spans"] = requests, spans
    lost = col.writer.wal_lost_requests if col.writer is not None else 0
    body["wal_lost_requests"] = lost
    if lost:
        note = (f"{lost} acknowledged requests were damaged or missing in the write-ahead log at start-up "
                "and are lost (the log names their seq)")
        body["detail"] = f"{body['detail']}; {note}" if body["detail"] else note
    if requests:
        note = (f"{spans} acknowledged spans in {requests} requests are in quarantine, not stored; "
                f"see `flowscope-collector quarantine list`")
        body["detail"] = f"{body['detail']}; {note}" if body["detail"] else note
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/version", response_model=models.Version, responses=models.errors(401, 403))
def version(request: Request) -> Any:
    """The collector's version, its pricing catalog's version, the schema version and the
    ClickHouse it writes to (password redacted)."""
    return {
        "version": sdk_version,
        "pricing_version": get_catalog().version,
        "schema_version": latest_version(),
        "clickhouse": get_collector(request).target.redacted(),
    }


_SERIES: tuple[tuple[str, str, str, str], ...] = (
    # (metric, type, help, source: "ingest.<field>" | "admission.<field>" | "writer.<field>" | "writer:<property>")
    ("flowscope_requests_total", "counter", "OTLP export requests received", "ingest.requests"),
    ("flowscope_requests_rejected_total", "counter", "OTLP requests refused (4xx)", "ingest.requests_rejected"),
    ("flowscope_duplicate_requests_total", "counter", "Repeated requests answered without a write",
     "ingest.duplicate_requests"),
    ("flowscope_spans_received_total", "counter", "Spans decoded from accepted requests", "ingest.spans_received"),
    ("flowscope_spans_rejected_total", "counter", "Spans refused (partial success)", "ingest.spans_rejected"),
    ("flowscope_values_truncated_total", "counter", "Attribute values cut to the size limit",
     "ingest.values_truncated"),
    ("flowscope_attributes_dropped_total", "counter", "Attributes over the per-span limit",
     "ingest.attributes_dropped"),
    ("flowscope_events_dropped_total", "counter", "Events over the per-span limit", "ingest.events_dropped"),
    ("flowscope_metric_requests_total", "counter", "OTLP metric export requests received (not stored)",
     "ingest.metric_requests"),
    ("flowscope_spans_written_total", "counter", "Spans inserted into ClickHouse", "writer.spans_written"),
    ("flowscope_spans_replayed_total", "counter", "Spans replayed from the write-ahead log after a restart",
     "writer.spans_replayed"),
    ("flowscope_inserts_total", "counter", "ClickHouse inserts", "writer.inserts"),
    ("flowscope_insert_failures_total", "counter", "Failed ClickHouse insert attempts", "writer.insert_failures"),
    ("flowscope_insert_consecutive_failures", "gauge", "Insert failures since the last success",
     "writer.consecutive_failures"),
    ("flowscope_insert_seconds_total", "counter", "Time spent in ClickHouse inserts", "writer.insert_seconds_total"),
    ("flowscope_last_insert_seconds", "gauge", "Duration of the last ClickHouse insert",
     "writer.last_insert_seconds"),
    ("flowscope_requests_quarantined_total", "counter", "Requests ClickHouse refused, set aside on disk",
     "writer.requests_quarantined"),
    ("flowscope_spans_quarantined_total", "counter", "Spans in quarantined requests", "writer.spans_quarantined"),
    ("flowscope_wal_corruptions", "gauge", "Damaged regions found in the write-ahead log at start-up",
     "writer:wal_corruptions"),
    ("flowscope_wal_lost_requests", "gauge",
     "Acknowledged requests unreadable or missing in the write-ahead log at start-up: lost", "writer:wal_lost_requests"),
    ("flowscope_quarantine_requests", "gauge",
     "Acknowledged requests in quarantine on disk, not stored (flowscope-collector quarantine replay)",
     "writer:quarantined_requests"),
    ("flowscope_quarantine_spans", "gauge", "Acknowledged spans in quarantine on disk, not stored",
     "writer:quarantined_spans"),
    ("flowscope_overloaded_total", "counter", "Requests answered 429 because the buffer was full",
     "admission.overloaded"),
    ("flowscope_memory_refused_total", "counter",
     "Requests answered 503 because resident memory was above FLOWSCOPE_MAX_MEMORY_BYTES", "admission.memory_refused"),
    ("flowscope_queue_spans", "gauge", "Spans accepted but not yet in ClickHouse", "writer:pending_spans"),
    ("flowscope_queue_bytes", "gauge", "Bytes of the write-ahead log not yet in ClickHouse", "writer:pending_bytes"),
)


@router.get("/metrics", response_class=PlainTextResponse, responses=models.errors(401, 403, plain_route=True))
def metrics(request: Request) -> str:
    """Prometheus text exposition of the collector's counters.

    They are the whole collector's (every project's spans, refusals and queue), so with API keys
    only a key with the ``operator`` scope reads them (server/auth.py), never a project's key.
    """
    col = get_collector(request)
    sources = {"ingest": col.stats, "admission": col.admission, "writer": getattr(col.writer, "stats", None)}
    out = []
    for name, kind, help_, source in _SERIES:
        if source.startswith("writer:"):
            value = getattr(col.writer, source.split(":", 1)[1], 0) if col.writer is not None else 0
        else:
            obj, field = source.split(".", 1)
            value = getattr(sources[obj], field, 0) if sources[obj] is not None else 0
        out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {value or 0}"]
    return "\n".join(out) + "\n"
