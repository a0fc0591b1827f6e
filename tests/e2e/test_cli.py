"""The ``flowscope`` command through its installed entry point, against the real collector."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

import flowscope


def flowscope_cmd(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("flowscope", path=os.path.dirname(sys.executable)) or shutil.which("flowscope")
    assert exe, "the flowscope console script is not installed"
    return subprocess.run([exe, *args, "--url", url], capture_output=True, text=True, timeout=120)


@pytest.fixture()
def run_id(traced) -> tuple[str, str]:
    flow = f"cli-flow-{uuid.uuid4().hex[:6]}"
    with flowscope.run(flow, input={"k": 0}) as run:
        with flowscope.node("one"):
            flowscope.record_state("k", 1)
        with flowscope.node("two", type="router"):
            flowscope.set_branch("left")
            flowscope.record_state("k", 2)
    flowscope.force_flush()
    traced.wait_for_run(run.id, spans=3)
    return flow, run.id


def test_runs_list_show_state_graph(traced, run_id) -> None:
    flow, rid = run_id
    r = flowscope_cmd("runs", "list", "--flow", flow, url=traced.url)
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()[:2]
    assert header.split()[:4] == ["RUN", "FLOW", "SERVICE", "STATUS"] and rid in row and "ok" in row
    r = flowscope_cmd("runs", "list", "--flow", flow, "--json", url=traced.url)
    assert [x["run_id"] for x in json.loads(r.stdout)["runs"]] == [rid]

    r = flowscope_cmd("runs", "show", rid, url=traced.url)
    assert r.returncode == 0, r.stderr
    assert f"run {rid}" in r.stdout and "STEP" in r.stdout and "left" in r.stdout
    shown = json.loads(flowscope_cmd("runs", "show", rid, "--json", url=traced.url).stdout)
    assert shown["flow"] == flow and [n["name"] for n in shown["nodes"]] == ["one", "two"]

    r = flowscope_cmd("runs", "state", rid, "--at", "0", url=traced.url)
    assert json.loads(r.stdout) == {"k": 1}
    r = flowscope_cmd("runs", "state", rid, "--at", "1", "--diff-from", "-1", url=traced.url)
    assert json.loads(r.stdout)["changed"] == {"k": {"from": 0, "to": 2}}
    r = flowscope_cmd("runs", "graph", rid, url=traced.url)
    assert r.stdout.startswith("flowchart TD") and "1. two" in r.stdout

    r = flowscope_cmd("runs", "tail", rid, url=traced.url)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[0].startswith("    state snapshot") and lines[-1].startswith("■ OK")
    assert [ln.split()[2] for ln in lines if ln.startswith(("▶", "✓"))] == ["one", "one", "two", "two"]


def test_costs_and_errors(traced, fake_provider) -> None:
    import openai

    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")
    with flowscope.run("cli-costs") as run, flowscope.node("ask"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    flowscope.force_flush()
    traced.wait_for_run(run.id, spans=3)
    r = flowscope_cmd("costs", "--by", "flow", "--since", "24h", url=traced.url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split()[:2] == ["GROUP", "CALLS"] and "total $" in r.stdout
    assert any(line.startswith("cli-costs ") for line in r.stdout.splitlines())
    data = json.loads(flowscope_cmd("costs", "--by", "model", "--since", "24h", "--json", url=traced.url).stdout)
    assert data["group_by"] == "model" and "groups" in data
    r = flowscope_cmd("runs", "show", "0" * 32, url=traced.url)
    assert r.returncode == 1 and "no run" in r.stderr
    r = flowscope_cmd("costs", "--since", "yesterday", url=traced.url)
    assert r.returncode == 1 and "ISO 8601" in r.stderr


def test_demo_subcommand_is_still_there() -> None:
    exe = shutil.which("flowscope", path=os.path.dirname(sys.executable))
    r = subprocess.run([exe, "demo", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--serve" in r.stdout


def _closed_pipe() -> int:
    """The write end of a pipe whose reader is gone, as ``| head`` leaves it once it has its lines."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


@pytest.mark.parametrize("args", [("runs", "list"), ("runs", "list", "--json"), ("costs",)])
def test_a_closed_pipe_ends_the_command_quietly(traced, run_id, args: tuple[str, ...]) -> None:
    """``flowscope runs list | head -3`` must not end in a BrokenPipeError traceback."""
    exe = shutil.which("flowscope", path=os.path.dirname(sys.executable)) or shutil.which("flowscope")
    assert exe
    stdout = _closed_pipe()
    try:
        r = subprocess.run([exe, *args, "--url", traced.url], stdout=stdout, stderr=subprocess.PIPE,
                           text=True, timeout=120)
    finally:
        os.close(stdout)
    assert r.stderr == ""
    assert r.returncode == 1  # what the Python docs advise for SIGPIPE: not a success, no noise


