"""The TypeScript example (examples/typescript) against the real collector.

A BackpackFlow-style flow and a HazelJS-style agent, traced with the
OpenTelemetry JS SDK in flowscope's conventions and exported over OTLP/HTTP
(JSON), calling the FakeProvider. Runs wherever ``node`` and ``npm`` are
installed (CI installs them); ``npm ci`` is run here if the example's
dependencies are missing. Without node the test skips and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from flowscope.testing import Reply, ToolCall

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "typescript"
M = Decimal(1_000_000)
IN, CACHED, OUT = Decimal("0.15"), Decimal("0.075"), Decimal("0.60")  # gpt-4o-mini, by hand


def cost(inp: int, out: int, cached: int = 0) -> Decimal:
    return ((inp - cached) * IN + cached * CACHED + out * OUT) / M


@pytest.fixture(scope="module")
def built_example() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node/npm not installed: the TypeScript example needs Node.js >= 18 and npm "
                    "(CI installs them; locally: apt-get install nodejs npm)")
    if not (EXAMPLE / "node_modules" / "@opentelemetry" / "sdk-trace-node").is_dir():
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, capture_output=True, text=True,
                           timeout=600)
        if r.returncode != 0:
            pytest.skip(f"npm ci failed in examples/typescript (no registry access?):\n{r.stderr[-1500:]}")
    r = subprocess.run([npm, "run", "--silent", "build"], cwd=EXAMPLE, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"tsc failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return EXAMPLE / "dist" / "main.js"


def test_typescript_flow_and_agent(built_example, collector, fake_provider) -> None:
    fake_provider.script(
        Reply(text="photons scatter", input_tokens=500, output_tokens=50, model="gpt-4o-mini-2024-07-18"),
        Reply(text="Rayleigh scattering.", input_tokens=800, cached_tokens=300, output_tokens=120,
              model="gpt-4o-mini-2024-07-18"),
        Reply(tool_calls=[ToolCall("lookup_order", {"id": "42"}, id="call_1")], input_tokens=300,
              output_tokens=20, model="gpt-4o-mini-2024-07-18"),
        Reply(text="Order 42 has shipped.", input_tokens=400, output_tokens=30, model="gpt-4o-mini-2024-07-18"),
    )
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
           "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OPENAI_BASE_URL": fake_provider.openai_base_url}
    r = subprocess.run(["node", str(built_example)], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, f"example failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["answer"] == "Order 42 has shipped."

    # The flow: plan (llm) -> research (tool) -> write (llm), state in a backpack.
    flow_id = out["flow_run_id"]
    s = collector.wait_for_run(flow_id, spans=6)  # run + 3 nodes + 2 llm
    assert (s["flow"], s["service"], s["status"], s["spans"]) == ("research-flow", "ts-example", "ok", 6)
    assert (s["llm_calls"], s["input_tokens"], s["cached_input_tokens"], s["output_tokens"]) == (2, 1300, 300, 170)
    assert Decimal(s["cost_usd"]) == cost(500, 50) + cost(800, 120, cached=300)
    assert s["unpriced_calls"] == 0
    nodes = collector.get(f"/api/v1/runs/{flow_id}/nodes").json()["nodes"]
    assert [(n["step"], n["name"], n["type"], n["status"], n["llm_calls"]) for n in nodes] == [
        (0, "plan", "llm", "ok", 1), (1, "research", "tool", "ok", 0), (2, "write", "llm", "ok", 1)]
    assert Decimal(nodes[2]["cost_usd"]) == cost(800, 120, cached=300)

    def state(run_id: str, at: int) -> dict:
        r = collector.get(f"/api/v1/runs/{run_id}/state", params={"at": at})
        assert r.status_code == 200, r.text
        return r.json()["state"]

    question = {"question": "why is the sky blue?"}
    assert state(flow_id, -1) == question
    assert state(flow_id, 0) == {**question, "plan": "photons scatter"}
    assert state(flow_id, 1) == {**question, "plan": "photons scatter",
                                 "notes": ["note about photons", "second note"]}
    assert state(flow_id, 2) == out["flow_store"] == {**question, "plan": "photons scatter",
                                                      "notes": ["note about photons", "second note"],
                                                      "draft": "Rayleigh scattering."}

    # The agent: model turn -> tool -> model turn.
    agent_id = out["agent_run_id"]
    a = collector.wait_for_run(agent_id, spans=7)  # run + 3 nodes + 2 llm + 1 tool
    assert (a["flow"], a["status"], a["llm_calls"], a["input_tokens"], a["output_tokens"]) == (
        "support-agent", "ok", 2, 700, 50)
    assert Decimal(a["cost_usd"]) == cost(300, 20) + cost(400, 30)
    anodes = collector.get(f"/api/v1/runs/{agent_id}/nodes").json()["nodes"]
    assert [(n["step"], n["name"], n["type"], n["llm_calls"]) for n in anodes] == [
        (0, "model", "llm", 1), (1, "lookup_order", "tool", 0), (2, "model", "llm", 1)]
    assert state(agent_id, 0)["messages"] == 3
    assert state(agent_id, 1)["tool_results"] == {"lookup_order": {"id": "42", "status": "shipped"}}
    final = state(agent_id, 2)
    assert final["messages"] == 5 and final["answer"] == "Order 42 has shipped."
    spans = collector.get(f"/api/v1/runs/{agent_id}/spans").json()
    assert spans["spans"] == 7
