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

from ..admission import Refused, refusal
from ..ingest import otlp
from ..settings import CollectorSettings
from . import models
from .deps import error_body, get_collector, project_of

router = APIRouter(tags=["otlp"])


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


class _Body:
    """One request body being received: its bytes counted against admission as they arrive.

    Only bytes actually received count, never a declared ``Content-Length``:
    sixteen uploads that declare 16 MiB and trickle a byte every few seconds
    hold a few bytes of the budget, not all of it. A body not received within
    ``body_timeout_s``, or one that sends nothing for ``body_idle_timeout_s``,
    is answered 408 and its bytes released, so a slow client cannot hold a
    share of the budget for long either.
    """

    def __init__(self, request: Request, project: str) -> None:
        self.request = request
        self.project = project
        self.claimed = 0

    async def read(self) -> bytes:
        col = get_collector(self.request)
        s, admission = col.settings, col.admission
        limit = s.max_body_bytes
        length = self.request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:  # refused before a byte of it is read
            raise otlp.OTLPError(413, f"body of {length} bytes exceeds the {limit} byte limit")
        admission.check_memory()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.body_timeout_s
        body = bytearray()
        # One timer, moved on with each chunk (no task per chunk): it cancels the read after the
        # idle timeout without data, or at the overall deadline, whichever comes first.
        task = asyncio.current_task()
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            if task is not None:
                task.cancel()

        timer = loop.call_at(min(deadline, loop.time() + s.body_idle_timeout_s), expire)
        try:
            async for chunk in self.request.stream():
                if not chunk:
                    continue
                if len(body) + len(chunk) > limit:
                    raise otlp.OTLPError(413, f"body exceeds the {limit} byte limit")
                admission.reserve_bytes(len(chunk), self.project, self.claimed)
                self.claimed += len(chunk)
                body += chunk
                timer.cancel()
                timer = loop.call_at(min(deadline, loop.time() + s.body_idle_timeout_s), expire)
        except asyncio.CancelledError:
            if not expired:
                raise
            if task is not None and hasattr(task, "uncancel"):
                task.uncancel()
            raise Refused(408, f"request body not received in time (at most {s.body_timeout_s:g}s, "
                               f"{s.body_idle_timeout_s:g}s without data); {len(body)} bytes arrived") from None
        finally:
            timer.cancel()
        data = bytes(body)
        body.clear()  # one copy in memory, not two
        return data

    def release(self) -> None:
        get_collector(self.request).admission.release_bytes(self.claimed, self.project)
        self.claimed = 0


def _refused(exc: BaseException) -> JSONResponse:
    refused = refusal(exc)
    retry = refused.retry_after_s
    headers = {"Retry-After": str(max(1, round(retry)))} if retry is not None else {}
    if refused.status == 408:
        headers["Connection"] = "close"  # the rest of the body is not read
    return _error(refused.status, refused.message, headers or None)


@router.post("/v1/traces", summary="OTLP/HTTP trace export (protobuf or JSON, gzip allowed)",
             responses=models.errors(400, 401, 403, 408, 413, 415, 429, 503))
async def export_traces(request: Request) -> Response:
    """Spans from any OTLP exporter, answered as the OTLP specification asks: 200 once they are
    durable (with partial_success for spans rejected), 429/503 with Retry-After under pressure."""
    col = get_collector(request)
    project = project_of(request)
    received = _Body(request, project)
    try:
        media = otlp.accepted_media(request.headers.get("content-type", ""))  # before reading the body
        data = await received.read()
        ack = await run_in_threadpool(col.ingest, data, media, request.headers.get("content-encoding"), project)
        del data
        await asyncio.wrap_future(ack)
    except Exception as exc:
        return _refused(exc)
    finally:
        received.release()
    wait_s = col.settings.ack_wait_s
    if wait_s > 0 and ack.read_your_writes and not ack.stored.done():
        # Durable already; when the writer was idle, also wait for the insert so a
        # client can read what it just sent. Never under load or during an outage.
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(ack.stored)), wait_s)
        except Exception:
            pass
    return Response(otlp.response(media, ack.rejected_spans, ack.message), media_type=media)


def _check_metrics(settings: CollectorSettings, body: bytes, media: str, encoding: str | None) -> None:
    raw = otlp.decompress(body, encoding, settings.max_decompressed_bytes, settings.max_inflation_ratio)
    if media == otlp.PROTOBUF:
        ExportMetricsServiceRequest.FromString(raw)
    else:
        json_format.Parse(raw or b"{}", ExportMetricsServiceRequest(), ignore_unknown_fields=True)


@router.post("/v1/metrics", summary="OTLP/HTTP metric export: accepted and counted, not stored",
             responses=models.errors(400, 401, 403, 408, 413, 415, 429, 503))
async def export_metrics(request: Request) -> Response:
    """flowscope stores traces; metrics belong in a metrics backend.

    ``flowscope.init(metrics=True)`` exports to the same base endpoint as traces
    by default, so answering here (instead of 404) keeps the app's log quiet;
    point ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` at Prometheus or an OTel
    Collector to keep the numbers. The body is still checked, so a broken
    exporter hears about it.
    """
    col = get_collector(request)
    received = _Body(request, project_of(request))
    try:
        media = otlp.accepted_media(request.headers.get("content-type"))
        body = await received.read()  # capped while it is read, like /v1/traces
        # decoded off the event loop, as traces are: a large body must not stall other requests
        await run_in_threadpool(_check_metrics, col.settings, body, media, request.headers.get("content-encoding"))
    except (DecodeError, json_format.ParseError, ValueError) as exc:
        return _error(400, f"body is not a valid OTLP ExportMetricsServiceRequest: {exc}")
    except Exception as exc:
        return _refused(exc)
    finally:
        received.release()
    col.stats.metric_requests += 1
    if media == otlp.JSON:
        return Response(b"{}", media_type=otlp.JSON)
    return Response(ExportMetricsServiceResponse().SerializeToString(), media_type=otlp.PROTOBUF)
