"""Assertions on a run's path, cost, retries and state, with failure messages that say what happened.

Each takes a captured run (``cap.run()``), a :class:`~flowscope.testing.Capture`
(its latest run) or a :class:`flowscope.core.views.RunView`, and raises
``AssertionError`` whose message shows the expected and the actual side by
side, plus the detail needed to fix the flow without opening a trace viewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from flowscope.core import views
from flowscope.core.state import split_path

from .capturing import Capture, CapturedRun

_MISSING: Any = object()


def _run(run: Any) -> CapturedRun:
    if isinstance(run, CapturedRun):
        return run
    if isinstance(run, Capture):
        return run.run()
    if isinstance(run, views.RunView):
        return CapturedRun(run.run_id, run.spans, run.events)
    raise TypeError(f"expected a captured run (cap.run()), a Capture or a views.RunView, not {type(run).__name__}")


def _label(run: CapturedRun) -> str:
    flow = run.summary.get("flow") or "?"
    return f"run {run.id} (flow {flow!r})"


def _path(names: Sequence[str]) -> str:
    return " → ".join(names) if names else "(no nodes)"


def assert_node_sequence(run: Any, expected: Sequence[str], *, include_retries: bool = False) -> None:
    """The run's nodes, in step order, are exactly ``expected``.

    Retry attempts of a node (attempt > 0) are left out unless
    ``include_retries``: a retried ``work`` is still the path plan → work.
    """
    __tracebackhide__ = True
    r = _run(run)
    nodes = [n for n in r.nodes if include_retries or not n.get("attempt")]
    actual = [n["name"] for n in nodes]
    expected = list(expected)
    if actual == expected:
        return
    lines = [
        f"node sequence of {_label(r)} is not the expected path",
        f"  expected: {_path(expected)}",
        f"  actual:   {_path(actual)}",
    ]
    for i, (want, got) in enumerate(zip(expected, actual)):
        if want != got:
            node = nodes[i]
            extra = f", branch {node['branch']!r}" if node.get("branch") else ""
            lines.append(f"  first difference at position {i} (step {node['step']}): "
                         f"expected {want!r}, got {got!r}{extra}")
            break
    else:
        if len(actual) < len(expected):
            lines.append(f"  the run stopped after {len(actual)} node(s); missing: {_path(expected[len(actual):])}")
        else:
            lines.append(f"  unexpected extra node(s) after the path: {_path(actual[len(expected):])}")
    failed = [n for n in nodes if n.get("status") == "error"]
    for n in failed:
        lines.append(f"  node {n['name']!r} (step {n['step']}) failed: {n.get('error')}")
    if r.summary.get("status") == "running":
        lines.append("  note: the run had not finished when it was read (no run span ended yet)")
    raise AssertionError("\n".join(lines))


def _decimal(limit: Any) -> Decimal:
    try:
        return Decimal(str(limit))
    except (InvalidOperation, ValueError):
        raise ValueError(f"cost limit must be a decimal number like '0.01', not {limit!r}") from None


def assert_cost_below(run: Any, limit: Decimal | str | int | float, *, allow_unpriced: bool = False) -> None:
    """The run cost strictly less than ``limit`` USD (a decimal string is best: ``"0.01"``).

    A run with unpriced calls has an unknown cost and fails, unless
    ``allow_unpriced`` (then only the priced part is compared).
    """
    __tracebackhide__ = True
    r = _run(run)
    s = r.summary
    lim = _decimal(limit)
    cost = Decimal(s["cost_usd"])
    unpriced = int(s.get("unpriced_calls", 0))
    if cost < lim and (unpriced == 0 or allow_unpriced):
        return
    lines = []
    if cost >= lim:
        lines.append(f"{_label(r)} cost ${views.usd(cost)}, which is not below the limit of ${views.usd(lim)}")
    else:
        lines.append(f"{_label(r)} cost ${views.usd(cost)} is below ${views.usd(lim)} only for its priced calls: "
                     f"{unpriced} call(s) are unpriced, so the real cost is unknown "
                     "(add the model to the pricing catalog, or pass allow_unpriced=True)")
    by_node = [n for n in s.get("by_node", []) if Decimal(n["cost_usd"]) > 0]
    if by_node:
        lines.append("  by node:  " + ", ".join(f"{n['name']} ${n['cost_usd']}" for n in by_node))
    if s.get("by_model"):
        lines.append("  by model: " + ", ".join(
            f"{m['model'] or '?'} ${m['cost_usd']} ({m['llm_calls']} call(s), {m['input_tokens']} in / "
            f"{m['output_tokens']} out tokens)" for m in s["by_model"]))
    raise AssertionError("\n".join(lines))


def assert_no_retries(run: Any) -> None:
    """No LLM call and no node of the run was retried."""
    __tracebackhide__ = True
    r = _run(run)
    problems = []
    for n in r.nodes:
        if n.get("attempt"):
            problems.append(f"node {n['name']!r} (step {n['step']}) ran again as attempt {n['attempt']}")
        elif n.get("retries"):
            problems.append(f"node {n['name']!r} (step {n['step']}): {n['retries']} retried call(s)")
    node_ids = {n.get("span_id") for n in r.nodes}
    for s in r.spans:
        if s.is_llm and s.retry_count and s.span_id not in node_ids and s.node_step < 0:
            problems.append(f"LLM call {s.name!r} outside any node retried {s.retry_count} time(s)")
    total = int(r.summary.get("retries", 0))
    if not problems and total == 0:
        return
    head = f"{_label(r)} had {total} retr{'y' if total == 1 else 'ies'}"
    errors = sorted({s.error_type for s in r.spans if s.error_type})
    if errors:
        head += f" (errors seen: {', '.join(errors)})"
    raise AssertionError("\n".join([head, *(f"  {p}" for p in problems)]))


def _lookup(state: Any, path: str) -> tuple[Any, str | None]:
    """Value at ``path``; on a miss, a sentence saying where the path broke off."""
    cur = state
    walked: list[str] = []
    for key in split_path(path):
        if isinstance(cur, dict):
            if key not in cur:
                where = ".".join(walked) or "the top level"
                return _MISSING, f"{key!r} is not in {where} (keys there: {sorted(map(str, cur))})"
            cur = cur[key]
        elif isinstance(cur, list):
            try:
                cur = cur[int(key)]
            except (ValueError, IndexError):
                return _MISSING, f"{'.'.join(walked) or 'the state'} is a list of {len(cur)}; no index {key!r}"
        else:
            return _MISSING, f"{'.'.join(walked) or 'the state'} is {cur!r}, which has no {key!r}"
        walked.append(key)
    return cur, None


def assert_state(run: Any, *, at: int, path: str = "", equals: Any = _MISSING) -> None:
    """The flow state after node step ``at`` (-1: the input) has ``equals`` at ``path``
    (dot-separated, ``""`` for the whole state); without ``equals``, only that the path exists."""
    __tracebackhide__ = True
    r = _run(run)
    try:
        state = r.state(at)
    except ValueError as exc:
        raise AssertionError(str(exc)) from None
    node = next((n["name"] for n in r.nodes if n["step"] == at), "input" if at == -1 else None)
    where = f"state of {_label(r)} at step {at}" + (f" (after {node!r})" if node and at >= 0 else "")
    value, miss = _lookup(state, path)
    shown = path or "(whole state)"
    if miss is not None:
        raise AssertionError(f"{where}: path {shown} not found: {miss}")
    if equals is _MISSING or value == equals:
        return
    changed = [n["name"] for n in r.nodes if n["step"] <= at]
    raise AssertionError(
        f"{where}: {shown} differs\n  expected: {equals!r}\n  actual:   {value!r}\n"
        f"  nodes up to this step: {_path(changed)}"
    )
