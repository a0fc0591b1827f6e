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


def fork_fields(forked_from: str | None, forked_at: Any) -> dict[str, Any]:
    """A run's parent and fork step as the API shows them (``flowscope.replay``): None unless it is a fork.

    The collector reads them from its runs table, the test kit from the run's
    spans; both answer through this one function.
    """
    if not forked_from:
        return {"forked_from": None, "forked_at_step": None}
    try:
        step = int(forked_at)
    except (TypeError, ValueError):
        step = -1
    return {"forked_from": str(forked_from), "forked_at_step": step}


def fork_divergence(parent: RunView, child: RunView, at_step: int) -> int | None:
    """The first step after ``at_step`` where a fork ran another node than its parent, or its state differs."""
    names_p = {n["step"]: n["name"] for n in parent.nodes()}
    names_c = {n["step"]: n["name"] for n in child.nodes()}
    steps = sorted(s for s in set(names_p) | set(names_c) | set(state_steps(parent.events))
                   | set(state_steps(child.events)) if s > at_step)
    for step in steps:
        if names_p.get(step) != names_c.get(step) or parent.state(step) != child.state(step):
            return step
    return None


def compare_runs(a: RunView, b: RunView, fork: tuple[str, str, int] | None = None) -> dict[str, Any]:
    """Two runs side by side: path, cost, latency, and where their states first diverge.

    ``fork`` (parent id, child id, step) when one is a replay's fork of the
    other: the answer then says where, after the shared steps, the fork parted.
    """
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
        "fork": None if fork is None else {
            "parent": fork[0], "child": fork[1], "at_step": fork[2],
            "diverged_at_step": fork_divergence(*((a, b) if fork[0] == a.run_id else (b, a)), fork[2]),
        },
    }
