"""Run API: list, summary, nodes, span tree and time travel under ``/api/v1/runs``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from flowscope import views
from flowscope.state import diff as state_diff

from . import models
from .deps import get_collector, get_store, project_of
from .queries import Cursor

router = APIRouter(prefix="/api/v1", tags=["runs"])

RunId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_\-:.]+$")]


def run_view(request: Request, run_id: str, with_state: bool = False) -> views.RunView:
    project = project_of(request)
    store = get_store(request)
    spans = store.run_spans(project, run_id)
    if not spans:
        raise HTTPException(404, f"no run {run_id!r}; list runs with GET /api/v1/runs")
    events = store.state_events(project, run_id) if with_state else []
    return views.RunView(run_id, spans, events)


@router.get("/runs", response_model=models.RunList)
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
    runs, nxt = get_store(request).list_runs(
        project_of(request), limit=limit, cursor=cur, service=service, flow=flow, status=status,
        since=since, until=until,
    )
    return {"runs": runs, "next_cursor": nxt.encode() if nxt else None}


@router.get("/runs/{run_id}", response_model=models.RunSummary)
def get_run(request: Request, run_id: RunId) -> Any:
    summary = run_view(request, run_id).summary()
    summary["url"] = f"{get_collector(request).settings.url}/api/v1/runs/{run_id}"
    return summary


@router.get("/runs/{run_id}/nodes", response_model=models.NodeList)
def get_nodes(request: Request, run_id: RunId) -> Any:
    return {"run_id": run_id, "nodes": run_view(request, run_id).nodes()}


@router.get("/runs/{run_id}/spans", response_model=models.SpanTree)
def get_spans(request: Request, run_id: RunId) -> Any:
    flat = get_store(request).span_details(project_of(request), run_id)
    if not flat:
        raise HTTPException(404, f"no run {run_id!r}; list runs with GET /api/v1/runs")
    by_id = {s["span_id"]: {**s, "children": []} for s in flat}
    roots = []
    for s in by_id.values():
        parent = by_id.get(s["parent_span_id"] or "")
        (parent["children"] if parent is not None else roots).append(s)
    return {"run_id": run_id, "spans": len(flat), "roots": roots}


def _check_step(view: views.RunView, nodes: list[dict[str, Any]], step: int, name: str) -> None:
    last = max([n["step"] for n in nodes] + views.state_steps(view.events) + [-1])
    if step < -1 or step > last:
        raise HTTPException(422, f"{name}={step} is out of range: this run has steps -1 (input) to {last}")


@router.get("/runs/{run_id}/state", response_model=models.StateAt, tags=["time travel"])
def get_state(request: Request, run_id: RunId, at: Annotated[int, Query(ge=-1)]) -> Any:
    view = run_view(request, run_id, with_state=True)
    nodes = view.nodes()
    _check_step(view, nodes, at, "at")
    node = next((n["name"] for n in nodes if n["step"] == at), None)
    return {"run_id": run_id, "at": at, "node": node, "state": view.state(at),
            "steps": views.state_steps(view.events)}


@router.get("/runs/{run_id}/state/diff", response_model=models.StateDiff, tags=["time travel"])
def get_state_diff(
    request: Request,
    run_id: RunId,
    from_: Annotated[int, Query(alias="from", ge=-1)],
    to: Annotated[int, Query(ge=-1)],
) -> Any:
    view = run_view(request, run_id, with_state=True)
    nodes = view.nodes()
    _check_step(view, nodes, from_, "from")
    _check_step(view, nodes, to, "to")
    return {"run_id": run_id, "from": from_, "to": to, **state_diff(view.state(from_), view.state(to))}
