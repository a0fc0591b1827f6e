"""One run as the per-run endpoints see it: :class:`RunView`, and its live stream.

``RunView`` holds a run's records and answers every per-run question by
delegating to :mod:`.summary` and :mod:`.graph`. ``live_events`` is here, not
in a module of its own, because it is the one answer computed from a whole
view (spans and state events together, and the run id) and ``RunView`` hands
itself to it: apart, each module would have to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import semconv
from .graph import run_graph
from .records import SpanRecord, StateEvent, dedupe, iso, ms, usd
from .summary import node_sequence, run_status, state_at, summarize


@dataclass
class RunView:
    """Everything the per-run endpoints need, built once from the run's rows."""

    run_id: str
    spans: list[SpanRecord]
    events: list[StateEvent] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return summarize(self.spans, self.run_id)

    def nodes(self) -> list[dict[str, Any]]:
        return node_sequence(self.spans)

    def state(self, step: int) -> Any:
        return state_at(self.events, step)

    def graph(self, fmt: str = "mermaid") -> str:
        return run_graph(self.spans, fmt)

    def live_events(self) -> list[dict[str, Any]]:
        return live_events(self)


def live_events(view: RunView) -> list[dict[str, Any]]:
    """What has happened in a run so far, as the ordered events of its live stream.

    Spans reach the collector when they *end*, so a node's start is known
    either from its own span (when it ended) or earlier, from the first span
    that ended inside it (its LLM and tool calls carry the node's step). Each
    event has a ``key`` that is stable as more spans arrive, so a poller can
    send only what is new; the ``summary`` event comes once the run's root span
    has arrived.
    """
    spans = dedupe(view.spans)
    items: list[tuple[int, int, dict[str, Any]]] = []
    node_spans = {(n.node_step, n.node_attempt): n for n in spans if n.kind == semconv.KIND_NODE}
    first_child: dict[int, SpanRecord] = {}
    for s in spans:
        if s.kind != semconv.KIND_NODE and s.node_step >= 0:
            cur = first_child.get(s.node_step)
            if cur is None or s.start_ns < cur.start_ns:
                first_child[s.node_step] = s
    started: set[int] = set()
    for (step, attempt), n in node_spans.items():
        if step not in started:
            started.add(step)
            items.append((n.start_ns, 0, {"event": "node_start", "key": f"node_start:{step}", "step": step,
                                          "name": n.node_name or n.name, "type": n.node_type or "task",
                                          "start": iso(n.start_ns)}))
        items.append((n.end_ns, 3, {
            "event": "node_end", "key": f"node_end:{step}:{attempt}:{n.span_id}", "step": step,
            "name": n.node_name or n.name, "attempt": attempt, "status": "error" if n.is_error else "ok",
            "duration_ms": ms(n.duration_ns), "branch": n.branch or None,
            "error": (n.error_type or n.status_message or "error") if n.is_error else None}))
    for step, child in first_child.items():
        if step not in started:
            started.add(step)
            items.append((child.start_ns, 0, {"event": "node_start", "key": f"node_start:{step}", "step": step,
                                              "name": child.node_name, "type": child.node_type or "task",
                                              "start": iso(child.start_ns)}))
    for s in spans:
        if s.is_llm:
            items.append((s.end_ns, 1, {
                "event": "llm_call", "key": f"llm:{s.span_id}", "span_id": s.span_id, "step": s.node_step,
                "node": s.node_name or None, "provider": s.provider, "model": s.model,
                "status": "error" if s.is_error else "ok", "duration_ms": ms(s.duration_ns),
                "input_tokens": s.input_tokens, "cached_input_tokens": s.cached_input_tokens,
                "output_tokens": s.output_tokens, "cost_usd": usd(s.cost_usd),
                "cost_source": s.cost_source or None, "cache_hit": s.cache_hit}))
        elif s.kind == semconv.KIND_TOOL:
            items.append((s.end_ns, 1, {
                "event": "tool_call", "key": f"tool:{s.span_id}", "span_id": s.span_id, "step": s.node_step,
                "name": s.name, "status": "error" if s.is_error else "ok", "duration_ms": ms(s.duration_ns)}))
    for ev in view.events:
        items.append((ev.ts_ns, 2, {
            "event": "state", "key": f"state:{ev.seq}", "seq": ev.seq, "op": ev.op, "path": ev.path,
            "value": ev.value, "step": ev.node_step, "node": ev.node_name or None, "truncated": ev.truncated}))
    items.sort(key=lambda t: (t[0], t[1]))
    out = [item for _, _, item in items]
    if spans and run_status(spans) != "running":
        out.append({"event": "summary", "key": "summary", **summarize(spans, view.run_id)})
    return out