def test_a_closed_pipe_ends_runs_tail_quietly(traced, run_id) -> None:
    exe = shutil.which("flowscope", path=os.path.dirname(sys.executable)) or shutil.which("flowscope")
    assert exe
    stdout = _closed_pipe()
    try:
        r = subprocess.run([exe, "runs", "tail", run_id[1], "--json", "--url", traced.url], stdout=stdout,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(stdout)
    assert (r.returncode, r.stderr) == (1, "")


def test_counts_are_pluralised_and_wide_characters_aligned() -> None:
    """"1 LLM call", not "1 LLM calls"; a CJK name takes two columns, so the next column stays aligned."""
    import io

    from flowscope.cli import _event_line, plural, table

    assert [plural(n, "LLM call") for n in (0, 1, 2)] == ["0 LLM calls", "1 LLM call", "2 LLM calls"]
    assert plural(1, "retry", "retries") == "1 retry" and plural(3, "retry", "retries") == "3 retries"
    line = _event_line({"event": "summary", "status": "ok", "duration_ms": 1.0, "llm_calls": 1, "cost_usd": "0"})
    assert "1 LLM call " in line

    out = io.StringIO()
    table([{"name": "检索文档", "status": "ok"}, {"name": "plan", "status": "error"}],
          (("name", "NODE"), ("status", "STATUS")), out)
    header, cjk, ascii_ = out.getvalue().splitlines()
    import unicodedata

    def col(line: str, text: str) -> int:  # display column where text starts
        before = line[: line.index(text)]
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in before)

    assert col(header, "STATUS") == col(cjk, "ok") == col(ascii_, "error")


def test_node_errors_say_what_went_wrong_not_only_the_type(traced) -> None:
    """A node's error message, not just ``ValueError``, in /nodes, the summary and ``runs show``."""
    import httpx

    flow = f"cli-err-{uuid.uuid4().hex[:6]}"
    with pytest.raises(ValueError), flowscope.run(flow) as run, flowscope.node("parse"):
        raise ValueError("invoice 17 has no total")
    flowscope.force_flush()
    traced.wait_for_run(run.id, spans=2)
    (node,) = httpx.get(f"{traced.url}/api/v1/runs/{run.id}/nodes", timeout=30).json()["nodes"]
    assert (node["error"], node["error_message"]) == ("ValueError", "ValueError: invoice 17 has no total")
    summary = httpx.get(f"{traced.url}/api/v1/runs/{run.id}", timeout=30).json()
    (by_node,) = summary["by_node"]
    assert (by_node["error"], by_node["error_message"]) == ("ValueError", "ValueError: invoice 17 has no total")
    r = flowscope_cmd("runs", "show", run.id, url=traced.url)
    assert r.returncode == 0, r.stderr
    assert "invoice 17 has no total" in r.stdout


def test_an_unknown_run_fails_at_once_with_a_cli_hint(traced) -> None:
    """``runs tail UNKNOWN`` used to wait 30 s in silence; every hint names the CLI command, not the route."""
    for args in (("runs", "tail", "UNKNOWN"), ("runs", "show", "UNKNOWN"), ("runs", "state", "UNKNOWN", "--at", "0")):
        r = subprocess.run([shutil.which("flowscope", path=os.path.dirname(sys.executable)) or "flowscope",
                            *args, "--url", traced.url], capture_output=True, text=True, timeout=20)
        assert r.returncode == 1, args
        (line,) = r.stderr.strip().splitlines()
        assert "UNKNOWN" in line and "flowscope runs list" in line and "/api/v1" not in line, line


def test_runs_list_and_client_filter_by_run_attribute(traced) -> None:
    """The API had ``attr=``; ``flowscope runs list --attr`` and ``Client.runs(attrs=...)`` reach it."""
    from flowscope.client import Client

    flow = f"cli-attr-{uuid.uuid4().hex[:6]}"
    ids = {}
    for tenant in ("acme", "globex"):
        with flowscope.run(flow) as run, flowscope.node("only"):
            flowscope.set_run_attributes(tenant=tenant)
        ids[tenant] = run.id
    flowscope.force_flush()
    for rid in ids.values():
        traced.wait_for_run(rid, spans=2)
    with Client(traced.url) as client:
        assert [r["run_id"] for r in client.runs(flow=flow, attrs={"tenant": "acme"})] == [ids["acme"]]
    r = flowscope_cmd("runs", "list", "--flow", flow, "--attr", "tenant:globex", "--json", url=traced.url)
    assert r.returncode == 0, r.stderr
    assert [x["run_id"] for x in json.loads(r.stdout)["runs"]] == [ids["globex"]]


def test_runs_state_lists_the_steps_and_names_the_node(traced, run_id) -> None:
    """``runs state`` needed ``--at`` and never said which node the state is after."""
    _, rid = run_id
    r = flowscope_cmd("runs", "state", rid, url=traced.url)
    assert r.returncode == 0, r.stderr
    rows = [line.split()[:2] for line in r.stdout.splitlines()[1:4]]
    assert rows == [["-1", "(input)"], ["0", "one"], ["1", "two"]]
    r = flowscope_cmd("runs", "state", rid, "--at", "1", url=traced.url)
    assert json.loads(r.stdout) == {"k": 2} and "step 1 (two)" in r.stderr
    full = json.loads(flowscope_cmd("runs", "state", rid, "--at", "1", "--json", url=traced.url).stdout)
    assert (full["node"], full["state"]) == ("two", {"k": 2})
