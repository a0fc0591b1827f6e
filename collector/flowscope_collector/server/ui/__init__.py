"""The run explorer: a web UI served by the collector at ``/``, on the API's port.

Everything it shows comes from the public API (``/api/v1/...``) through the
browser, with the same API keys: the page itself is static files of this
package (ES modules, CSS and SVG written for flowscope; no build step, no
framework, nothing fetched from elsewhere), so it works offline.

``mount(app)`` puts an ASGI layer in front of the app (outside the API-key
check) that answers only for the static paths:

* ``/`` — the page; ``/ui/...`` — its modules, styles and icons;
* ``/docs`` — Swagger UI for the API, its assets served from the
  ``swagger-ui-bundle`` package at ``/docs/assets/...`` (FastAPI's own
  ``/docs`` loads them from a CDN and is blank offline, so the app is created
  with ``docs_url=None``; ``/redoc`` is off).

The static files hold no data, so they need no key; every request the page
makes for data goes to the API, which asks for one. Each answer carries a
strict Content-Security-Policy: scripts only from this origin, no inline
script, so a stored attribute value that looks like HTML can never run.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"

# scripts, styles, images and connections: this origin only; no inline script, no eval, no plugins
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
# Swagger UI sets element styles from script; its scripts are still this origin's files only
DOCS_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",
}

for _ext, _type in ((".js", "text/javascript"), (".css", "text/css"), (".svg", "image/svg+xml")):
    mimetypes.add_type(_type, _ext)  # some systems map .js to text/plain, which browsers refuse for modules

DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>flowscope collector API</title>
<link rel="icon" href="/ui/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/ui/swagger-init.js"></script>
</body>
</html>
"""


def swagger_dist() -> Path | None:
    """The Swagger UI files shipped by the ``swagger-ui-bundle`` package (a ``collector`` dependency)."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    return Path(str(swagger_ui_path))


def _with_headers(send: Any, csp: str) -> Any:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
            headers.append((b"content-security-policy", csp.encode()))
            headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


class ExplorerAssets:
    """ASGI layer: the explorer's static paths are answered here, everything else goes to the app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        routes: list[Any] = [
            Route("/", self.index, methods=["GET", "HEAD"]),
            Route("/index.html", self.index, methods=["GET", "HEAD"]),
            Route("/favicon.ico", self.favicon, methods=["GET", "HEAD"]),
            Mount("/ui", StaticFiles(directory=STATIC), name="ui"),
        ]
        dist = swagger_dist()
        if dist is not None and dist.is_dir():
            routes += [Route("/docs", self.docs, methods=["GET", "HEAD"]),
                       Mount("/docs/assets", StaticFiles(directory=dist), name="docs-assets")]
        else:
            routes.append(Route("/docs", self.no_docs, methods=["GET", "HEAD"]))
        self.assets = Starlette(routes=routes)

    @staticmethod
    def handles(path: str) -> bool:
        return path in ("/", "/index.html", "/favicon.ico", "/docs") or path.startswith(("/ui/", "/docs/assets/"))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.handles(scope["path"]):
            csp = DOCS_CSP if scope["path"].startswith("/docs") else CSP
            await self.assets(scope, receive, _with_headers(send, csp))
            return
        await self.app(scope, receive, send)

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def favicon(self, request: Request) -> Response:
        return FileResponse(STATIC / "icon.svg", media_type="image/svg+xml")

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(DOCS_HTML)

    async def no_docs(self, request: Request) -> Response:
        return HTMLResponse("<!doctype html><title>API docs</title><p>Install <code>swagger-ui-bundle</code> "
                            "(part of <code>flowscope[collector]</code>) for the interactive docs; the API "
                            "description is at <a href=\"/openapi.json\">/openapi.json</a>.</p>", status_code=501)


def mount(app: Any) -> None:
    """Serve the run explorer and the offline API docs from ``app`` (call after the auth middleware is added)."""
    app.add_middleware(ExplorerAssets)
