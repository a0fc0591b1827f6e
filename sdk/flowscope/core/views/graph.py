"""The path a run took, drawn: node spans joined by edges, as Mermaid or Graphviz DOT.

Drawing is a job of its own: which node follows which (a chain, or branches
where nodes ran at once) and how each format escapes a label. The nodes,
their costs and the run's status come from :mod:`.summary`, so the picture
and the numbers the other endpoints give can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .records import SpanRecord, dedupe, ms
from .summary import _by_node, node_spans_of, run_status


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
