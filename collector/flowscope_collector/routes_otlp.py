"""OTLP/HTTP receiver: ``POST /v1/traces``."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from . import otlp
from .deps import error_body, get_collector, project_of
from .writer import Overloaded

logger = logging.getLogger("flowscope.collector")
router = APIRouter(tags=["otlp"])


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


@router.post("/v1/traces", summary="OTLP/HTTP trace export (protobuf or JSON, gzip allowed)")
async def export_traces(request: Request) -> Response:
    col = get_collector(request)
    limit = col.settings.max_body_bytes
    ctype = request.headers.get("content-type", "")
    reply_type = otlp.JSON if otlp.media_type(ctype) == otlp.JSON else otlp.PROTOBUF
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        return _error(413, f"body of {length} bytes exceeds the {limit} byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return _error(413, f"body exceeds the {limit} byte limit")
    try:
        fut = await run_in_threadpool(
            col.ingest, bytes(body), ctype, request.headers.get("content-encoding"), project_of(request)
        )
        await asyncio.wrap_future(fut)
    except otlp.OTLPError as exc:
        return _error(exc.status, exc.message)
    except Overloaded as exc:
        return _error(429, str(exc), {"Retry-After": str(max(1, round(exc.retry_after_s)))})
    except Exception as exc:
        logger.warning("could not store spans: %s", exc)
        return _error(503, f"spans could not be stored yet ({type(exc).__name__}); retry", {"Retry-After": "2"})
    return Response(otlp.response(reply_type), media_type=reply_type)
