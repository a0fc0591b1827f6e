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
