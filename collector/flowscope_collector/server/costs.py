"""Cost roll-ups: ``GET /api/v1/costs?group_by=…&since=…&until=…``."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from flowscope.core.views import usd

from . import models
from .deps import get_store, project_of
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
) -> Any:
    """Cost and tokens of the LLM calls that started in [since, until), grouped by one dimension,
    most expensive first (by day: in date order); unpriced calls are counted, never priced at $0."""
    try:
        start, end = time_range(since, until)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    groups = get_store(request).costs(project_of(request), group_by, since=start, until=end, limit=limit)
    total = sum((Decimal(g["cost_usd"]) for g in groups), Decimal(0))
    return {
        "group_by": group_by,
        "since": start.isoformat() if start else None,
        "until": end.isoformat() if end else None,
        "total_usd": usd(total),
        "llm_calls": sum(g["llm_calls"] for g in groups),
        "unpriced_calls": sum(g["unpriced_calls"] for g in groups),  # and so cost_complete
        "partially_priced_calls": sum(g["partially_priced_calls"] for g in groups),
        "groups": groups,
    }
