"""Continuing the user's own flow from a restored state, one way per runtime.

Each resumer gets the app, the recorded run, the fork step and the restored
state, and runs the rest of the flow *through the runtime itself*, so the new
run's spans come from the ordinary instrumentation and everything after the
fork step behaves as in a normal run.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable
from typing import Any

from .errors import ReplayError
from .fidelity import revive
from .source import RecordedRun


def kind_of(app: Any) -> str:
    """``langgraph``, ``pocketflow``, ``penguiflow`` or ``callable`` (a hand-recorded flow's resume hook)."""
    module = type(app).__module__ or ""
    if module.startswith("langgraph") or hasattr(app, "update_state"):
        return "langgraph"
    if module.startswith("pocketflow") or hasattr(app, "start_node"):
        return "pocketflow"
    if module.startswith("penguiflow"):
        return "penguiflow"
    for klass in type(app).__mro__:
        if (klass.__module__ or "").startswith("pocketflow"):
            return "pocketflow"
        if (klass.__module__ or "").startswith("langgraph"):
            return "langgraph"
        if (klass.__module__ or "").startswith("penguiflow"):
            return "penguiflow"
    if callable(app):
        return "callable"
    raise ReplayError(
        f"cannot resume {type(app).__qualname__}: pass a compiled LangGraph graph (or a StateGraph), a "
        "PocketFlow Flow, a PenguiFlow flow, or a function resume(state, from_step, next_node) for a hand-recorded flow"
    )


# --- LangGraph -----------------------------------------------------------------------------


def _graph_names(graph: Any) -> set[str]:
    names = set(getattr(graph, "nodes", {}) or {})
    try:
        for _, sub in graph.get_subgraphs(recurse=True):
            names |= set(getattr(sub, "nodes", {}) or {})
    except Exception:
        pass
    return names


def langgraph(app: Any, run: RecordedRun, step: int, state: Any) -> tuple[Any, dict[str, Any]]:
    """Seed a fresh thread with the state after ``step`` as if its node wrote it, then continue.

    LangGraph's own fork: ``update_state(config, values, as_node=node)`` writes a
    checkpoint through the graph's reducers and its edges out of ``node``
    (conditional ones included), and ``invoke(None, config)`` runs what follows.
    A graph compiled without a checkpointer gets an in-memory one for the replay.
    """
    graph = app.compile() if not hasattr(app, "update_state") and hasattr(app, "compile") else app
    names = _graph_names(graph)
    missing = [n for n in run.node_names() if n not in names]
    if missing:
        raise ReplayError(
            f"this graph has no node named {', '.join(repr(n) for n in missing)} (run {run.run_id!r} ran "
            f"{', '.join(run.node_names())}; the graph has {', '.join(sorted(n for n in names if not n.startswith('__')))}): "
            "pass the graph the run was recorded with"
        )
    if getattr(graph, "checkpointer", None) in (None, False):
        from langgraph.checkpoint.memory import InMemorySaver

        graph = graph.copy(update={"checkpointer": InMemorySaver()})
    node = run.node_at(step)
    assert node is not None
    top = set(getattr(graph, "nodes", {}) or {})
    if node["name"] not in top:
        can = [f"{n['step']} ({n['name']})" for n in run.nodes if n["name"] in top]
        raise ReplayError(
            f"step {step} ({node['name']!r}) ran inside a subgraph: a LangGraph fork restarts after a node of the "
            f"top graph; fork from one of the steps {', '.join(can)}"
        )
    config: dict[str, Any] = {
        "configurable": {"thread_id": f"flowscope-fork-{run.run_id}-{step}-{uuid.uuid4().hex[:8]}"},
        "run_name": run.summary.get("flow") or getattr(graph, "name", None) or "LangGraph",
    }
    values = revive(state)
    graph.update_state(config, values, as_node=node["name"])
    output = graph.invoke(None, config)
    return output, {"graph": graph, "config": config}


# --- PocketFlow ----------------------------------------------------------------------------


def _pf_name(node: Any) -> str:
    name = getattr(node, "name", None)
    return name if isinstance(name, str) and name else type(node).__name__


def pocketflow(app: Any, run: RecordedRun, step: int, state: Any) -> tuple[Any, dict[str, Any]]:
    """The shared store after ``step``, and the node the recorded path took next, run as a flow.

    The recorded path is walked through the app's own graph (``successors``)
    from its start node, by node name and recorded branch, so a graph that no
    longer has the recorded shape is refused instead of resumed somewhere else.
    """
    if not isinstance(state, dict):
        raise ReplayError(f"the shared store of run {run.run_id!r} at step {step} is not a dict: cannot resume")
    current = getattr(app, "start_node", None)
    nodes = sorted(run.nodes, key=lambda n: n["step"])
    for recorded in (n for n in nodes if n["step"] <= step):
        if current is None or _pf_name(current) != recorded["name"]:
            found = "the end of the flow" if current is None else repr(_pf_name(current))
            raise ReplayError(
                f"this flow has no node named {recorded['name']!r} at step {recorded['step']} of the recorded "
                f"path (it reaches {found} there): pass the flow run {run.run_id!r} was recorded with"
            )
        successors = getattr(current, "successors", {}) or {}
        branch = recorded.get("branch")
        later = next((n for n in nodes if n["step"] == recorded["step"] + 1), None)
        nxt = successors.get(branch) if branch else None
        if nxt is None and later is not None:
            nxt = next((s for s in successors.values() if _pf_name(s) == later["name"]), None)
        if nxt is None:
            nxt = successors.get("default")
        current = nxt
    if current is None:
        raise ReplayError(f"nothing runs after step {step} of run {run.run_id!r}: it was the flow's last node")
    fork = copy.copy(app)
    fork.start_node = current
    shared = revive(state)
    output = fork.run(shared)
    return output, {"shared": shared, "next_node": _pf_name(current)}


# --- PenguiFlow ----------------------------------------------------------------------------


def _edges_sent_at(run: RecordedRun, step: int, source: str) -> list[str]:
    """The edges (``"source->target"``) the node at ``step`` sent a message on, as recorded at that step."""
    changes = dict(run.state_changes(step))
    return [path for op, path, _ in changes.get(step, []) if op == "set" and path.startswith(f"{source}->")]


def penguiflow(app: Any, run: RecordedRun, step: int, state: Any) -> tuple[Any, dict[str, Any]]:
    """Re-inject the message(s) the node at ``step`` sent, on the same edge(s), into a running flow.

    The message goes out from the node's own context (``Context.emit(msg, to=target)``),
    as if the node had just sent it, under a fresh trace id: the downstream nodes
    handle it as in a normal run, and the fork's first result is fetched.
    """
    from penguiflow.types import Message

    node = run.node_at(step)
    assert node is not None
    edges = _edges_sent_at(run, step, node["name"])
    if not isinstance(state, dict) or not edges:
        raise ReplayError(
            f"run {run.run_id!r} recorded no message sent by {node['name']!r} at step {step}: nothing to re-inject "
            "(pick the step of a node that passed a message on)"
        )
    by_name = {getattr(n, "name", None): n for n in getattr(app, "_nodes", ())}
    trace_id = uuid.uuid4().hex
    sends = []
    for edge in edges:
        target_name = edge.split("->", 1)[1]
        source, target = by_name.get(node["name"]), by_name.get(target_name)
        if source is None or target is None:
            missing = node["name"] if source is None else target_name
            raise ReplayError(
                f"this flow has no node named {missing!r} (run {run.run_id!r} sent a message on {edge!r}; the flow "
                f"has {', '.join(sorted(str(n) for n in by_name))}): pass the flow the run was recorded with"
            )
        recorded = revive(state[edge])
        message = Message.model_validate({**recorded, "trace_id": trace_id}) if isinstance(recorded, dict) \
            else recorded
        sends.append((source, target, message))

    async def go() -> Any:
        app.run()
        try:
            for source, target, message in sends:
                await app._contexts[source].emit(message, to=target)
            return await app.fetch()
        finally:
            await app.stop()

    return asyncio.run(go()), {"trace_id": trace_id, "edges": edges}


# --- hand-recorded flows -------------------------------------------------------------------

ResumeHook = Callable[[Any, int, "str | None"], Any]


def callable_hook(app: Any, run: RecordedRun, step: int, state: Any) -> tuple[Any, dict[str, Any]]:
    """A hand-recorded flow: the user's ``resume(state, from_step, next_node)`` continues it.

    It is called while the fork is active, so the first ``flowscope.run`` it
    opens is the fork (steps from ``from_step + 1``, state from ``state``).
    ``next_node`` is the name of the node the original run ran after the step
    (None if it was the last).
    """
    later = next((n["name"] for n in sorted(run.nodes, key=lambda n: n["step"]) if n["step"] > step), None)
    return app(revive(state), step, later), {"next_node": later}


RESUMERS: dict[str, Callable[[Any, RecordedRun, int, Any], tuple[Any, dict[str, Any]]]] = {
    "langgraph": langgraph,
    "pocketflow": pocketflow,
    "penguiflow": penguiflow,
    "callable": callable_hook,
}
