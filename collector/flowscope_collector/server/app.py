"""The FastAPI application: OTLP/HTTP on ``/v1/traces`` and the REST API under ``/api/v1``.

Routes live in one module per concern (``otlp_http``, ``runs``, ``stream``,
``costs``, ``ops``, ``admin`` for operator actions); OTLP/gRPC (``otlp_grpc``) starts and stops with the app.
Handlers that touch ClickHouse are plain ``def`` so FastAPI runs them in its
thread pool and a slow query never stalls the event loop that accepts spans.
"""

from __future__ import annotations

import inspect
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowscope._version import __version__ as sdk_version

from ..service import Collector
from ..settings import CollectorSettings
from . import admin, costs, ops, otlp_http, runs, stream, ui
from .auth import AuthMiddleware, KeyStore
from .deps import error_body


class HeadAsGet:
    """Answer ``HEAD`` as ``GET`` without the body (RFC 9110), instead of 405 on every route.

    Uptime checkers and ``curl -I`` send HEAD; FastAPI routes declared with ``@get`` do not
    take it. The request goes through as a GET, and only the body of the answer is dropped.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        finished = False

        async def send_headers_only(message: Message) -> None:
            nonlocal finished
            if message["type"] == "http.response.body":
                if finished:
                    return
                finished = True
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


def create_app(settings: CollectorSettings | None = None, collector: Collector | None = None) -> FastAPI:
    settings = settings or CollectorSettings.from_env()
    col = collector or Collector(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await run_in_threadpool(col.start)
        # OTLP/gRPC (when settings.grpc_port is set) feeds the same Collector.ingest. Imported
        # here, not at the top: grpcio is heavy to load, and an app that is never started
        # (the OpenAPI schema, in-process tests) has no use for it.
        from .otlp_grpc import start_grpc

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
    # project scopes every read and write (server/auth.py).
    app.state.keys = KeyStore.load(settings.api_keys, settings.api_keys_file)
    # each project's share of the buffer: only worth keeping when there are projects to share with
    col.admission.share_between(len(app.state.keys.ingest_projects()) if app.state.keys else 1)
    app.add_middleware(AuthMiddleware, keys=app.state.keys)
    ui.mount(app)  # the run explorer at / and the API docs at /docs: static files, outside the key check
    app.add_middleware(HeadAsGet)  # outermost: a HEAD is checked for its key as the GET would be

    # Starlette's HTTPException, not only FastAPI's subclass: an unknown route (404) or method
    # (405) answers in the documented {"error", "status"} shape too, not {"detail": ...}
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
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

    app.include_router(otlp_http.router)
    app.include_router(runs.router)
    app.include_router(stream.router)
    app.include_router(costs.router)
    app.include_router(ops.router)
    app.include_router(admin.router)
    return app
