"""The run to replay, as the collector serves it: nodes, spans and state up to the fork step.

Everything is read through the public API with :class:`flowscope.Client`, so a
replay sees exactly what the API key may see: a run of another project is
simply not there (the collector scopes every read by the key's project).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..client import Client, FlowscopeError
from ..core import semconv
from ..core.state import diff_ops
from .errors import ReplayError


@dataclass
class RecordedRun:
    """One stored run: its summary, node sequence, flat spans, and its state at steps -1..k."""

    run_id: str
    summary: dict[str, Any]
    nodes: list[dict[str, Any]]
    spans: list[dict[str, Any]]
    states: dict[int, Any] = field(default_factory=dict)

    @property
    def last_step(self) -> int:
        return max([n["step"] for n in self.nodes] + [-1])

    def node_at(self, step: int) -> dict[str, Any] | None:
        return next((n for n in self.nodes if n["step"] == step), None)

    def node_names(self) -> list[str]:
        return list(dict.fromkeys(n["name"] for n in self.nodes))

    def state_changes(self, upto: int) -> list[tuple[int, list[tuple[str, str, Any]]]]:
        """For each step -1..``upto``, the events that turn the state before it into the state after it."""
        out: list[tuple[int, list[tuple[str, str, Any]]]] = []
        before: Any = None
        for step in range(-1, upto + 1):
            after = self.states.get(step)
            if step == -1:
                ops = [("snapshot", "", after)] if after not in (None, {}) else []
            else:
                ops = diff_ops(before if before is not None else {}, after if after is not None else {})
            if ops:
                out.append((step, ops))
            before = after
        return out


def _flatten(roots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    stack = list(reversed(roots))
    while stack:
        span = stack.pop()
        out.append(span)
        stack.extend(reversed(span.get("children") or []))
    return out


def fetch(client: Client, run_id: str, from_step: int) -> RecordedRun:
    """The run and its state at steps -1..``from_step``; ReplayError for an unknown run or a bad step."""
    try:
        summary = client.run(run_id)
    except FlowscopeError as exc:
        if exc.status == 404:
            raise ReplayError(
                f"no run {run_id!r} at {client.url} in the project of this API key: check the id "
                "(`flowscope runs list`), and that FLOWSCOPE_API_KEY belongs to the project the run was "
                "recorded in (a run of another project cannot be replayed with this key)"
            ) from None
        raise ReplayError(f"could not read run {run_id!r} from {client.url}: {exc.message}") from None
    nodes = list(client.nodes(run_id))
    spans = _flatten(client.spans(run_id).get("roots") or [])
    run = RecordedRun(run_id, summary, nodes, spans)
    if summary.get("status") == "running":
        raise ReplayError(f"run {run_id!r} is still running (or its root span has not arrived): replay it once it ended")
    if not nodes:
        raise ReplayError(f"run {run_id!r} has no node steps to replay from")
    if from_step < 0 or from_step > run.last_step:
        raise ReplayError(
            f"from_step={from_step} is out of range: run {run_id!r} has steps 0 to {run.last_step} "
            f"({', '.join(str(n['step']) + ':' + str(n['name']) for n in nodes)}); the replay restarts after that step"
        )
    for step in range(-1, from_step + 1):
        try:
            run.states[step] = client.state_at(run_id, step)["state"]
        except FlowscopeError as exc:
            raise ReplayError(f"could not read the state of run {run_id!r} at step {step}: {exc.message}") from None
    return run


def llm_spans(run: RecordedRun) -> list[dict[str, Any]]:
    """The run's LLM spans in the order they started."""
    spans = [s for s in run.spans if (s.get("attributes") or {}).get(semconv.SPAN_KIND) == semconv.KIND_LLM]
    return sorted(spans, key=lambda s: s.get("start") or "")
