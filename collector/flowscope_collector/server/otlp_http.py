"""OTLP/HTTP receiver: ``POST /v1/traces`` (and ``/v1/metrics``, checked and counted).

Answers as the OTLP specification asks: 200 once the request is durable
(fsync'd to the write-ahead log), 400 with the reason for a malformed body,
413 for one too large (before or after decompression), 415 for a content type
or encoding we do not speak, 429 with ``Retry-After`` while the buffer is full
and 503 with ``Retry-After`` when the disk will not take it; exporters retry
exactly the 429/503 ones. Which refusal, and how long to wait, is decided by
:mod:`flowscope_collector.admission`, the same for OTLP/gRPC.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from starlette.concurrency import run_in_threadpool

from ..admission import refusal
from ..ingest import otlp
from . import models
from .deps import error_body, get_collector, project_of

router = APIRouter(tags=["otlp"])


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


@router.post("/v1/traces", summary="OTLP/HTTP trace export (protobuf or JSON, gzip allowed)",
             responses=models.errors(400, 401, 403, 413, 415, 429, 503))
async def export_traces(request: Request) -> Response:
    """Spans from any OTLP exporter, answered as the OTLP specification asks: 200 once they are
    durable (with partial_success for spans rejected), 429/503 with Retry-After under pressure."""
    col = get_collector(request)
    admission = col.admission
    limit = col.settings.max_body_bytes
    ctype = request.headers.get("content-type", "")
    claimed = 0
    try:
        media = otlp.accepted_media(ctype)  # before reading the body: no reason to spend memory on it
        length = request.headers.get("content-length", "")
        declared = int(length) if length.isdigit() else 0
        if declared > limit:
            return _error(413, f"body of {length} bytes exceeds the {limit} byte limit")
        admission.reserve_bytes(declared)
        claimed = declared
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _error(413, f"body exceeds the {limit} byte limit")
            if len(body) > claimed:
                admission.reserve_bytes(len(body) - claimed)
                claimed = len(body)
        data = bytes(body)
        body.clear()  # one copy in memory, not two
        ack = await run_in_threadpool(col.ingest, data, media, request.headers.get("content-encoding"),
                                      project_of(request))
        del data
        await asyncio.wrap_future(ack)
    except Exception as exc:
        refused = refusal(exc)
        retry = refused.retry_after_s
        return _error(refused.status, refused.message,
                      {"Retry-After": str(max(1, round(retry)))} if retry is not None else None)
    finally:
        admission.release_bytes(claimed)
    wait_s = col.settings.ack_wait_s
    if wait_s > 0 and ack.read_your_writes and not ack.stored.done():
        # Durable already; when the writer was idle, also wait for the insert so a
        # client can read what it just sent. Never under load or during an outage.
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(ack.stored)), wait_s)
        except Exception:
            pass
    return Response(otlp.response(media, ack.rejected_spans, ack.message), media_type=media)


@router.post("/v1/metrics", summary="OTLP/HTTP metric export: accepted and counted, not stored",
             responses=models.errors(400, 401, 403, 413, 415))
async def export_metrics(request: Request) -> Response:
    """flowscope stores traces; metrics belong in a metrics backend.

    ``flowscope.init(metrics=True)`` exports to the same base endpoint as traces
    by default, so answering here (instead of 404) keeps the app's log quiet;
    point ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` at Prometheus or an OTel
    Collector to keep the numbers. The body is still checked, so a broken
    exporter hears about it.
    """
    col = get_collector(request)
    try:
        media = otlp.accepted_media(request.headers.get("content-type"))
    except otlp.OTLPError as exc:
        return _error(exc.status, exc.message)
    body = await request.body()
    if len(body) > col.settings.max_body_bytes:
        return _error(413, f"body exceeds the {col.settings.max_body_bytes} byte limit")
    try:
        raw = otlp.decompress(body, request.headers.get("content-encoding"), col.settings.max_decompressed_bytes)
        if media == otlp.PROTOBUF:
            ExportMetricsServiceRequest.FromString(raw)
        else:
            json_format.Parse(raw or b"{}", ExportMetricsServiceRequest(), ignore_unknown_fields=True)
    except otlp.OTLPError as exc:
        return _error(exc.status, exc.message)
    except (DecodeError, json_format.ParseError, ValueError) as exc:
        return _error(400, f"body is not a valid OTLP ExportMetricsServiceRequest: {exc}")
    col.stats.metric_requests += 1
    if media == otlp.JSON:
        return Response(b"{}", media_type=otlp.JSON)
    return Response(ExportMetricsServiceResponse().SerializeToString(), media_type=otlp.PROTOBUF)
