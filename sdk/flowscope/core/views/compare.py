"""Two runs side by side: path, cost, latency, and where their states first diverge.

The compare endpoint's answer, built from two :class:`~.run.RunView` objects
(their summaries, node sequences and folded state) and the state diff of
:mod:`flowscope.core.state`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .. import semconv
from ..state import diff
from .records import usd
from .run import RunView
from .summary import state_steps


def first_state_divergence(a: RunView, b: RunView) -> dict[str, Any] | None:
    """The first step (from -1, the input) after which the two runs' states differ, with the diff."""
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
