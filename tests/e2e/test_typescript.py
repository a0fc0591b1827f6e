"""The TypeScript example (examples/typescript) against the real collector.

A BackpackFlow-style flow traced with the OpenTelemetry JS SDK in flowscope's
conventions, and a real ``@hazeljs/agent`` agent traced by the runtime's own
spans plus the example's small bridge (``src/hazel-bridge.ts``), both exported
over OTLP/HTTP and calling the FakeProvider. Runs wherever ``node`` and ``npm``
are installed (CI installs them); ``npm ci`` is run here (from the npm registry
only) if the example's dependencies are missing or older than its lock file.
Without node the test skips and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
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
    installed = EXAMPLE / "node_modules" / ".package-lock.json"  # npm writes it on every install
    if not installed.is_file() or installed.stat().st_mtime < (EXAMPLE / "package-lock.json").stat().st_mtime:
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, capture_output=True, text=True,
                           timeout=600)
        if r.returncode != 0:
            pytest.skip(f"npm ci failed in examples/typescript (no registry access?):\n{r.stderr[-1500:]}")
    r = subprocess.run([npm, "run", "--silent", "build"], cwd=EXAMPLE, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"tsc failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return EXAMPLE / "dist" / "main.js"


def run_example(built_example: Path, collector, fake_provider, **env_extra: str) -> dict:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
           "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OPENAI_BASE_URL": fake_provider.openai_base_url,
           **env_extra}
    r = subprocess.run(["node", str(built_example)], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, f"example failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_typescript_flow(built_example, collector, fake_provider) -> None:
    fake_provider.script(
        Reply(text="photons scatter", input_tokens=500, output_tokens=50, model="gpt-4o-mini-2024-07-18"),
        Reply(text="Rayleigh scattering.", input_tokens=800, cached_tokens=300, output_tokens=120,
              model="gpt-4o-mini-2024-07-18"),
    )
    out = run_example(built_example, collector, fake_provider, EXAMPLE_PARTS="flow")

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


# The HazelJS agent's replies, two executions: lookup_order 13 (the tool fails), lookup_order 42,
# the answer; then a second question whose first reply passes the 100-token budget.
AGENT_REPLIES = (
    Reply(tool_calls=[ToolCall("lookup_order", {"id": "13"}, id="call_1")], input_tokens=300, output_tokens=20,
          model="gpt-4o-mini-2024-07-18"),
    Reply(tool_calls=[ToolCall("lookup_order", {"id": "42"}, id="call_2")], input_tokens=350, output_tokens=25,
          model="gpt-4o-mini-2024-07-18"),
    Reply(text="Order 42 has shipped.", input_tokens=400, cached_tokens=100, output_tokens=30,
          model="gpt-4o-mini-2024-07-18"),
    Reply(text="Order 43 is on its way.", input_tokens=120, output_tokens=10, model="gpt-4o-mini-2024-07-18"),
)
ANSWERED = cost(300, 20) + cost(350, 25) + cost(400, 30, cached=100)
OVER_BUDGET = cost(120, 10)


def check_hazel_runs(collector, out: dict, service: str, *, spans: tuple[int, int], llm_nodes: bool,
                     answered_cost: Decimal = ANSWERED, cached: int = 100) -> None:
    assert out["answer"] == "Order 42 has shipped."
    assert out["budget_error"]  # the runtime wraps BudgetExceededError in its generic LLM error
    answered, over = out["agent_run_ids"]  # one run per execution, ids are the executions' UUIDs as hex
    assert len(answered) == len(over) == 32 and answered != over

    a = collector.wait_for_run(answered, spans=spans[0])
    assert (a["flow"], a["service"], a["status"], a["spans"]) == ("support-agent", service, "ok", spans[0])
    # each model call once: 3 calls, their tokens, their exact cost
    assert (a["llm_calls"], a["input_tokens"], a["cached_input_tokens"], a["output_tokens"]) == (3, 1050, cached, 75)
    assert Decimal(a["cost_usd"]) == answered_cost and a["unpriced_calls"] == 0 and a["budget_exceeded"] is False
    nodes = [(n["name"], n["type"], n["status"], n["llm_calls"])
             for n in collector.get(f"/api/v1/runs/{answered}/nodes").json()["nodes"]]
    tools = [("lookup_order", "tool", "error", 0), ("lookup_order", "tool", "ok", 0)]
    if llm_nodes:  # agent.llm is the step, the instrumented span beneath it the call
        assert nodes == [("llm", "llm", "ok", 1), tools[0], ("llm", "llm", "ok", 1), tools[1], ("llm", "llm", "ok", 1)]
    else:  # agent.llm carries the usage: it is the call
        assert nodes == tools

    b = collector.wait_for_run(over, spans=spans[1])
    assert (b["flow"], b["status"], b["spans"], b["llm_calls"]) == ("support-agent", "error", spans[1], 1)
    assert b["budget_exceeded"] is True and Decimal(b["cost_usd"]) == OVER_BUDGET

    def flat(items: list[dict]) -> list[dict]:
        return [x for s in items for x in (s, *flat(s["children"]))]

    events = [e for s in flat(collector.get(f"/api/v1/runs/{over}/spans").json()["roots"])
              for e in s["events"] if e["name"] == "flowscope.budget.exceeded"]
    assert len(events) == 1
    assert json.loads(events[0]["attributes"]["hazeljs.budget"]) == {"maxTokens": 100}
    assert json.loads(events[0]["attributes"]["hazeljs.usage"])["tokens"] == 130

    # The runs list and the cost roll-up are summed in ClickHouse: the same totals, nothing twice,
    # and no run beside the executions (a failed execution's agent.run joined its run).
    listed = collector.get("/api/v1/runs", params={"service": service, "limit": 1000}).json()["runs"]
    assert sorted((r["run_id"], Decimal(r["cost_usd"]), r["llm_calls"]) for r in listed) == sorted(
        [(answered, answered_cost, 3), (over, OVER_BUDGET, 1)])
    groups = collector.get("/api/v1/costs", params={"group_by": "service", "since": "1h"}).json()["groups"]
    mine = [g for g in groups if g["key"] == service]
    assert [(Decimal(g["cost_usd"]), g["llm_calls"]) for g in mine] == [(answered_cost + OVER_BUDGET, 4)]


def run_agent(built_example: Path, collector, fake_provider, mode: str, **env: str) -> tuple[dict, str]:
    fake_provider.script(*AGENT_REPLIES)
    service = f"hazel-{mode}-{uuid.uuid4().hex[:8]}"
    return run_example(built_example, collector, fake_provider, EXAMPLE_PARTS="agent", OTEL_SERVICE_NAME=service,
                       **env), service


def test_hazeljs_usage_on_agent_llm_and_on_the_openai_instrumentation(built_example, collector, fake_provider) -> None:
    """Usage on both: agent.llm (the adapter's, with cached input) counts; the OpenAI instrumentation's
    chat span beneath it is a client span, stored but not counted."""
    out, service = run_agent(built_example, collector, fake_provider, "both")
    # run, execute, 3 x (agent.llm + chat), 2 tools | run, execute, agent.llm + chat
    check_hazel_runs(collector, out, service, spans=(10, 4), llm_nodes=False)


def test_hazeljs_usage_on_agent_llm_only(built_example, collector, fake_provider) -> None:
    """No instrumentation beneath (fetch): the adapter's usage on agent.llm is the call."""
    out, service = run_agent(built_example, collector, fake_provider, "own", EXAMPLE_CHILD_SPANS="0")
    check_hazel_runs(collector, out, service, spans=(7, 3), llm_nodes=False)


def test_hazeljs_usage_on_the_openai_instrumentation_only(built_example, collector, fake_provider) -> None:
    """An adapter that records nothing: agent.llm is an llm node, the instrumentation's span the call.
    That instrumentation (0.21) does not record cached input, so the third call is priced without
    its cache discount: what the spans say, not a guess."""
    out, service = run_agent(built_example, collector, fake_provider, "child", EXAMPLE_ADAPTER_USAGE="0")
    check_hazel_runs(collector, out, service, spans=(10, 4), llm_nodes=True,
                     answered_cost=cost(300, 20) + cost(350, 25) + cost(400, 30), cached=0)
