"""Run views: summary, node sequence, state at a step, graph, comparison, live stream.

Every answer about a run is computed here from typed span records
(:mod:`.records`), so the collector (from ClickHouse rows) and the in-memory
test kit (from finished OTel spans) give identical answers. :mod:`.summary`
says what a run did, :mod:`.graph` draws its path, :mod:`.run` holds one run
(``RunView``) and its live stream, :mod:`.compare` sets two runs side by side.
"""

from __future__ import annotations

from .compare import compare_runs, first_state_divergence, fork_divergence, fork_fields
from .graph import path_edges, run_graph
from .records import (
    SpanRecord,
    StateEvent,
    dedupe,
    iso,
    ms,
    record_from_attributes,
    state_event_from_attributes,
    usd,
)
from .run import RunView, live_events
from .summary import node_sequence, node_spans_of, run_status, state_at, state_steps, summarize, waiting_ms

__all__ = [
    "RunView", "SpanRecord", "StateEvent", "compare_runs", "dedupe", "first_state_divergence",
    "fork_divergence", "fork_fields", "iso",
    "live_events", "ms", "node_sequence", "node_spans_of", "path_edges", "record_from_attributes",
    "run_graph", "run_status", "state_at", "state_event_from_attributes", "state_steps", "summarize",
    "usd", "waiting_ms",
]
