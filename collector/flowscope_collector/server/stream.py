"""Live runs: ``GET /api/v1/runs/{run_id}/stream`` as server-sent events.

Spans reach the collector when they end, so the stream is built by polling
the run's rows and sending the events not sent yet (see
:func:`flowscope.core.views.live_events`): node starts (known from the first span
that ended inside the node, or from the node itself), node ends, LLM calls
with their cost, tool calls, state changes, and a final ``summary`` once the
run's root span is in. A client that connects late first gets everything that
already happened, in order; then the stream follows the run until it ends.
State events travel on the span that made them, so they arrive when that
span ends: a node's changes with the node, the run's input snapshot with the
root span at the very end.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from flowscope.core import views
from flowscope.core.run_attributes import who_fields

from . import models
from .deps import get_store, project_of
from .runs import RunId

router = APIRouter(prefix="/api/v1", tags=["runs"], responses={**models.READ_ERRORS, **models.RUN_ERRORS})

HEARTBEAT_S = 15.0


def _sse(event_id: int, event: dict[str, Any]) -> str:
    data = json.dumps(event, default=str, separators=(",", ":"))
    return f"id: {event_id}\nevent: {event['event']}\ndata: {data}\n\n"


@router.get(
    "/runs/{run_id}/stream",
    summary="Server-sent events for a live run (history first, then live)",
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "events: node_start, node_end, llm_call, tool_call, state, summary, timeout"}},
)
async def stream_run(
    request: Request,
    run_id: RunId,
    wait: Annotated[float, Query(ge=0, le=600, description="seconds to wait for a run that has no spans yet")] = 30,
    timeout: Annotated[float, Query(ge=1, le=86_400, description="close the stream after this many seconds")]
    = 3600,
    poll: Annotated[float, Query(ge=0.05, le=10, description="seconds between looks at the store")] = 0.5,
) -> StreamingResponse:
    """The run's events as server-sent events: what happened so far first, then each new one as
    it is stored, ending with ``summary`` when the run ends (or ``timeout``). 404 when the run
    has no spans after ``wait`` seconds."""
    project = project_of(request)
    store = get_store(request)

    def load() -> views.RunView:
        spans = store.run_spans(project, run_id)
        events = store.state_events(project, run_id) if spans else []
        return views.RunView(run_id, spans, events)

    view = await run_in_threadpool(load)
    deadline = time.monotonic() + wait
    while not view.spans and time.monotonic() < deadline:
        await asyncio.sleep(poll)
        view = await run_in_threadpool(load)
    if not view.spans:
        raise HTTPException(404, f"no run {run_id!r} after waiting {wait:g}s; list runs with GET /api/v1/runs")

    async def events() -> AsyncIterator[str]:
        nonlocal view
        sent: set[str] = set()
        count = 0
        end_at = time.monotonic() + timeout
        beat = time.monotonic()
        settling = False
        while True:
            pending = [e for e in view.live_events() if e["key"] not in sent]
            done = any(e["event"] == "summary" for e in pending)
            if done and not settling:
                # the root arrived; give spans exported in the same breath one more look
                settling = True
                pending = [e for e in pending if e["event"] != "summary"]
            for ev in pending:
                if ev["event"] == "summary":  # who the run was for, as GET /runs/{id} says it
                    who = await run_in_threadpool(store.run_attributes, project, [run_id])
                    ev = {**ev, **who_fields(who.get(run_id, {}))}
                sent.add(ev["key"])
                count += 1
                yield _sse(count, ev)
            if done and settling and any(e["event"] == "summary" for e in pending):
                return
            if await request.is_disconnected():
                return
            if time.monotonic() > end_at:
                count += 1
                yield _sse(count, {"event": "timeout", "key": "timeout",
                                   "message": f"stream closed after {timeout:g}s; the run is still going"})
                return
            if time.monotonic() - beat > HEARTBEAT_S:
                beat = time.monotonic()
                yield ": keep-alive\n\n"
            await asyncio.sleep(poll)
            view = await run_in_threadpool(load)

    return StreamingResponse(
        events(), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
