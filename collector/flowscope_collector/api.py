"""The FastAPI application: OTLP/HTTP on ``/v1/traces`` and the REST API under ``/api/v1``.

Routes live in ``routes_*`` modules, one per concern. Handlers that touch
ClickHouse are plain ``def`` so FastAPI runs them in its thread pool and a slow
query never stalls the event loop that accepts spans.
"""

from __future__ import annotations

import inspect
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from flowscope._version import __version__ as sdk_version

from . import routes_costs, routes_ops, routes_otlp, routes_runs, routes_stream, ui
from .deps import error_body
from .service import Collector
from .settings import CollectorSettings


def create_app(settings: CollectorSettings | None = None, collector: Collector | None = None) -> FastAPI:
    settings = settings or CollectorSettings.from_env()
    col = collector or Collector(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await run_in_threadpool(col.start)
        # OTLP/gRPC (when settings.grpc_port is set) feeds the same Collector.ingest.
        from .grpc_receiver import start_grpc

        grpc_rx = await run_in_threadpool(start_grpc, col, getattr(app.state, "keys", None))
        app.state.grpc = grpc_rx
        try:
            yield
        finally:
            if grpc_rx is not None:
                await run_in_threadpool(grpc_rx.stop)
            await run_in_threadpool(col.stop)

    kwargs: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        # The collector must not trace its own ingestion: where it shares a process
        # (and a TracerProvider) with the SDK, every export would make new spans to
        # export, forever.
        kwargs["telemetry"] = {"tracing": False, "metrics": False, "logs": False, "auto_configure": False}
    app = FastAPI(
        title="flowscope collector",
        version=sdk_version,
        description="OTLP/HTTP receiver and run, cost and state API for LLM and agent flows.",
        lifespan=lifespan,
        docs_url=None, redoc_url=None,  # /docs is served offline by the run explorer (ui.mount)
        **kwargs,
    )
    app.state.collector = col
    # With API keys configured every route but /healthz needs one; the key's
    # project scopes every read and write (auth.py).
    from .auth import AuthMiddleware, KeyStore

    app.state.keys = KeyStore.load(getattr(settings, "api_keys", None), getattr(settings, "api_keys_file", None))
    app.add_middleware(AuthMiddleware, keys=app.state.keys)
    ui.mount(app)  # the run explorer at / and the API docs at /docs: static files, outside the key check

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body"))
            parts.append(f"{loc}: {err.get('msg')}")
        return JSONResponse(error_body(422, "invalid parameters: " + "; ".join(parts)), status_code=422)

    app.include_router(routes_otlp.router)
    app.include_router(routes_runs.router)
    app.include_router(routes_stream.router)
    app.include_router(routes_costs.router)
    app.include_router(routes_ops.router)
    return app
