"""What a replay in progress tells the run machinery and the LLM instrumentation.

``flowscope.replay`` (:mod:`flowscope.replays`) restarts a stored run from a
step inside the user's own flow, so the spans of the new run are made by the
ordinary instrumentation, not by the replay. This module is the narrow channel
between the two: context variables the replay sets for the duration of the
resumed flow, and that :func:`flowscope.runtime.open_run` (the fork: which run
it continues, the parent's steps 0..k) and the LLM call path
(:mod:`flowscope.instrumentation._call`: the parent's recorded answers) read.
It holds data only and imports nothing of the SDK runtime, so both sides can
import it without an import cycle.

Context variables, not globals: they follow the replayed flow into the
threads and tasks its runtime spawns (LangGraph copies the context into its
workers) and leave unrelated work in the same process alone.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

LLM_MODES = ("recorded", "live", "recorded-only")


@dataclass(frozen=True)
class CopiedNode:
    """One of the parent run's steps 0..k, shown again in the fork (it did not run again)."""

    step: int
    name: str
    type: str = "task"
    branch: str | None = None


@dataclass
class Fork:
    """The run a replay continues: the parent, the step it restarts after, and its prefix.

    ``states`` holds, for each step -1..k, the ``(op, path, value)`` events that
    turn the parent's state at the step before into its state at that step, so
    the fork's states 0..k equal the parent's exactly.
    """

    parent_run_id: str
    at_step: int
    nodes: list[CopiedNode] = field(default_factory=list)
    states: list[tuple[int, list[tuple[str, str, Any]]]] = field(default_factory=list)
    run_id: str | None = None  # the run that claimed the fork (the first run opened under it)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def claim(self, run_id: str) -> bool:
        """True for the first run opened while the fork is active: that run is the fork."""
        with self._lock:
            if self.run_id is not None:
                return False
            self.run_id = run_id
            return True


@dataclass(frozen=True)
class RecordedAnswer:
    """A response the parent run got, as its LLM span recorded it (content capture on)."""

    provider: str
    key: str
    step: int
    span_name: str
    text: str | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None


class ReplayError(Exception):
    """A run cannot be replayed as asked; the message says why and what to do.

    Defined here, below the LLM call path, so that a refused request
    (:class:`RecordedOnlyMiss`) is one too.
    """


class RecordedOnlyMiss(ReplayError):
    """``llm="recorded-only"`` and the flow made a request the parent run never made."""


class AnswerBook:
    """The parent's recorded answers by request key, each served once, in the order made.

    The same request made twice (a loop, a retry in the flow's own code) gets
    the parent's answers in the order the parent got them; once they are used
    up it goes live (or fails, under ``recorded-only``).
    """

    def __init__(self, mode: str, answers: list[RecordedAnswer]) -> None:
        if mode not in LLM_MODES:
            raise ValueError(f"llm must be one of {', '.join(LLM_MODES)}, not {mode!r}")
        self.mode = mode
        self._by_key: dict[str, deque[RecordedAnswer]] = {}
        for answer in answers:
            self._by_key.setdefault(answer.key, deque()).append(answer)
        self._lock = threading.Lock()
        self.recorded = 0  # requests answered from the recording
        self.live = 0  # requests sent to the provider

    def take(self, key: str | None) -> RecordedAnswer | None:
        """The next recorded answer for ``key``; None: send it live (raises under ``recorded-only``)."""
        with self._lock:
            if self.mode != "live" and key is not None:
                queue = self._by_key.get(key)
                if queue:
                    self.recorded += 1
                    return queue.popleft()
            if self.mode == "recorded-only":
                raise RecordedOnlyMiss(
                    "llm='recorded-only': this request differs from every request the original run made "
                    "after the fork step (or their recorded answers are used up), so it was not sent; "
                    "use llm='recorded' to send such requests to the provider"
                )
            self.live += 1
            return None

    def live_reason(self) -> str:
        return "llm='live'" if self.mode == "live" else "no recorded request matches"


FORK: ContextVar[Fork | None] = ContextVar("flowscope.replay.fork", default=None)
BOOK: ContextVar[AnswerBook | None] = ContextVar("flowscope.replay.book", default=None)
# the answer the next HTTP request of this context gets instead of going out
PENDING: ContextVar[RecordedAnswer | None] = ContextVar("flowscope.replay.pending", default=None)
