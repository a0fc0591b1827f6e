"""``flowscope.replay``: rerun a stored run from a step, with its recorded state and LLM answers.

    result = flowscope.replay(run_id, graph, from_step=3)           # recorded answers, $0 where unchanged
    result = flowscope.replay(run_id, graph, from_step=3, llm="live", state={"retries": 0})

The collector's run (read with :class:`flowscope.Client`) gives the state
after step ``k`` and the LLM calls made after it; the state (with ``state=``
overrides) is handed to the user's own flow, which continues from the node
that ran after step ``k`` (:mod:`.resume`: LangGraph through its checkpointer,
PocketFlow from the next node, a hand-recorded flow through its resume hook).
The new run is an ordinary run that says it is a fork
(``flowscope.run.forked_from`` / ``flowscope.run.forked_at_step``) and shows
the parent's steps 0..k as its own (``flowscope.replay.copied``), so its state
at those steps equals the parent's and a comparison shows where they part.

LLM answers (``llm=``): ``"recorded"`` (default) answers a request identical
to one the parent made after step k from the recording, at $0, marked
``flowscope.replay.recorded``, and sends any other request live, marked
``flowscope.replay.live``; ``"recorded-only"`` refuses to send those;
``"live"`` sends everything. Recorded answers need content capture on the
parent run; ``ReplayResult.unreplayable`` lists the calls that lack it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import _replaying
from ..client import Client
from ..core.state import diff_ops, to_jsonable
from . import answers, fidelity, resume, source, wire
from .errors import ReplayError

__all__ = ["ReplayError", "ReplayResult", "replay"]

logger = logging.getLogger("flowscope")


@dataclass
class ReplayResult:
    """What a replay did: the new run, what the flow returned, and how its LLM calls were answered."""

    run_id: str | None  # the fork (None if the flow opened no run: it was not instrumented)
    parent_run_id: str
    from_step: int
    runtime: str
    output: Any
    recorded_calls: int = 0  # answered from the parent's recording, at $0
    live_calls: int = 0  # sent to the provider
    unreplayable: list[answers.Unreplayable] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # runtime handles (LangGraph: graph, config)


def replay(
    run_id: str,
    app: Any,
    *,
    from_step: int,
    state: Mapping[str, Any] | None = None,
    llm: str = "recorded",
    client: Client | None = None,
) -> ReplayResult:
    """Continue ``app`` from the state run ``run_id`` had after step ``from_step``.

    ``state`` maps state paths (``"plan.budget"``; ``""`` is the whole state)
    to values put over the recorded state: a changed input, or a value the
    recording could not keep (see :mod:`.fidelity`). ``client`` reads the
    collector (default: ``FLOWSCOPE_URL`` / ``FLOWSCOPE_API_KEY``). The flow
    runs in this process, instrumented as usual: call ``flowscope.init()`` and
    instrument its runtime and LLM clients first. Raises :class:`ReplayError`
    with what to do when the run, the step, the app or the state do not fit.
    """
    if llm not in _replaying.LLM_MODES:
        raise ReplayError(f"llm must be one of {', '.join(_replaying.LLM_MODES)}, not {llm!r}")
    kind = resume.kind_of(app)
    own_client = client is None
    client = client or Client()
    try:
        run = source.fetch(client, run_id, from_step)
    finally:
        if own_client:
            client.close()
    restored = fidelity.restore(run.states.get(from_step), state, run_id=run_id, step=from_step)
    recorded, missing = answers.recorded_answers(run, from_step)
    if llm != "live" and missing:
        logger.warning("flowscope: %d call(s) of run %s after step %d cannot be answered from the recording "
                       "and will %s: %s", len(missing), run_id, from_step,
                       "fail" if llm == "recorded-only" else "go to the provider",
                       "; ".join(str(m) for m in missing))
    fork = _replaying.Fork(
        parent_run_id=run_id,
        at_step=from_step,
        nodes=[_replaying.CopiedNode(n["step"], n["name"], n.get("type") or "task", n.get("branch"))
               for n in sorted(run.nodes, key=lambda n: n["step"]) if n["step"] <= from_step],
        states=_with_overrides(run, from_step, restored),
    )
    book = _replaying.AnswerBook(llm, recorded)
    wire.install()
    fork_token = _replaying.FORK.set(fork)
    book_token = _replaying.BOOK.set(book)
    try:
        output, details = resume.RESUMERS[kind](app, run, from_step, restored)
    except Exception as exc:
        # the fork failed (the flow's own error, or a request refused under recorded-only):
        # say which run recorded it, since there is no result to carry the id
        if fork.run_id is not None:
            try:
                exc.flowscope_fork_run_id = fork.run_id  # type: ignore[attr-defined]
                note = getattr(exc, "add_note", None)  # Python 3.11+
                if note is not None:
                    note(f"flowscope: the fork of run {run_id} after step {from_step} is run {fork.run_id}")
            except Exception:
                pass
        raise
    finally:
        _replaying.BOOK.reset(book_token)
        _replaying.FORK.reset(fork_token)
    if fork.run_id is None:
        logger.warning("flowscope: the replay of run %s opened no run: is the flow's runtime instrumented "
                       "(flowscope.init() before building the app)?", run_id)
    return ReplayResult(run_id=fork.run_id, parent_run_id=run_id, from_step=from_step, runtime=kind, output=output,
                        recorded_calls=book.recorded, live_calls=book.live, unreplayable=missing, details=details)


def _with_overrides(run: source.RecordedRun, step: int, restored: Any) -> list[tuple[int, list[tuple[str, str, Any]]]]:
    """The parent's state changes up to ``step``, the last one landing on the restored (overridden) state."""
    changes = run.state_changes(step - 1)
    before = run.states.get(step - 1)
    ops = diff_ops(before if before is not None else {}, to_jsonable(restored))
    if ops:
        changes.append((step, ops))
    return changes
