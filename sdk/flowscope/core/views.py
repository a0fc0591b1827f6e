"""Run views: summary, node sequence, state at a step — computed from span records.

This is the single implementation behind the collector's per-run API and the
in-memory test kit. Its input is :class:`SpanRecord`, the typed form of a span
(the same fields as the ``flowscope_spans`` table), so the collector reads
rows and the test kit converts finished OTel spans, and both get identical
answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from . import semconv
from .state import apply_event

ZERO = Decimal(0)


@dataclass
class SpanRecord:
    run_id: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start_ns: int
    duration_ns: int
    service: str = ""
    project: str = "default"
    kind: str = ""  # run | node | llm | tool | ""
    flow: str = ""
    node_name: str = ""
    node_type: str = ""
    node_step: int = -1
    node_attempt: int = 0
    branch: str = ""
    status: str = "Unset"  # Unset | Ok | Error (as the OTel Collector exporter writes it)
    status_message: str = ""
    error_type: str = ""
    provider: str = ""
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = ZERO
    cost_input_usd: Decimal = ZERO
    cost_cached_input_usd: Decimal = ZERO
    cost_cache_write_usd: Decimal = ZERO
    cost_output_usd: Decimal = ZERO
    cost_source: str = ""
    usage_estimated: bool = False
    cache_hit: bool = False
    cache_saved_usd: Decimal = ZERO
    retry_count: int = 0
    fallback_from: str = ""
    fallback_to: str = ""
    budget_exceeded: bool = False
    ttfc_s: float = 0.0

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ns

    @property
    def is_llm(self) -> bool:
        return self.kind == semconv.KIND_LLM

    @property
    def is_error(self) -> bool:
        return self.status == "Error"


@dataclass
class StateEvent:
    seq: int
    op: str
    path: str
    value: Any  # decoded JSON (None for delete)
    node_step: int = -1
    node_name: str = ""
    truncated: bool = False
    ts_ns: int = 0  # when it happened, where known (ordering of live stream events)


def _int(v: Any, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _dec(v: Any) -> Decimal:
    if v is None or v == "":
        return ZERO
    try:
        return Decimal(str(v))
    except Exception:
        return ZERO


def _bool(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.lower() == "true")


def record_from_attributes(
    *,
    trace_id: str,
    span_id: str,
    parent_span_id: str,
    name: str,
    start_ns: int,
    duration_ns: int,
    status: str,
    status_message: str,
    attributes: Mapping[str, Any],
    service: str = "",
    project: str = "default",
) -> SpanRecord:
    """Typed record from a span's (already normalised) attributes.

    The SQL materialized view that fills ``flowscope_spans`` reads the same
    keys; keep the two in step (tests compare them).
    """
    a = attributes
    provider = a.get(semconv.GEN_AI_PROVIDER_NAME) or a.get(semconv.GEN_AI_SYSTEM) or ""
    return SpanRecord(
        run_id=str(a.get(semconv.RUN_ID) or trace_id),
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_span_id,
        name=name,
        start_ns=start_ns,
        duration_ns=duration_ns,
        service=service,
        project=project,
        kind=str(a.get(semconv.SPAN_KIND, "")),
        flow=str(a.get(semconv.GEN_AI_WORKFLOW_NAME, "")),
        node_name=str(a.get(semconv.NODE_NAME, "")),
        node_type=str(a.get(semconv.NODE_TYPE, "")),
        node_step=_int(a.get(semconv.NODE_STEP), -1),
        node_attempt=_int(a.get(semconv.NODE_ATTEMPT)),
        branch=str(a.get(semconv.ROUTER_BRANCH, "")),
        status=status,
        status_message=status_message,
        error_type=str(a.get(semconv.ERROR_TYPE, "")),
        provider=str(provider),
        model=str(a.get(semconv.GEN_AI_RESPONSE_MODEL) or a.get(semconv.GEN_AI_REQUEST_MODEL) or ""),
        input_tokens=_int(a.get(semconv.GEN_AI_USAGE_INPUT_TOKENS)),
        output_tokens=_int(a.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS)),
        cached_input_tokens=_int(a.get(semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)),
        cache_write_tokens=_int(a.get(semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS)),
        reasoning_tokens=_int(a.get(semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS)),
        cost_usd=_dec(a.get(semconv.COST_USD)),
        cost_input_usd=_dec(a.get(semconv.COST_INPUT_USD)),
        cost_cached_input_usd=_dec(a.get(semconv.COST_CACHED_INPUT_USD)),
        cost_cache_write_usd=_dec(a.get(semconv.COST_CACHE_WRITE_USD)),
        cost_output_usd=_dec(a.get(semconv.COST_OUTPUT_USD)),
        cost_source=str(a.get(semconv.COST_SOURCE, "")),
        usage_estimated=_bool(a.get(semconv.USAGE_ESTIMATED)),
        cache_hit=_bool(a.get(semconv.CACHE_HIT)),
        cache_saved_usd=_dec(a.get(semconv.CACHE_SAVED_USD)),
        retry_count=_int(a.get(semconv.RETRY_COUNT)),
        fallback_from=str(a.get(semconv.FALLBACK_FROM, "")),
        fallback_to=str(a.get(semconv.FALLBACK_TO, "")),
        budget_exceeded=_bool(a.get(semconv.BUDGET_EXCEEDED)),
        ttfc_s=float(a.get(semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK) or 0.0),
    )


def state_event_from_attributes(attrs: Mapping[str, Any], node_name: str = "") -> StateEvent:
    raw = attrs.get(semconv.STATE_VALUE)
    try:
        value = json.loads(raw) if isinstance(raw, str) and raw != "" else raw
    except ValueError:
        value = raw
    return StateEvent(
        seq=_int(attrs.get(semconv.STATE_SEQ)),
        op=str(attrs.get(semconv.STATE_OP, "set")),
        path=str(attrs.get(semconv.STATE_PATH, "")),
        value=value,
        node_step=_int(attrs.get(semconv.NODE_STEP), -1),
        node_name=node_name,
        truncated=_bool(attrs.get(semconv.STATE_TRUNCATED)),
    )


# --- formatting helpers ---------------------------------------------------------


def usd(value: Decimal) -> str:
    """Money as a plain decimal string: no exponent, no trailing zeros ("0.00066")."""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def iso(ns: int) -> str:
    dt = datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ns % 1_000_000_000) // 1000:06d}Z"


def ms(ns: int) -> float:
    return round(ns / 1e6, 3)


# --- views -----------------------------------------------------------------------


def dedupe(spans: Iterable[SpanRecord]) -> list[SpanRecord]:
    """One record per span id: an exporter retry that slipped through counts once."""
    seen: dict[tuple[str, str], SpanRecord] = {}
    for s in spans:
        seen.setdefault((s.trace_id, s.span_id), s)
    return sorted(seen.values(), key=lambda s: (s.start_ns, s.span_id))


def _root(spans: Sequence[SpanRecord]) -> SpanRecord | None:
    for s in spans:
        if s.kind == semconv.KIND_RUN:
            return s
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if not s.parent_span_id or s.parent_span_id not in ids]
    return min(roots, key=lambda s: s.start_ns) if roots else None


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
             "unpriced_calls": 0},
        )
        m["llm_calls"] += 1
        m["input_tokens"] += s.input_tokens
        m["cached_input_tokens"] += s.cached_input_tokens
        m["output_tokens"] += s.output_tokens
        m["reasoning_tokens"] += s.reasoning_tokens
        m["cost_usd"] += s.cost_usd
        m["unpriced_calls"] += int(s.cost_source == semconv.COST_SOURCE_UNPRICED)
    by_node = _by_node(spans)
    flow = root.flow if root is not None and root.flow else (root.name if root is not None else "")
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
        "by_model": [
            {**m, "cost_usd": usd(m["cost_usd"])}
            for m in sorted(by_model.values(), key=lambda m: (-m["cost_usd"], m["model"]))
        ],
        "by_node": [
            {"step": n["step"], "name": n["name"], "llm_calls": n["llm_calls"],
             "cost_usd": n["cost_usd"], "duration_ms": n["duration_ms"]}
            for n in by_node
        ],
    }


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
                    "error": (n.error_type or n.status_message or "error") if n.is_error else None,
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


# --- graph, comparison, live events ------------------------------------------------


def _node_spans(spans: Sequence[SpanRecord]) -> list[SpanRecord]:
    nodes = node_spans_of(spans)
    nodes.sort(key=lambda s: (s.node_step if s.node_step >= 0 else 1 << 30, s.start_ns))
    return nodes


def path_edges(spans_in: Iterable[SpanRecord]) -> tuple[list[SpanRecord], list[tuple[int, int]]]:
    """The path a run took: its node spans and (from, to) index pairs; -1 is the start.

    A node follows the latest node that had finished when it started, so a
    sequential flow is a chain and a fan-out (nodes running at once) shows
    as branches that join where a later node waited for them.
    """
    nodes = _node_spans(dedupe(spans_in))
    edges: list[tuple[int, int]] = []
    for i, n in enumerate(nodes):
        done = [j for j in range(i) if nodes[j].end_ns <= n.start_ns]
        if not done:
            edges.append((-1, i))
            continue
        # the frontier: finished nodes that no other finished node came after, i.e. those
        # that ended after the latest start among them (linear, not cubic: 250 nodes took 0.5 s)
        latest_start = max(nodes[k].start_ns for k in done)
        edges.extend((j, i) for j in done if nodes[j].end_ns > latest_start)
    return nodes, edges


def _node_label(n: SpanRecord, cost: str) -> tuple[str, str]:
    name = n.node_name or n.name
    if n.node_attempt:
        name += f" (attempt {n.node_attempt + 1})"
    detail = f"{ms(n.duration_ns)} ms"
    if cost != "0":
        detail = f"${cost} · {detail}"
    if n.is_error:
        detail += " · failed"
    return name, detail


def run_graph(spans_in: Iterable[SpanRecord], fmt: str = "mermaid") -> str:
    """The run's path as Mermaid or Graphviz DOT: nodes with cost and duration, failures marked."""
    spans = dedupe(spans_in)
    nodes, edges = path_edges(spans)
    costs = {n["span_id"]: n["cost_usd"] for n in _by_node(spans, full=True)}
    status = run_status(spans)
    ends = [i for i in range(len(nodes)) if not any(a == i for a, _ in edges)]
    if fmt == "dot":
        out = ["digraph run {", "  rankdir=TB;", '  node [shape=box, style="rounded"];',
               '  start [label="start", shape=circle];',
               f'  end [label="{status}", shape=doublecircle];']
        for i, n in enumerate(nodes):
            name, detail = _node_label(n, costs.get(n.span_id, "0"))
            label = _dot_escape(f"{n.node_step}. {name}") + "\\n" + _dot_escape(detail)
            style = ', style="rounded,filled", fillcolor="#ffdddd", color="#cc0000"' if n.is_error else ""
            out.append(f'  n{i} [label="{label}"{style}];')
        for a, b in edges:
            src = "start" if a < 0 else f"n{a}"
            branch = nodes[a].branch if a >= 0 else ""
            out.append(f'  {src} -> n{b}' + (f' [label="{_dot_escape(branch)}"]' if branch else "") + ";")
        for i in ends:
            out.append(f"  n{i} -> end;")
        if not nodes:
            out.append("  start -> end;")
        out.append("}")
        return "\n".join(out) + "\n"
    out = ["flowchart TD", "  start((start))", f"  finish(({status}))"]
    for i, n in enumerate(nodes):
        name, detail = _node_label(n, costs.get(n.span_id, "0"))
        out.append(f'  n{i}["{_mermaid_escape(f"{n.node_step}. {name}")}<br/>{_mermaid_escape(detail)}"]')
    for a, b in edges:
        src = "start" if a < 0 else f"n{a}"
        branch = nodes[a].branch if a >= 0 else ""
        out.append(f"  {src} -->|{_mermaid_escape(branch)}| n{b}" if branch else f"  {src} --> n{b}")
    for i in ends:
        out.append(f"  n{i} --> finish")
    if not nodes:
        out.append("  start --> finish")
    failed = [f"n{i}" for i, n in enumerate(nodes) if n.is_error]
    if failed:
        out.append("  classDef failed fill:#ffdddd,stroke:#cc0000,stroke-width:2px")
        out.append(f"  class {','.join(failed)} failed")
    return "\n".join(out) + "\n"


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _mermaid_escape(text: str) -> str:
    return (text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
            .replace("|", "#124;"))


