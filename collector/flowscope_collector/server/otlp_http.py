"""OTLP/HTTP receiver: ``POST /v1/traces``.

Answers as the OTLP specification asks: 200 once the request is durable
(fsync'd to the write-ahead log), 400 with the reason for a malformed body,
413 for one too large (before or after decompression), 415 for a content type
or encoding we do not speak, 429 with ``Retry-After`` while the buffer is full
and 503 with ``Retry-After`` when the disk will not take it; exporters retry
exactly the 429/503 ones.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..buffer.wal import WALError
from ..buffer.writer import Overloaded
from ..ingest import otlp
from ..service import Collector
from .deps import error_body, get_collector, project_of

logger = logging.getLogger("flowscope.collector")
router = APIRouter(tags=["otlp"])


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


@router.post("/v1/traces", summary="OTLP/HTTP trace export (protobuf or JSON, gzip allowed)")
async def export_traces(request: Request) -> Response:
    col = get_collector(request)
    if col.writer is None:
        return _error(503, "collector is starting; retry shortly", {"Retry-After": "1"})
    limit = col.settings.max_body_bytes
    ctype = request.headers.get("content-type", "")
    reply_type = otlp.JSON if otlp.media_type(ctype) == otlp.JSON else otlp.PROTOBUF
    if otlp.media_type(ctype) not in (otlp.JSON, otlp.PROTOBUF):
        # Refuse before reading the body: no reason to spend memory on it.
        return _error(415, f"unsupported Content-Type {ctype!r}; use {otlp.PROTOBUF} or {otlp.JSON}")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        return _error(413, f"body of {length} bytes exceeds the {limit} byte limit")
    # Bodies being received or decoded share one memory budget, so many large
    # concurrent requests are told to come back later instead of piling up.
    budget = col.settings.max_inflight_bytes
    state = request.app.state
    claimed = 0

    def claim(n: int) -> bool:
        nonlocal claimed
        inflight = getattr(state, "otlp_inflight_bytes", 0)
        if inflight and inflight + n > budget:
            return False
        state.otlp_inflight_bytes = inflight + n
        claimed += n
        return True

    try:
        if not claim(int(length) if length and length.isdigit() else 0):
            return _error(429, "too many request bytes in flight; retry shortly", {"Retry-After": "1"})
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _error(413, f"body exceeds the {limit} byte limit")
            if len(body) > claimed and not claim(len(body) - claimed):
                return _error(429, "too many request bytes in flight; retry shortly", {"Retry-After": "1"})
        data = bytes(body)
        body.clear()  # one copy in memory, not two
        return await _accept(request, col, data, ctype, reply_type)
    finally:
        state.otlp_inflight_bytes = getattr(state, "otlp_inflight_bytes", 0) - claimed


async def _accept(request: Request, col: Collector, body: bytes, ctype: str, reply_type: str) -> Response:
    try:
        ack = await run_in_threadpool(
            col.ingest, body, ctype, request.headers.get("content-encoding"), project_of(request)
        )
        del body
        await asyncio.wrap_future(ack)
    except otlp.OTLPError as exc:
        return _error(exc.status, exc.message)
    except Overloaded as exc:
        return _error(429, str(exc), {"Retry-After": str(max(1, round(exc.retry_after_s)))})
    except WALError as exc:
        logger.error("write-ahead log refused a request: %s", exc)
        return _error(503, f"spans could not be made durable ({exc}); retry", {"Retry-After": "5"})
    except Exception as exc:
        logger.warning("could not accept spans: %s: %s", type(exc).__name__, exc)
        return _error(503, f"spans could not be accepted ({type(exc).__name__}); retry", {"Retry-After": "2"})
    wait_s = col.settings.ack_wait_s
    if wait_s > 0 and getattr(ack, "read_your_writes", False) and not ack.stored.done():
        # Durable already; when the writer was idle, also wait for the insert so a
        # client can read what it just sent. Never under load or during an outage.
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(ack.stored)), wait_s)
        except Exception:
            pass
    rejected = getattr(ack, "rejected_spans", 0)
    return Response(otlp.response(reply_type, rejected, getattr(ack, "message", "")), media_type=reply_type)


@router.post("/v1/metrics", summary="OTLP/HTTP metric export: accepted and counted, not stored")
async def export_metrics(request: Request) -> Response:
    """flowscope stores traces; metrics belong in a metrics backend.

    ``flowscope.init(metrics=True)`` exports to the same base endpoint as traces
    by default, so answering here (instead of 404) keeps the app's log quiet;
    point ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` at Prometheus or an OTel
    Collector to keep the numbers. The body is still checked, so a broken
    exporter hears about it.
    """
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
        ExportMetricsServiceResponse,
    )

    col = get_collector(request)
    media = otlp.media_type(request.headers.get("content-type"))
    if media not in (otlp.PROTOBUF, otlp.JSON):
        return _error(415, f"unsupported Content-Type {media!r}; use {otlp.PROTOBUF} or {otlp.JSON}")
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
