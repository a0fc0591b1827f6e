"""Run API under ``/api/v1/runs``: list, summary, nodes, span tree, time travel, graph, compare."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import PlainTextResponse

from flowscope.core import views
from flowscope.core.ids import RUN_ID_PATTERN
from flowscope.core.run_attributes import attribute_key, who_fields
from flowscope.core.state import diff as state_diff

from ..store.queries import Cursor, parse_when
from . import models
from .deps import get_collector, get_store, project_of


def time_range(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    start = parse_when(since, "since") if since else None
    end = parse_when(until, "until") if until else None
    if start and end and start >= end:
        raise ValueError(f"since ({start.isoformat()}) must be before until ({end.isoformat()})")
    return start, end

router = APIRouter(prefix="/api/v1", tags=["runs"], responses=models.READ_ERRORS)

_RUN_ID = RUN_ID_PATTERN  # the one ingest holds spans to (core/ids.py)
RunId = Annotated[str, Path(min_length=1, max_length=128, pattern=_RUN_ID)]
RunIdQuery = Annotated[str, Query(min_length=1, max_length=128, pattern=_RUN_ID)]


def run_view(request: Request, run_id: str, with_state: bool = False) -> views.RunView:
    project = project_of(request)
    store = get_store(request)
    spans = store.run_spans(project, run_id)
    if not spans:
        raise HTTPException(404, f"no run {run_id!r}; list runs with GET /api/v1/runs")
    events = store.state_events(project, run_id) if with_state else []
    return views.RunView(run_id, spans, events)


@router.get("/runs", response_model=models.RunList, summary="List runs, newest first by default")
def list_runs(
    request: Request,
    service: str | None = None,
    flow: str | None = None,
    status: Literal["ok", "error", "running"] | None = None,
    since: Annotated[str | None, Query(description="runs that started at or after: ISO 8601, or 90m / 24h / 7d ago")]
    = None,
    until: Annotated[str | None, Query(description="runs that started before: ISO 8601, or 90m / 24h / 7d ago")]
    = None,
    min_cost: Annotated[
        Decimal | None,
        # costs are stored as Decimal(38, 18): larger bounds are a client mistake, not a 500
        Query(ge=0, lt=Decimal("1e20"), description="only runs that cost at least this (USD)"),
    ] = None,
    attr: Annotated[
        list[str] | None,
        Query(max_length=10, description="run attribute filter NAME:VALUE (repeatable), e.g. tenant:acme, user_id:u-42"),
    ] = None,
    sort: Literal["start", "cost", "duration"] = "start",
    order: Literal["desc", "asc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Any:
    """One page of runs, newest first unless sorted otherwise, with each run's totals and who it was for.

    Filters combine (AND); ``attr`` filters by run attributes (repeat it for several). Page on
    with ``cursor=next_cursor`` and the same filters: a run is never listed twice or skipped.
    """
    try:
        cur = Cursor.decode(cursor, sort) if cursor else None
        start, end = time_range(since, until)
        attrs = [_attr_filter(a) for a in attr or ()]
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    store, project = get_store(request), project_of(request)
    runs, nxt = store.list_runs(
        project, limit=limit, cursor=cur, service=service, flow=flow, status=status,
        since=start, until=end, min_cost=min_cost, attrs=attrs, sort=sort, order=order,
    )
    who = store.run_attributes(project, [r["run_id"] for r in runs])
    for r in runs:
        r.update(who_fields(who.get(r["run_id"], {})))
    return {"runs": runs, "next_cursor": nxt.encode() if nxt else None}


def _attr_filter(raw: str) -> tuple[str, str]:
    """``tenant:acme`` → (``flowscope.run.attr.tenant``, ``acme``), named as set_run_attributes names it."""
    name, sep, value = raw.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"attr={raw!r}: use NAME:VALUE, e.g. attr=tenant:acme")
    return attribute_key(name.strip()), value


@router.get("/runs/compare", response_model=models.RunComparison, summary="Two runs side by side",
            responses=models.RUN_ERRORS)
def compare_runs(request: Request, a: RunIdQuery, b: RunIdQuery) -> Any:
    """Two runs side by side: their paths, where they first differ, the cost and latency
    deltas (b minus a), and the first step after which their states diverge."""
    store, project = get_store(request), project_of(request)
    forks = {a: store.run_fork(project, a), b: store.run_fork(project, b)}
    fork = None
    for parent, child in ((a, b), (b, a)):
        if forks[child]["forked_from"] == parent:
            fork = (parent, child, forks[child]["forked_at_step"])
    return views.compare_runs(run_view(request, a, with_state=True), run_view(request, b, with_state=True), fork=fork)


@router.get("/runs/{run_id}", response_model=models.RunSummary, responses=models.RUN_ERRORS)
def get_run(request: Request, run_id: RunId) -> Any:
    """A run's summary: status, timing, tokens, cost (with its breakdown, by model and by node),
    errors, retries, fallbacks, cache hits and who the run was for (user, session, tenant)."""
    summary = run_view(request, run_id).summary()
    summary.update(who_fields(get_store(request).run_attributes(project_of(request), [run_id]).get(run_id, {})))
    summary.update(get_store(request).run_fork(project_of(request), run_id))
    summary["url"] = f"{get_collector(request).settings.url}/api/v1/runs/{run_id}"
    return summary


@router.get("/runs/{run_id}/nodes", response_model=models.NodeList, responses=models.RUN_ERRORS)
def get_nodes(request: Request, run_id: RunId) -> Any:
    """The run's node executions in order: step, attempt, timing, status, tokens, cost, router
    branch, LangGraph superstep, and for a failed node its error type and message."""
    view = run_view(request, run_id)
    supersteps = get_store(request).node_supersteps(project_of(request), view.spans)
    for span in view.spans:
        span.superstep = supersteps.get(span.span_id, -1)
    return {"run_id": run_id, "nodes": view.nodes()}


@router.get("/runs/{run_id}/spans", response_model=models.SpanTree, responses=models.RUN_ERRORS)
def get_spans(request: Request, run_id: RunId) -> Any:
    """Every span of the run as a tree (roots and their children), with attributes and events."""
    flat = get_store(request).span_details(project_of(request), run_id)
    if not flat:
        raise HTTPException(404, f"no run {run_id!r}; list runs with GET /api/v1/runs")
    by_id = {s["span_id"]: {**s, "children": []} for s in flat}
    roots: list[dict[str, Any]] = []
    for s in by_id.values():
        parent = by_id.get(s["parent_span_id"] or "")
        (parent["children"] if parent is not None else roots).append(s)
    return {"run_id": run_id, "spans": len(flat), "roots": roots}


def _check_step(view: views.RunView, nodes: list[dict[str, Any]], step: int, name: str) -> None:
    last = max([n["step"] for n in nodes] + views.state_steps(view.events) + [-1])
    if step < -1 or step > last:
        raise HTTPException(422, f"{name}={step} is out of range: this run has steps -1 (input) to {last}")


@router.get("/runs/{run_id}/state", response_model=models.StateAt, tags=["time travel"],
            responses=models.RUN_ERRORS)
def get_state(request: Request, run_id: RunId, at: Annotated[int, Query(ge=-1)]) -> Any:
    """Time travel: the run's state after step ``at`` (-1 is its input), the node that step
    ran, and the steps there are."""
    view = run_view(request, run_id, with_state=True)
    nodes = view.nodes()
    _check_step(view, nodes, at, "at")
    node = next((n["name"] for n in nodes if n["step"] == at), None)
    return {"run_id": run_id, "at": at, "node": node, "state": view.state(at),
            "steps": views.state_steps(view.events)}


@router.get("/runs/{run_id}/state/diff", response_model=models.StateDiff, tags=["time travel"],
            responses=models.RUN_ERRORS)
def get_state_diff(
    request: Request,
    run_id: RunId,
    from_: Annotated[int, Query(alias="from", ge=-1)],
    to: Annotated[int, Query(ge=-1)],
) -> Any:
    """What changed in the run's state between step ``from`` and step ``to``: added, removed
    and changed paths."""
    view = run_view(request, run_id, with_state=True)
    nodes = view.nodes()
    _check_step(view, nodes, from_, "from")
    _check_step(view, nodes, to, "to")
    return {"run_id": run_id, "from": from_, "to": to, **state_diff(view.state(from_), view.state(to))}


_GRAPH_MEDIA = {"mermaid": "text/vnd.mermaid; charset=utf-8", "dot": "text/vnd.graphviz; charset=utf-8"}


@router.get(
    "/runs/{run_id}/graph",
    response_class=PlainTextResponse,
    summary="The path the run took, as Mermaid or Graphviz DOT",
    responses={**models.errors(401, 403, 404, 422, 503, plain_route=True),
               200: {"content": {"text/vnd.mermaid": {}, "text/vnd.graphviz": {}}}},
)
def get_graph(request: Request, run_id: RunId, format: Literal["mermaid", "dot"] = "mermaid") -> Any:
    """The path the run took as a Mermaid or Graphviz DOT graph, branches and retries included."""
    text = run_view(request, run_id).graph(format)
    return PlainTextResponse(text, media_type=_GRAPH_MEDIA[format])
