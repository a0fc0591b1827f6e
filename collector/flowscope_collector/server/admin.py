"""Operator actions on a running collector: ``POST /api/v1/reprice``.

``flowscope-collector reprice`` opens the store itself, which an embedded chDB
directory allows to one process only: with the default store it could run only
with the collector stopped, losing ingest meanwhile. The same repricing
(store/reprice.py, counted once, safe to repeat) is offered here through the
running collector's own connection, to a key with the ``operator`` scope (it
rewrites every project's history), one at a time.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from flowscope.core.pricing import PricingCatalog, PricingFileError, get_catalog

from ..store.queries import parse_when
from ..store.reprice import reprice
from . import models
from .deps import get_collector, get_store

router = APIRouter(prefix="/api/v1", tags=["ops"])
_running = threading.Lock()  # two reprices at once would compute their corrections from the same old rows


@router.post("/reprice", response_model=models.RepriceResult, summary="Price stored LLM calls again, counted once",
             responses={**models.errors(401, 403, 422, 503),
                        409: {"model": models.ErrorBody, "description": "Another reprice is running; retry after it"}})
def reprice_stored(request: Request, body: models.RepriceRequest) -> Any:
    """``flowscope-collector reprice`` in the running collector (the way to reprice an embedded chDB
    store without stopping it): the LLM calls that started in [since, until) are priced again under
    the collector's catalog, or the bundled catalog plus ``pricing`` when sent, and every reader sees
    the new figures once. ``dry_run`` only reports. Needs an operator key when the collector has keys."""
    try:
        since = parse_when(body.since, "since")
        until = parse_when(body.until, "until") if body.until else None
        catalog = get_catalog() if body.pricing is None else PricingCatalog(body.pricing)
    except PricingFileError as exc:
        raise HTTPException(422, f"pricing: {exc}") from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    store = get_store(request)  # 503 with the reason while ClickHouse is unreachable
    if not _running.acquire(blocking=False):
        raise HTTPException(409, "another reprice is running in this collector; retry when it has finished")
    try:
        report = reprice(store.client, get_collector(request).schema, catalog, since=since, until=until,
                         model=body.model, project=body.project, dry_run=body.dry_run)
    finally:
        _running.release()
    return report.as_dict()