def first_state_divergence(a: RunView, b: RunView) -> dict[str, Any] | None:
    """The first step (from -1, the input) after which the two runs' states differ, with the diff."""
    from .state import diff

    steps = sorted(set(state_steps(a.events)) | set(state_steps(b.events))
                   | {s.node_step for s in a.spans + b.spans if s.kind == semconv.KIND_NODE})
    names_a = {n["step"]: n["name"] for n in a.nodes()}
    names_b = {n["step"]: n["name"] for n in b.nodes()}
    for step in [-1, *[s for s in steps if s >= 0]]:
        sa, sb = a.state(step), b.state(step)
        if sa != sb:
            return {"step": step, "node_a": names_a.get(step), "node_b": names_b.get(step), **diff(sa, sb)}
    return None


def compare_runs(a: RunView, b: RunView) -> dict[str, Any]:
    """Two runs side by side: path, cost, latency, and where their states first diverge."""
    sa, sb = a.summary(), b.summary()
    na, nb = a.nodes(), b.nodes()
    path_a = [n["name"] for n in na]
    path_b = [n["name"] for n in nb]
    first_path_diff = next((i for i, (x, y) in enumerate(zip(path_a, path_b)) if x != y), None)
    if first_path_diff is None and len(path_a) != len(path_b):
        first_path_diff = min(len(path_a), len(path_b))

    def side(s: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "run_id": s["run_id"], "flow": s["flow"], "status": s["status"], "start": s["start"],
            "duration_ms": s["duration_ms"], "cost_usd": s["cost_usd"], "llm_calls": s["llm_calls"],
            "input_tokens": s["input_tokens"], "output_tokens": s["output_tokens"], "errors": s["errors"],
            "path": [n["name"] for n in nodes],
            "nodes": [{"step": n["step"], "name": n["name"], "status": n["status"], "cost_usd": n["cost_usd"],
                       "duration_ms": n["duration_ms"]} for n in nodes],
        }

    return {
        "a": side(sa, na),
        "b": side(sb, nb),
        "same_path": path_a == path_b,
        "first_path_difference": first_path_diff,
        "cost_delta_usd": usd(Decimal(sb["cost_usd"]) - Decimal(sa["cost_usd"])),
        "duration_delta_ms": round(sb["duration_ms"] - sa["duration_ms"], 3),
        "first_state_divergence": first_state_divergence(a, b),
    }


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
                                              "name": child.node_name, "type": None,
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
