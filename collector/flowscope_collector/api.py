"""HTTP surface: OTLP/HTTP on ``/v1/traces`` and the REST API under ``/api/v1``.

Route handlers that touch ClickHouse are plain ``def`` so FastAPI runs them in
its thread pool and a slow query never stalls the event loop that accepts spans.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from flowscope import __version__ as sdk_version
from flowscope import views
from flowscope.pricing import get_catalog
from flowscope.state import diff as state_diff
from starlette.concurrency import run_in_threadpool

from . import models, otlp
from .queries import Cursor, Store
from .schema import latest_version
from .service import Collector
from .settings import CollectorSettings
from .writer import Overloaded

logger = logging.getLogger("flowscope.collector")

RunId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_\-:.]+$")]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def create_app(settings: CollectorSettings | None = None, collector: Collector | None = None) -> FastAPI:
    settings = settings or CollectorSettings.from_env()
    col = collector or Collector(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await run_in_threadpool(col.start)
        try:
            yield
        finally:
            await run_in_threadpool(col.stop)

    app = FastAPI(
        title="flowscope collector",
        version=sdk_version,
        description="OTLP/HTTP receiver and run/cost/state API for LLM and agent flows.",
        lifespan=lifespan,
    )
    app.state.collector = col

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body"))
            parts.append(f"{loc}: {err.get('msg')}")
        return _error(422, "invalid parameters: " + "; ".join(parts))

    def store() -> Store:
        if col.store is None:
            raise HTTPException(503, "collector is starting; retry shortly")
        return col.store

    def project_of(request: Request) -> str:
        return "default"

    # --- OTLP/HTTP ------------------------------------------------------------------

    @app.post("/v1/traces", tags=["otlp"], summary="OTLP/HTTP trace export (protobuf or JSON, gzip allowed)")
    async def export_traces(request: Request) -> Response:
        ctype = request.headers.get("content-type", "")
        media = otlp.media_type(ctype)
        reply_type = otlp.JSON if media == otlp.JSON else otlp.PROTOBUF
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_body_bytes:
            return _error(413, f"body of {length} bytes exceeds the {settings.max_body_bytes} byte limit")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_body_bytes:
                return _error(413, f"body exceeds the {settings.max_body_bytes} byte limit")
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

    # --- runs -----------------------------------------------------------------------

    def _run_view(request: Request, run_id: str, with_state: bool = False) -> views.RunView:
        project = project_of(request)
        spans = store().run_spans(project, run_id)
        if not spans:
            raise HTTPException(404, f"no run {run_id!r}; list runs with GET /api/v1/runs")
        events = store().state_events(project, run_id) if with_state else []
        return views.RunView(run_id, spans, events)

    @app.get("/api/v1/runs", response_model=models.RunList, tags=["runs"])
    def list_runs(
        request: Request,
        service: str | None = None,
        flow: str | None = None,
        status: Literal["ok", "error", "running"] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: str | None = None,
    ) -> Any:
        try:
            cur = Cursor.decode(cursor) if cursor else None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        runs, nxt = store().list_runs(
            project_of(request), limit=limit, cursor=cur, service=service, flow=flow, status=status,
            since=since, until=until,
        )
        return {"runs": runs, "next_cursor": nxt.encode() if nxt else None}

    @app.get("/api/v1/runs/{run_id}", response_model=models.RunSummary, tags=["runs"])
    def get_run(request: Request, run_id: RunId) -> Any:
        summary = _run_view(request, run_id).summary()
        summary["url"] = f"{settings.url}/api/v1/runs/{run_id}"
        return summary

    @app.get("/api/v1/runs/{run_id}/nodes", response_model=models.NodeList, tags=["runs"])
    def get_nodes(request: Request, run_id: RunId) -> Any:
        return {"run_id": run_id, "nodes": _run_view(request, run_id).nodes()}

    @app.get("/api/v1/runs/{run_id}/spans", response_model=models.SpanTree, tags=["runs"])
    def get_spans(request: Request, run_id: RunId) -> Any:
        flat = store().span_details(project_of(request), run_id)
        if not flat:
            raise HTTPException(404, f"no run {run_id!r}; list runs with GET /api/v1/runs")
        by_id = {s["span_id"]: {**s, "children": []} for s in flat}
        roots = []
        for s in by_id.values():
            parent = by_id.get(s["parent_span_id"] or "")
            (parent["children"] if parent is not None else roots).append(s)
        return {"run_id": run_id, "spans": len(flat), "roots": roots}

    def _check_step(view: views.RunView, step: int, name: str) -> None:
        steps = views.state_steps(view.events)
        nodes = view.nodes()
        last = max([n["step"] for n in nodes] + steps + [-1])
        if step < -1 or step > last:
            raise HTTPException(422, f"{name}={step} is out of range: this run has steps -1 (input) to {last}")

    @app.get("/api/v1/runs/{run_id}/state", response_model=models.StateAt, tags=["time travel"])
    def get_state(request: Request, run_id: RunId, at: Annotated[int, Query(ge=-1)]) -> Any:
        view = _run_view(request, run_id, with_state=True)
        _check_step(view, at, "at")
        node = next((n["name"] for n in view.nodes() if n["step"] == at), None)
        return {"run_id": run_id, "at": at, "node": node, "state": view.state(at),
                "steps": views.state_steps(view.events)}

    @app.get("/api/v1/runs/{run_id}/state/diff", response_model=models.StateDiff, tags=["time travel"])
    def get_state_diff(
        request: Request,
        run_id: RunId,
        from_: Annotated[int, Query(alias="from", ge=-1)],
        to: Annotated[int, Query(ge=-1)],
    ) -> Any:
        view = _run_view(request, run_id, with_state=True)
        _check_step(view, from_, "from")
        _check_step(view, to, "to")
        d = state_diff(view.state(from_), view.state(to))
        return {"run_id": run_id, "from": from_, "to": to, **d}

    # --- operations -----------------------------------------------------------------

    @app.get("/healthz", response_model=models.Health, tags=["ops"])
    def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/readyz", response_model=models.Ready, tags=["ops"])
    def readyz() -> Any:
        ok, version, detail = col.readiness()
        body = {
            "status": "ready" if ok else "not ready",
            "clickhouse": version,
            "schema_version": col.schema_version,
            "expected_schema_version": latest_version(),
            "detail": detail,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/version", response_model=models.Version, tags=["ops"])
    def version() -> Any:
        return {
            "version": sdk_version,
            "pricing_version": get_catalog().version,
            "schema_version": latest_version(),
            "clickhouse": col.target.redacted(),
        }

    @app.get("/metrics", response_class=PlainTextResponse, tags=["ops"])
    def metrics() -> str:
        s, w = col.stats, col.writer
        lines = [
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
        for name, kind, help_, value in lines:
            out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(out) + "\n"

    return app
