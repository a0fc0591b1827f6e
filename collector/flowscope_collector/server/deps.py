"""Request-scoped dependencies shared by the routers: the collector, its store, the caller's project."""

from __future__ import annotations

from fastapi import HTTPException, Request

from ..service import Collector
from ..store.queries import Store

DEFAULT_PROJECT = "default"


def get_collector(request: Request) -> Collector:
    return request.app.state.collector  # type: ignore[no-any-return]


def get_store(request: Request) -> Store:
    col = get_collector(request)
    if col.store is None:
        if col.connect_error:
            # not "starting": it may never get there on its own, and the person needs the reason
            raise HTTPException(503, f"{col.connect_error}; spans are kept in the write-ahead log until "
                                     f"it is back (GET /readyz)", headers={"Retry-After": "5"})
        raise HTTPException(503, "collector is starting; retry shortly")
    return col.store


def project_of(request: Request) -> str:
    """The project the caller may read or write. Without API keys everything is one project."""
    return getattr(request.state, "project", None) or DEFAULT_PROJECT


def error_body(status: int, message: str) -> dict[str, object]:
    return {"error": message, "status": status}
