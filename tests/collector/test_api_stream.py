"""Live stream: a real SSE client connects to a run in progress, gets its history, then follows it."""

from __future__ import annotations

import json
import threading
from decimal import Decimal

import httpx
import openai

import flowscope
from flowscope.testing import Reply


def sse_events(response: httpx.Response):
    event, data = None, []
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and event:
            yield event, json.loads("\n".join(data))
            event, data = None, []


def test_late_client_gets_history_then_live_events(traced, fake_provider) -> None:
    fake_provider.script(Reply(text="a", input_tokens=1000, output_tokens=100, model="gpt-4o-mini-2024-07-18"),
                         Reply(text="b", input_tokens=3000, output_tokens=300, model="gpt-4o-mini-2024-07-18"))
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")
    first_done, go_on = threading.Event(), threading.Event()
    box: dict[str, str] = {}
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with flowscope.run("live-flow", input={"n": 0}) as run:
                box["id"] = run.id
                with flowscope.node("first"):
                    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "1"}])
                    flowscope.record_state("n", 1)
                flowscope.force_flush()
                first_done.set()
                assert go_on.wait(60), "the test never let the run go on"
                with flowscope.node("second", type="router"):
                    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "2"}])
                    flowscope.force_flush()  # the LLM call is visible while the node still runs
                    flowscope.record_state("n", 2)
            flowscope.force_flush()
        except BaseException as exc:  # surfaced in the test thread
            errors.append(exc)
            first_done.set()

    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert first_done.wait(60) and not errors, errors
        run_id = box["id"]
        traced.wait_for_run(run_id, spans=2)  # node "first" and its LLM call are stored
        seen: list[tuple[str, dict]] = []
        with httpx.stream("GET", f"{traced.url}/api/v1/runs/{run_id}/stream", params={"poll": 0.1},
                          timeout=60) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            for event, data in sse_events(r):
                seen.append((event, data))
                if event == "node_end" and data["step"] == 0:
                    go_on.set()  # history delivered; now let the run continue live
                if event == "summary":
                    break
    finally:
        go_on.set()
        worker.join(60)
    assert not errors, errors

    kinds = [e for e, _ in seen]
    assert kinds[0] == "node_start" and kinds[-1] == "summary"
    first_end = kinds.index("node_end")
    assert {"llm_call", "state"} <= set(kinds[:first_end + 1])  # history came first
    assert seen[first_end][1]["name"] == "first"
    later = [(e, d) for e, d in seen[first_end + 1:]]
    assert ("node_start", 1) in [(e, d.get("step")) for e, d in later]
    # the live start (known from the node's LLM call) says the node's type, as the replay does
    live_start = next(d for e, d in later if e == "node_start" and d["step"] == 1)
    with httpx.stream("GET", f"{traced.url}/api/v1/runs/{run_id}/stream", params={"poll": 0.1}, timeout=30) as r:
        replayed = [d for e, d in sse_events(r) if e == "node_start"]
    assert [(d["name"], d["type"]) for d in replayed] == [("first", "task"), ("second", "router")]
    assert live_start["type"] == "router"
    llm = [d for e, d in seen if e == "llm_call"]
    assert [c["input_tokens"] for c in llm] == [1000, 3000] and [c["step"] for c in llm] == [0, 1]
    states = [d for e, d in seen if e == "state"]
    # the input snapshot rides on the run's root span, so it arrives only when the run ends
    assert (states[0]["path"], states[0]["value"]) == ("n", 1)
    assert [(s["path"], s["value"]) for s in sorted(states, key=lambda s: s["seq"])] == [
        ("", {"n": 0}), ("n", 1), ("n", 2)]
    summary = seen[-1][1]
    assert summary["status"] == "ok" and summary["run_id"] == run_id
    assert Decimal(summary["cost_usd"]) == sum(Decimal(c["cost_usd"]) for c in llm) > 0
    assert len({d["key"] for _, d in seen}) == len(seen)  # nothing sent twice


def test_stream_of_finished_run_replays_and_closes(traced) -> None:
    with flowscope.run("short") as run, flowscope.node("only"):
        flowscope.record_state("x", 1)
    flowscope.force_flush()
    traced.wait_for_run(run.id, spans=2)
    with httpx.stream("GET", f"{traced.url}/api/v1/runs/{run.id}/stream", params={"poll": 0.1}, timeout=30) as r:
        kinds = [e for e, _ in sse_events(r)]  # ends by itself after the summary
    assert kinds == ["node_start", "state", "node_end", "summary"]


def test_stream_unknown_run_is_404(traced) -> None:
    r = httpx.get(f"{traced.url}/api/v1/runs/{'e' * 32}/stream", params={"wait": 0}, timeout=30)
    assert r.status_code == 404 and "no run" in r.json()["error"]
