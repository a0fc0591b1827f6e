"""Runs can be filtered by the attributes set_run_attributes put on them."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import flowscope


def test_runs_list_filters_by_run_attribute(traced) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = {}
    for tenant in ("acme", "globex"):
        with flowscope.run(f"attr-flow-{tag}") as run:
            flowscope.set_run_attributes(tenant=f"{tenant}-{tag}", user_id=f"user-{tenant}")
            with flowscope.node("work"):
                pass
        ids[tenant] = run.id
    flowscope.force_flush()
    for run_id in ids.values():
        traced.wait_for_run(run_id, spans=2)

    def listed(*attrs: str) -> list[str]:
        r = traced.get("/api/v1/runs", params=[("attr", a) for a in attrs] + [("flow", f"attr-flow-{tag}")])
        assert r.status_code == 200, r.text
        return [x["run_id"] for x in r.json()["runs"]]

    assert listed(f"tenant:acme-{tag}") == [ids["acme"]]
    assert listed(f"tenant:globex-{tag}", "user_id:user-globex") == [ids["globex"]]
    assert listed(f"tenant:acme-{tag}", "user_id:user-globex") == []
    assert sorted(listed()) == sorted(ids.values())


def test_malformed_attribute_filter_is_422(collector) -> None:
    r = collector.get("/api/v1/runs", params={"attr": "no-colon"})
    assert r.status_code == 422 and "NAME:VALUE" in r.json()["error"]


def test_user_session_tenant_in_summary_list_client_and_cli(traced) -> None:
    """Who a run was for is in its summary and in the runs list (API, Client, CLI), issue 20."""
    tag = uuid.uuid4().hex[:8]
    with flowscope.run(f"who-flow-{tag}") as run, flowscope.node("work"):
        flowscope.set_run_attributes(user_id=f"u-{tag}", session_id="s-1", tenant="acme", plan="pro",
                                  note="\x1b[2Jred")
    with flowscope.run(f"who-flow-{tag}") as anonymous, flowscope.node("work"):
        pass
    flowscope.force_flush()
    traced.wait_for_run(run.id, spans=2)
    traced.wait_for_run(anonymous.id, spans=2)
    want = {"user_id": f"u-{tag}", "session_id": "s-1", "tenant": "acme"}
    summary = traced.get(f"/api/v1/runs/{run.id}").json()
    assert {k: summary[k] for k in want} == want
    assert summary["attributes"] == {**want, "plan": "pro", "note": "\x1b[2Jred"}
    stream = traced.get(f"/api/v1/runs/{run.id}/stream").text
    (last,) = [line for line in stream.splitlines() if line.startswith("data:") and '"summary"' in line]
    assert {k: json.loads(last[5:])[k] for k in want} == want  # the live stream's summary too
    listed = {r["run_id"]: r for r in traced.get("/api/v1/runs", params={"flow": f"who-flow-{tag}"}).json()["runs"]}
    assert {k: listed[run.id][k] for k in want} == want
    assert listed[run.id]["attributes"] == {**want, "plan": "pro", "note": "\x1b[2Jred"}
    assert listed[anonymous.id]["user_id"] is None and listed[anonymous.id]["attributes"] == {}

    with flowscope.Client(traced.url) as client:
        (row,) = client.runs(attrs={"user_id": f"u-{tag}"})
        assert row["tenant"] == "acme"
        assert client.run(run.id)["session_id"] == "s-1"

    def cli(*args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "flowscope.cli", *args, "--url", traced.url],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    shown = cli("runs", "show", run.id)
    assert f"user u-{tag}" in shown and "session s-1" in shown and "tenant acme" in shown and "plan=pro" in shown
    assert "\x1b" not in shown and "note=\\x1b[2Jred" in shown  # a value is data, not a terminal command
    listing = cli("runs", "list", "--flow", f"who-flow-{tag}")
    header, *rows = listing.splitlines()
    assert "USER" in header and "TENANT" in header
    assert any(f"u-{tag}" in line and "acme" in line for line in rows)
    assert cli("runs", "list", "--attr", f"user_id:u-{tag}").count(run.id[:8]) == 1
