"""Cost roll-ups: ``GET /api/v1/costs?group_by=…&since=…&until=…``, as stored or under another catalog.

``pricing=current`` (GET) prices the stored calls again under the collector's
catalog as it is now, and ``POST /api/v1/costs/preview`` under a pricing
document sent with the request: both write nothing, and show what
``flowscope-collector reprice`` would store (store/costs_under.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from flowscope.core.pricing import PricingCatalog, PricingFileError, get_catalog
from flowscope.core.views import usd

from ..store.costs_under import TooManyCalls, costs_under
from . import models
from .deps import get_collector, get_store, project_of
from .runs import time_range

router = APIRouter(prefix="/api/v1", tags=["costs"], responses=models.READ_ERRORS)

GROUP_BY = r"^(model|provider|service|flow|node|day|attr:[A-Za-z0-9_.\-]{1,200})$"


@router.get("/costs", response_model=models.CostReport, summary="Cost and tokens of LLM calls, grouped")
def costs(
    request: Request,
    group_by: Annotated[str, Query(
        pattern=GROUP_BY,
        description="model, provider, service, flow, node, day, or attr:KEY for any span attribute "
                    "(attr:KEY scans the attribute maps, so it is slower)",
    )] = "model",
    since: Annotated[str | None, Query(description="ISO 8601, or 90m / 24h / 7d ago")] = None,
    until: Annotated[str | None, Query(description="ISO 8601, or 90m / 24h / 7d ago")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    pricing: Annotated[Literal["stored", "current"], Query(
        description="stored: the figures stored when each call was priced; current: every call priced "
                    "again under the collector's catalog now (what `flowscope-collector reprice` would store)",
    )] = "stored",
) -> Any:
    """Cost and tokens of the LLM calls that started in [since, until), grouped by one dimension,
    most expensive first (by day: in date order); unpriced calls are counted, never priced at $0."""
    catalog = get_catalog() if pricing == "current" else None
    return _report(request, group_by, since, until, limit, catalog)


@router.post("/costs/preview", response_model=models.CostReport,
             summary="Cost of the stored LLM calls under a pricing document you send")
def preview_costs(request: Request, body: models.CostPreviewRequest) -> Any:
    """The ``GET /costs`` report with every LLM call priced again under the bundled catalog plus
    ``pricing`` (the pricing-file format: your own or negotiated prices, aliases), at the prices in
    force when each call ran. Nothing is written: this is what ``flowscope-collector reprice
    --pricing FILE`` would store. The collector's own pricing file is not added; send its content
    with your changes. An invalid document is answered 422 with the entry and key at fault."""
    try:
        catalog = PricingCatalog(body.pricing or {})
    except PricingFileError as exc:
        raise HTTPException(422, f"pricing: {exc}") from None
    return _report(request, body.group_by, body.since, body.until, body.limit, catalog)


def _report(request: Request, group_by: str, since: str | None, until: str | None, limit: int,
            catalog: PricingCatalog | None) -> dict[str, Any]:
    try:
        start, end = time_range(since, until)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    store, project = get_store(request), project_of(request)
    if catalog is None:
        groups = store.costs(project, group_by, since=start, until=end, limit=limit)
    else:
        try:
            groups = costs_under(store.client, store.db, project, catalog, group_by, since=start, until=end,
                                 limit=limit, max_calls=get_collector(request).settings.max_preview_calls)
        except TooManyCalls as exc:
            raise HTTPException(422, str(exc)) from None
    total = sum((Decimal(g["cost_usd"]) for g in groups), Decimal(0))
    return {
        "group_by": group_by,
        "since": start.isoformat() if start else None,
        "until": end.isoformat() if end else None,
        "pricing_version": catalog.version if catalog is not None else None,
        "total_usd": usd(total),
        "llm_calls": sum(g["llm_calls"] for g in groups),
        "unpriced_calls": sum(g["unpriced_calls"] for g in groups),  # and so cost_complete
        "partially_priced_calls": sum(g["partially_priced_calls"] for g in groups),
        "groups": groups,
    }
