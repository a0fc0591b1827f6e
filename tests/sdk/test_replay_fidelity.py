"""What a replay can hand back to a flow: the state fidelity table of docs/usage.md, checked.

Each value goes through the same encoding a state event uses (``encode_value``)
and back through :func:`flowscope.replays.fidelity.revive` / ``restore``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from pydantic import BaseModel

from flowscope import ReplayError
from flowscope.core.state import encode_value
from flowscope.replays.fidelity import lost_values, parse_assignment, restore, revive


def recorded(value: Any, max_bytes: int = 10_000) -> Any:
    text, _ = encode_value("", value, max_bytes=max_bytes)
    return json.loads(text)


class Order(BaseModel):
    id: int
    total: Decimal


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_json_types_round_trip_as_they_were() -> None:
    value = {"s": "x", "i": 1, "f": 1.5, "b": True, "n": None, "l": [1, "a"], "d": {"k": [{}]}}
    assert revive(recorded(value)) == value


def test_values_with_a_text_form_come_back_as_that_text() -> None:
    when = dt.datetime(2026, 12, 3, 4, 5, 6, tzinfo=dt.timezone.utc)
    uid = uuid.UUID(int=7)
    assert revive(recorded({"d": Decimal("0.10"), "t": when, "u": uid})) == {
        "d": "0.10", "t": "2026-12-03T04:05:06+00:00", "u": str(uid)}


def test_pydantic_models_and_dataclasses_come_back_as_dicts() -> None:
    assert revive(recorded({"o": Order(id=1, total=Decimal("2.5")), "p": Point(1, 2)})) == {
        "o": {"id": 1, "total": "2.5"}, "p": {"x": 1, "y": 2}}


def test_langchain_messages_come_back_as_messages() -> None:
    msgs = [HumanMessage("hi", id="1"), AIMessage("", id="2", tool_calls=[{"name": "f", "args": {"a": 1}, "id": "c"}]),
            ToolMessage("42", tool_call_id="c", id="3")]
    back = revive(recorded({"messages": msgs}))["messages"]
    assert back == msgs and [type(m) for m in back] == [HumanMessage, AIMessage, ToolMessage]


def test_represented_and_truncated_values_are_refused_by_path_unless_supplied() -> None:
    state = recorded({"conn": object(), "blob": b"\x00\x01", "notes": ["x" * 100], "ok": 1})
    big = recorded({"doc": "y" * 500}, max_bytes=100)
    assert [p for p, _ in lost_values(state)] == ["conn", "blob"]
    assert [p for p, _ in lost_values({"a": big})] == ["a"]
    with pytest.raises(ReplayError, match=r"conn: only represented \(builtins.object\).*blob: only represented"):
        restore(state, None, run_id="r", step=2)
    out = restore(state, {"conn": "dsn://x", "blob": "AAE="}, run_id="r", step=2)
    assert out["conn"] == "dsn://x" and out["ok"] == 1
    # an override of a containing path covers what is inside it
    assert restore({"db": {"conn": state["conn"]}}, {"db": {}}, run_id="r", step=0) == {"db": {}}


def test_set_assignments_parse_json_and_fall_back_to_text() -> None:
    assert parse_assignment("plan.budget=12") == ("plan.budget", 12)
    assert parse_assignment('user={"id": 7}') == ("user", {"id": 7})
    assert parse_assignment("note=hello") == ("note", "hello")
    with pytest.raises(ReplayError, match="PATH=JSON"):
        parse_assignment("nothing")
