"""What a run did, from its records: status, summary, node sequence, state at a step.

This is the single implementation behind the collector's per-run API and the
in-memory test kit: both hand it :mod:`.records` and get identical answers.
The graph (:mod:`.graph`) and the live stream (:mod:`.run`) are built on the
node sequence and the status computed here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .. import semconv
from ..run_attributes import who_fields
from ..state import apply_event
from .records import ZERO, SpanRecord, StateEvent, dedupe, iso, ms, usd


def _root(spans: Sequence[SpanRecord]) -> SpanRecord | None:
    for s in spans:
        if s.kind == semconv.KIND_RUN:
            return s
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if not s.parent_span_id or s.parent_span_id not in ids]
    return min(roots, key=lambda s: s.start_ns) if roots else None


def flow_name(spans: Sequence[SpanRecord]) -> str:
    """A run's flow: the name of its root, the same rule the collector's runs table applies.

    A root is the run span, or a parentless span of a run whose id is its trace id (a
    trace from another producer, a zero-code LLM call outside any flow); it names the
    flow by its workflow name, else its span name. The runs table keeps ``max()`` of
    those names (migration 007), so this does too: the list, the summary and ``?flow=``
    agree, and a run whose root has not arrived (still running) has flow ``""`` in
    every view rather than its first node's name in one of them.
    """
    names = [s.flow or s.name for s in spans
             if s.kind == semconv.KIND_RUN or (not s.parent_span_id and s.run_id == s.trace_id)]
    return max(names, default="")


def run_status(spans: Sequence[SpanRecord]) -> str:
    root = _root(spans)
    has_run_span = any(s.kind == semconv.KIND_RUN for s in spans)
    if root is None:
        return "running"
    if has_run_span:
        return "error" if root.is_error else "ok"
    # Foreign runs have no run span: the root is whatever span has no parent.
    if root.parent_span_id:
        return "running"
    return "error" if root.is_error else "ok"


def summarize(spans_in: Iterable[SpanRecord], run_id: str | None = None) -> dict[str, Any]:
    spans = dedupe(spans_in)
    if not spans:
        raise LookupError(f"no spans for run {run_id!r}")
    root = _root(spans)
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    if root is not None and root.kind == semconv.KIND_RUN:
        start, end = root.start_ns, root.end_ns
    llm = [s for s in spans if s.is_llm]
    by_model: dict[tuple[str, str], dict[str, Any]] = {}
    for s in llm:
        m = by_model.setdefault(
            (s.provider, s.model),
            {"provider": s.provider, "model": s.model, "llm_calls": 0, "input_tokens": 0,
             "cached_input_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0, "cost_usd": ZERO,
             "unpriced_calls": 0, "partially_priced_calls": 0},
        )
        m["llm_calls"] += 1
        m["input_tokens"] += s.input_tokens
        m["cached_input_tokens"] += s.cached_input_tokens
        m["output_tokens"] += s.output_tokens
        m["reasoning_tokens"] += s.reasoning_tokens
        m["cost_usd"] += s.cost_usd
        m["unpriced_calls"] += int(s.cost_source == semconv.COST_SOURCE_UNPRICED)
        m["partially_priced_calls"] += int(s.cost_source == semconv.COST_SOURCE_PARTIAL)
    by_node = _by_node(spans)
    flow = flow_name(spans)
    status = run_status(spans)
    return {
        "run_id": run_id or spans[0].run_id,
        "flow": flow,
        "service": root.service if root is not None else spans[0].service,
        "project": spans[0].project,
        "status": status,
        "start": iso(start),
        "end": iso(end) if status != "running" else None,
        "duration_ms": ms(end - start),
        "spans": len(spans),
        "llm_calls": len(llm),
        "errors": sum(1 for s in spans if s.is_error),
        "retries": sum(s.retry_count for s in spans if s.is_llm or s.kind == semconv.KIND_NODE),
        "fallbacks": sum(1 for s in llm if s.fallback_to),
        "cache_hits": sum(1 for s in llm if s.cache_hit),
        "unpriced_calls": sum(1 for s in llm if s.cost_source == semconv.COST_SOURCE_UNPRICED),
        "partially_priced_calls": sum(1 for s in llm if s.cost_source == semconv.COST_SOURCE_PARTIAL),
        # no silent $0: False when any call in cost_usd lacks a price or the price of a part
        "cost_complete": not any(
            s.cost_source in (semconv.COST_SOURCE_UNPRICED, semconv.COST_SOURCE_PARTIAL) for s in llm
        ),
        "estimated_calls": sum(1 for s in llm if s.usage_estimated),
        "input_tokens": sum(s.input_tokens for s in llm),
        "cached_input_tokens": sum(s.cached_input_tokens for s in llm),
        "cache_write_input_tokens": sum(s.cache_write_tokens for s in llm),
        "output_tokens": sum(s.output_tokens for s in llm),
        "reasoning_tokens": sum(s.reasoning_tokens for s in llm),
        "cost_usd": usd(sum((s.cost_usd for s in llm), ZERO)),
        "cost_breakdown": {
            "input_usd": usd(sum((s.cost_input_usd for s in llm), ZERO)),
            "cached_input_usd": usd(sum((s.cost_cached_input_usd for s in llm), ZERO)),
            "cache_write_usd": usd(sum((s.cost_cache_write_usd for s in llm), ZERO)),
            "output_usd": usd(sum((s.cost_output_usd for s in llm), ZERO)),
        },
        "cache_saved_usd": usd(sum((s.cache_saved_usd for s in llm), ZERO)),
        "budget_exceeded": any(s.budget_exceeded for s in spans),
        "waiting_ms": waiting_ms(spans),
        **who_fields(run_attributes(spans)),
        "by_model": [
            {**m, "cost_usd": usd(m["cost_usd"]),
             "cost_complete": not (m["unpriced_calls"] or m["partially_priced_calls"])}
            for m in sorted(by_model.values(), key=lambda m: (-m["cost_usd"], m["model"]))
        ],
        "by_node": [
            {"step": n["step"], "name": n["name"], "llm_calls": n["llm_calls"],
             "cost_usd": n["cost_usd"], "duration_ms": n["duration_ms"], "error": n["error"],
             "error_message": n["error_message"]}
            for n in by_node
        ],
    }


def run_attributes(spans: Sequence[SpanRecord]) -> dict[str, str]:
    """The run's run attributes, each from the first span (by start) that has it, as the
    collector keeps the first value seen (migration 011)."""
    out: dict[str, str] = {}
    for s in spans:  # in start order (dedupe sorts them)
        for key, value in s.run_attributes.items():
            out.setdefault(key, value)
    return out


def waiting_ms(spans: Iterable[SpanRecord]) -> float:
    """Time the run spent in ``wait`` spans (human approval, interrupts), overlaps counted once."""
    intervals = sorted((s.start_ns, s.end_ns) for s in spans if s.kind == semconv.KIND_WAIT)
    total = 0
    cur_start = cur_end = None
    for start, end in intervals:
        if cur_end is None or start > cur_end:
            if cur_end is not None and cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None and cur_start is not None:
        total += cur_end - cur_start
    return ms(total)


def node_spans_of(spans: Sequence[SpanRecord]) -> list[SpanRecord]:
    """The run's node spans, minus what foreign producers mark as nodes but are not steps.

    Normalisation sees one span at a time (flowscope.core.normalize), so two rules
    that need the run are applied here:

    * with no run span, a parentless node is the trace's root (an OpenInference
      CHAIN/AGENT whose parent was not known at ingest): the run, not a step;
    * a stepless (foreign) node nested in a node of the same name is the same
      step seen twice (LangChain runnables inherit LangGraph's
      ``langgraph_node`` metadata): the outer one counts.

    Foreign nodes have no ``flowscope.node.step``; they are numbered by start
    time among the others (see ``_by_node``).
    """
    nodes = [s for s in spans if s.kind == semconv.KIND_NODE]
    if not any(s.node_step < 0 for s in nodes):
        return nodes
    by_id = {s.span_id: s for s in spans}
    has_run = any(s.kind == semconv.KIND_RUN for s in spans)
    kept = []
    for n in nodes:
        if n.node_step < 0:
            if not has_run and (not n.parent_span_id or n.parent_span_id not in by_id):
                continue
            cur = by_id.get(n.parent_span_id)
            hops = 0
            while cur is not None and hops < 64 and cur.kind != semconv.KIND_NODE:
                cur = by_id.get(cur.parent_span_id)
                hops += 1
            if cur is not None and cur.kind == semconv.KIND_NODE and (cur.node_name or cur.name) == (
                    n.node_name or n.name):
                continue
        kept.append(n)
    return kept


def _node_of(spans: Sequence[SpanRecord], nodes: Sequence[SpanRecord] | None = None) -> dict[str, SpanRecord]:
    """Map every span id to its nearest enclosing node span (for foreign spans
    that did not get node attributes stamped at start)."""
    by_id = {s.span_id: s for s in spans}
    kept = {n.span_id for n in (nodes if nodes is not None else node_spans_of(spans))}
    out: dict[str, SpanRecord] = {}
    for s in spans:
        cur: SpanRecord | None = by_id.get(s.parent_span_id)
        hops = 0
        while cur is not None and hops < 64:
            if cur.span_id in kept:
                out[s.span_id] = cur
                break
            cur = by_id.get(cur.parent_span_id)
            hops += 1
    return out


def node_sequence(spans_in: Iterable[SpanRecord]) -> list[dict[str, Any]]:
    spans = dedupe(spans_in)
    return _by_node(spans, full=True)


def _by_node(spans: Sequence[SpanRecord], full: bool = False) -> list[dict[str, Any]]:
    nodes = node_spans_of(spans)
    nodes.sort(key=lambda s: (s.node_step if s.node_step >= 0 else 1 << 30, s.start_ns))
    enclosing = _node_of(spans, nodes)
    acc: dict[str, dict[str, Any]] = {
        n.span_id: {"llm_calls": 0, "input_tokens": 0, "output_tokens": 0, "cost": ZERO, "retries": 0}
        for n in nodes
    }
    for s in spans:
        if not s.is_llm:
            continue
        parent = enclosing.get(s.span_id)
        if parent is None:
            continue
        a = acc[parent.span_id]
        a["llm_calls"] += 1
        a["input_tokens"] += s.input_tokens
        a["output_tokens"] += s.output_tokens
        a["cost"] += s.cost_usd
        a["retries"] += s.retry_count
    out = []
    for idx, n in enumerate(nodes):
        a = acc[n.span_id]
        item: dict[str, Any] = {
            "step": n.node_step if n.node_step >= 0 else idx,
            "name": n.node_name or n.name,
            "llm_calls": a["llm_calls"],
            "cost_usd": usd(a["cost"]),
            "duration_ms": ms(n.duration_ns),
            # the type to group by, and the message a person can act on (its status message)
            "error": (n.error_type or n.status_message or "error") if n.is_error else None,
            "error_message": (n.status_message or n.error_type or "error") if n.is_error else None,
        }
        if full:
            item.update(
                {
                    "type": n.node_type or "task",
                    "attempt": n.node_attempt,
                    "start": iso(n.start_ns),
                    "status": "error" if n.is_error else "ok",
                    "input_tokens": a["input_tokens"],
                    "output_tokens": a["output_tokens"],
                    "retries": a["retries"] + n.retry_count,
                    "branch": n.branch or None,
                    "superstep": n.superstep if n.superstep >= 0 else None,
                    "span_id": n.span_id,
                }
            )
        out.append(item)
    return out


def state_at(events: Iterable[StateEvent], step: int) -> Any:
    """Fold every state event up to and including node step ``step``.

    Step -1 is the run's input snapshot, before any node ran.
    """
    state: Any = {}
    for ev in sorted(events, key=lambda e: e.seq):
        if ev.node_step > step:
            continue
        state = apply_event(state, ev.op, ev.path, ev.value)
    return state


def state_steps(events: Iterable[StateEvent]) -> list[int]:
    return sorted({e.node_step for e in events})
