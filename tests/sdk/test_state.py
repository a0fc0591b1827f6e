"""State capture for time travel: encoding, size limits, redaction, change capture and folding."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flowscope
from flowscope.core import semconv
from flowscope.core.state import (
    REPR_KEY,
    TRUNCATED_KEY,
    StateTracker,
    apply_event,
    diff_ops,
    encode_value,
    redact_keys,
    to_jsonable,
)
from tests._runtime_kit import MemoryKit, attrs, nodes


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque handle>"


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_values_without_a_json_form_are_represented_not_dropped() -> None:
    value = {
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "money": decimal.Decimal("0.00066"),
        "id": uuid.UUID(int=1),
        "tags": {"b", "a"},
        "point": Point(1, 2),
        "blob": b"\x00\x01",
        "nan": float("nan"),
        "handle": Opaque(),
        "broken": BadRepr(),
        7: "int key",
    }
    out = to_jsonable(value)
    json.dumps(out)  # encodable
    assert out["when"] == "2026-01-02T03:04:05+00:00"
    assert out["money"] == "0.00066"
    assert out["tags"] == ["a", "b"]
    assert out["point"] == {"x": 1, "y": 2}
    assert out["blob"][REPR_KEY] == "bytes" and out["blob"]["len"] == 2
    assert out["nan"] == "nan"
    assert out["handle"] == {REPR_KEY: "<Opaque handle>", "type": f"{__name__}.Opaque"}
    assert out["broken"][REPR_KEY].startswith("<unrepresentable")
    assert out["7"] == "int key"


def test_oversized_values_are_cut_with_a_marker() -> None:
    text, truncated = encode_value("doc", {"body": "x" * 5000}, max_bytes=1000)
    assert truncated
    marker = json.loads(text)
    assert marker[TRUNCATED_KEY] is True
    assert marker["bytes"] > 5000
    assert marker["preview"].startswith('{"body":"xxx')
    assert len(text.encode()) < 1000
    small, cut = encode_value("doc", {"body": "short"}, max_bytes=1000)
    assert (json.loads(small), cut) == ({"body": "short"}, False)


def test_redact_keys_masks_at_any_depth_and_path() -> None:
    redact = redact_keys("ssn", "api_key")
    assert redact("user.ssn", "123-45-6789") == "[REDACTED]"
    assert redact("user", {"name": "Ann", "ssn": "1", "keys": [{"api_key": "sk"}]}) == {
        "name": "Ann", "ssn": "[REDACTED]", "keys": [{"api_key": "[REDACTED]"}]}
    assert redact("other", 5) == 5


def test_redaction_and_size_limit_apply_before_spans_leave_the_process() -> None:
    kit = MemoryKit(redact=redact_keys("password"), state_max_bytes=2048)
    try:
        with flowscope.run("signup", input={"user": "ann", "password": "hunter2"}) as run, flowscope.node("store"):
            flowscope.record_state("account", {"user": "ann", "password": "hunter2"})
            flowscope.record_state("avatar", "A" * 10_000)
        raw = json.dumps([[dict(e.attributes) for e in s.events] for s in kit.run_spans(run.id)])
        assert "hunter2" not in raw
        view = kit.view(run.id)
        assert view.state(-1) == {"user": "ann", "password": "[REDACTED]"}
        state = view.state(0)
        assert state["account"] == {"user": "ann", "password": "[REDACTED]"}
        assert state["avatar"][TRUNCATED_KEY] is True
        assert any(e.truncated for e in view.events)
    finally:
        MemoryKit()  # back to no redaction and the default size limit


def test_a_broken_redact_hook_never_breaks_the_app(caplog: pytest.LogCaptureFixture) -> None:
    def bad(path: str, value: Any) -> Any:
        raise RuntimeError("redactor bug")

    kit = MemoryKit(redact=bad)
    try:
        with flowscope.run("r", input={"a": 1}) as run, flowscope.node("n"):
            flowscope.record_state("x", 1)  # must not raise
        assert kit.view(run.id).events == []
        assert "could not record state" in caplog.text
    finally:
        MemoryKit()


# --- change capture ---------------------------------------------------------------

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text("ab.\\c", max_size=3), inner,
                                                                          max_size=4)),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(before=st.dictionaries(st.text("ab.c", max_size=3), json_value, max_size=4),
       after=st.dictionaries(st.text("ab.c", max_size=3), json_value, max_size=4))
def test_diff_ops_fold_back_to_the_new_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    state = json.loads(json.dumps(before))
    for op, path, value in diff_ops(before, after):
        state = apply_event(state, op, path, value)
    assert state == after


def test_diff_ops_send_only_what_changed() -> None:
    before = {"messages": [{"role": "user", "content": "hi"}], "plan": {"steps": 2, "done": False}, "tmp": 1}
    after = {"messages": [{"role": "user", "content": "hi"}, {"role": "ai", "content": "yo"}],
             "plan": {"steps": 2, "done": True}}
    assert diff_ops(before, after) == [
        ("delete", "tmp", None),
        ("set", "messages.1", {"role": "ai", "content": "yo"}),
        ("set", "plan.done", True),
    ]


def test_tracker_is_immune_to_in_place_mutation() -> None:
    shared: dict[str, Any] = {"items": [1]}
    tracker = StateTracker(shared)
    shared["items"].append(2)
    assert tracker.changes(shared) == [("set", "items.1", 2)]
    assert tracker.changes(shared) == []


# --- hand-made runtimes ----------------------------------------------------------


def test_flow_router_branch_and_record_state(fake_provider) -> None:
    kit = MemoryKit()

    @flowscope.node(type="router")
    def route(question: str) -> str:
        branch = "deep" if "why" in question else "shallow"
        flowscope.set_branch(branch)
        flowscope.record_state("route", branch)
        return branch

    @flowscope.node
    def deep(question: str) -> str:
        flowscope.record_state("answer", {"text": "because", "sources": [1, 2]})
        return "because"

    @flowscope.node
    def cleanup() -> None:
        flowscope.record_state("route", op="delete")
        flowscope.record_state("answer", {"sources": None, "final": True}, op="patch")

    @flowscope.flow
    def qa(question: str) -> str:
        flowscope.record_state("question", question)
        out = deep(question) if route(question) == "deep" else "meh"
        cleanup()
        return out

    assert qa("why is the sky blue") == "because"
    (run_span,) = kit.runs("qa")
    run_id = attrs(run_span)[semconv.RUN_ID]
    ns = nodes(kit.run_spans(run_id))
    assert [(attrs(n)[semconv.NODE_NAME], attrs(n)[semconv.NODE_TYPE]) for n in ns] == [
        ("route", "router"), ("deep", "task"), ("cleanup", "task")]
    assert attrs(ns[0])[semconv.ROUTER_BRANCH] == "deep"
    view = kit.view(run_id)
    assert view.state(-1) == {"question": "why is the sky blue"}
    assert view.state(0) == {"question": "why is the sky blue", "route": "deep"}
    assert view.state(1)["answer"] == {"text": "because", "sources": [1, 2]}
    assert view.state(2) == {"question": "why is the sky blue",
                             "answer": {"text": "because", "final": True}}
