"""Other producers' spans become priced runs: OpenLLMetry, OpenInference, OpenLIT.

Two layers:

* the normaliser on attribute maps exactly as each producer writes them
  (fast, no extra packages);
* the real instrumentors wrapping the real ``openai`` / ``anthropic`` clients
  against the FakeProvider, exporting with their own OTLP/HTTP exporters to the
  real collector process. Each producer runs in its own interpreter process:
  they patch the same client classes and want the global TracerProvider, and
  several pin ``openai<3`` while flowscope is tested with the newest client,
  so they live in a separate environment, as in a user's own app. That
  interpreter is ``$FLOWSCOPE_PRODUCERS_PYTHON`` (see docs/conventions.md for
  how CI builds it) or, where the packages are importable, this one. A
  producer that is not installed skips with the reason.

Costs are checked against prices written here by hand, never against the
engine under test.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from decimal import Decimal

import httpx
import pytest

from flowscope.core import semconv
from flowscope.core.normalize import normalize_attributes
from flowscope.testing import Reply
from tests._producers_env import producers_python

M = Decimal(1_000_000)
# USD per million tokens: (input, cached input, cache write, output)
PRICES = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.075"), None, Decimal("0.60")),
    "gpt-4o": (Decimal("2.5"), Decimal("1.25"), None, Decimal("10")),
    "claude-3-5-haiku": (Decimal("0.8"), Decimal("0.08"), Decimal("1"), Decimal("4")),
}


def cost(model: str, inp: int, out: int, cached: int = 0, write: int = 0) -> Decimal:
    p_in, p_cached, p_write, p_out = PRICES[model]
    return ((inp - cached - write) * p_in + cached * p_cached + write * (p_write or p_in) + out * p_out) / M


def norm(attrs: dict[str, object], **kw: object) -> dict[str, str]:
    return dict(normalize_attributes({k: str(v) for k, v in attrs.items()}, **kw))  # type: ignore[arg-type]


# --- the normaliser, producer by producer -------------------------------------------


def test_plain_spans_are_left_alone() -> None:
    attrs = {"http.method": "GET", "http.route": "/x", "db.system": "postgresql"}
    assert norm(attrs) == {k: str(v) for k, v in attrs.items()}


def test_openllmetry_legacy_names() -> None:
    a = norm({"gen_ai.system": "OpenAI", "llm.request.type": "chat", "gen_ai.request.model": "gpt-4o-mini",
              "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.usage.prompt_tokens": 1200,
              "gen_ai.usage.completion_tokens": 300, "gen_ai.usage.cache_read_input_tokens": 800})
    assert a[semconv.SPAN_KIND] == "llm"
    assert a[semconv.GEN_AI_PROVIDER_NAME] == "openai"
    assert a[semconv.GEN_AI_OPERATION_NAME] == "chat"
    assert (a[semconv.GEN_AI_USAGE_INPUT_TOKENS], a[semconv.GEN_AI_USAGE_OUTPUT_TOKENS],
            a[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS]) == ("1200", "300", "800")
    assert a[semconv.COST_SOURCE] == "computed"
    assert Decimal(a[semconv.COST_USD]) == cost("gpt-4o-mini", 1200, 300, cached=800)


def test_openinference_token_counts_and_reported_cost() -> None:
    base = {"openinference.span.kind": "LLM", "llm.system": "openai", "llm.model_name": "gpt-4o-mini",
            "llm.token_count.prompt": 1000, "llm.token_count.completion": 50,
            "llm.token_count.prompt_details.cache_read": 600,
            "llm.token_count.completion_details.reasoning": 20}
    a = norm(base)
    assert (a[semconv.GEN_AI_PROVIDER_NAME], a[semconv.GEN_AI_RESPONSE_MODEL]) == ("openai", "gpt-4o-mini")
    assert (a[semconv.GEN_AI_USAGE_INPUT_TOKENS], a[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS],
            a[semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS]) == ("1000", "600", "20")
    assert Decimal(a[semconv.COST_USD]) == cost("gpt-4o-mini", 1000, 50, cached=600)
    reported = norm({**base, "llm.cost.total": "0.0125", "llm.cost.prompt": "0.01",
                     "llm.cost.completion": "0.0025", "llm.cost.prompt_details.cache_read": "0.004"})
    assert reported[semconv.COST_SOURCE] == "provider"
    assert (reported[semconv.COST_USD], reported[semconv.COST_OUTPUT_USD], reported[semconv.COST_CACHED_INPUT_USD],
            reported[semconv.COST_INPUT_USD]) == ("0.0125", "0.0025", "0.004", "0.006")


def test_anthropic_cached_tokens_counted_once_whatever_the_convention() -> None:
    # One call: 3000 prompt tokens of which 1000 read from cache and 500 written.
    want = cost("claude-3-5-haiku", 3000, 100, cached=1000, write=500)
    inclusive_semconv = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
                         "gen_ai.request.model": "claude-3-5-haiku-20241022", "gen_ai.usage.input_tokens": 3000,
                         "gen_ai.usage.output_tokens": 100, "gen_ai.usage.cache_read.input_tokens": 1000,
                         "gen_ai.usage.cache_creation.input_tokens": 500}
    openllmetry = {"gen_ai.system": "Anthropic", "llm.request.type": "chat",
                   "gen_ai.request.model": "claude-3-5-haiku-20241022", "gen_ai.usage.input_tokens": 3000,
                   "gen_ai.usage.output_tokens": 100, "gen_ai.usage.cache_read_input_tokens": 1000,
                   "gen_ai.usage.cache_creation_input_tokens": 500}
    openinference = {"openinference.span.kind": "LLM", "llm.provider": "anthropic",
                     "llm.model_name": "claude-3-5-haiku-20241022", "llm.token_count.prompt": 3000,
                     "llm.token_count.completion": 100, "llm.token_count.prompt_details.cache_read": 1000,
                     "llm.token_count.prompt_details.cache_write": 500}
    openlit_raw = {**inclusive_semconv, "telemetry.sdk.name": "openlit", "gen_ai.usage.input_tokens": 1500,
                   "gen_ai.usage.cost": 0}
    raw_cache_bigger = {**inclusive_semconv, "gen_ai.usage.input_tokens": 10, "gen_ai.usage.cache_read.input_tokens": 2490,
                        "gen_ai.usage.cache_creation.input_tokens": 500}
    for attrs in (inclusive_semconv, openllmetry, openinference, openlit_raw):
        a = norm(attrs)
        assert a[semconv.GEN_AI_USAGE_INPUT_TOKENS] == "3000", attrs
        assert a[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == "1000", attrs
        assert a[semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == "500", attrs
        assert a[semconv.COST_SOURCE] == "computed", attrs
        assert Decimal(a[semconv.COST_USD]) == want, attrs
    assert norm(openlit_raw)["flowscope.usage.reported_input_tokens"] == "1500"
    a = norm(raw_cache_bigger)
    assert a[semconv.GEN_AI_USAGE_INPUT_TOKENS] == "3000"  # cache > input: it was exclusive
    # Normalising twice (a span re-sent, or normalised by the SDK first) changes nothing.
    assert norm(a) == a


def test_reasoning_excluded_from_output_is_added_back() -> None:
    a = norm({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
              "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10,
              "gen_ai.usage.reasoning.output_tokens": 40})
    assert a[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == "50"
    assert Decimal(a[semconv.COST_USD]) == cost("gpt-4o", 100, 50)


def test_reported_zero_cost_with_tokens_is_priced_and_unknown_models_unpriced() -> None:
    a = norm({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
              "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10, "gen_ai.usage.cost": 0})
    assert a[semconv.COST_SOURCE] == "computed"
    assert Decimal(a[semconv.COST_USD]) == cost("gpt-4o", 100, 10)
    b = norm({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.usage.cost": 0.25,
              "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 100})
    assert (b[semconv.COST_SOURCE], b[semconv.COST_USD]) == ("provider", "0.25")
    c = norm({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "acme", "gen_ai.request.model": "no-such-model",
              "gen_ai.usage.input_tokens": 100})
    assert c[semconv.COST_SOURCE] == "unpriced" and semconv.COST_USD not in c


def test_foreign_runs_nodes_and_tools() -> None:
    wf = norm({"traceloop.span.kind": "workflow", "traceloop.entity.name": "support",
               "traceloop.workflow.name": "support"})
    assert (wf[semconv.SPAN_KIND], wf[semconv.GEN_AI_WORKFLOW_NAME]) == ("run", "support")
    task = norm({"traceloop.span.kind": "task", "traceloop.entity.name": "plan"})
    assert (task[semconv.SPAN_KIND], task[semconv.NODE_NAME], task[semconv.NODE_TYPE]) == ("node", "plan", "task")
    assert semconv.NODE_STEP not in task  # order needs the whole run: views numbers it
    tool = norm({"traceloop.span.kind": "tool", "traceloop.entity.name": "lookup"})
    assert (tool[semconv.SPAN_KIND], tool[semconv.GEN_AI_TOOL_NAME]) == ("tool", "lookup")
    lg = norm({"openinference.span.kind": "CHAIN",
               "metadata": json.dumps({"langgraph_node": "retrieve", "langgraph_step": 2, "thread_id": "t"})})
    assert (lg[semconv.SPAN_KIND], lg[semconv.NODE_NAME], lg[semconv.NODE_SUPERSTEP]) == ("node", "retrieve", "2")
    root = norm({"openinference.span.kind": "AGENT"}, parent_span_id=b"")
    assert root[semconv.SPAN_KIND] == "run"
    nested = norm({"openinference.span.kind": "AGENT", "graph.node.name": "researcher"}, parent_span_id=b"12345678")
    assert (nested[semconv.SPAN_KIND], nested[semconv.NODE_NAME], nested[semconv.NODE_TYPE]) == (
        "node", "researcher", "agent")
    oi_tool = norm({"openinference.span.kind": "TOOL", "tool.name": "search"})
    assert (oi_tool[semconv.SPAN_KIND], oi_tool[semconv.GEN_AI_TOOL_NAME]) == ("tool", "search")
    agent_root = norm({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "triage"}, parent_span_id=b"")
    assert (agent_root[semconv.SPAN_KIND], agent_root[semconv.GEN_AI_WORKFLOW_NAME]) == ("run", "triage")
    sub_agent = norm({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "billing"},
                     parent_span_id=b"abcdefgh")
    assert (sub_agent[semconv.SPAN_KIND], sub_agent[semconv.NODE_NAME]) == ("node", "billing")
    # Inside a flowscope SDK run its own node spans say the structure.
    inside = norm({"openinference.span.kind": "CHAIN", semconv.RUN_ID: "r1", semconv.NODE_NAME: "n",
                   semconv.NODE_STEP: 0})
    assert semconv.SPAN_KIND not in inside


# --- the real instrumentors, end to end --------------------------------------------------

_PRODUCER = r'''
import json, sys
cfg = json.loads(sys.argv[1])
which, base, endpoint = cfg["producer"], cfg["openai_base_url"], cfg["endpoint"]
out = {}

def current_trace_id():
    from opentelemetry import trace
    return format(trace.get_current_span().get_span_context().trace_id, "032x")

if which == "openllmetry":
    from traceloop.sdk import Traceloop
    from traceloop.sdk.decorators import task, tool, workflow
    Traceloop.init(app_name="openllmetry-app", api_endpoint=endpoint, disable_batch=True,
                   telemetry_enabled=False, should_enrich_metrics=False)
    import openai
    client = openai.OpenAI(base_url=base, api_key="sk-test")

    @tool(name="lookup")
    def lookup(q):
        return q.upper()

    @task(name="plan")
    def plan():
        return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "plan"}])

    @task(name="answer")
    def answer():
        lookup("order 42")
        return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "go"}])

    @workflow(name="support_flow")
    def flow():
        out["trace_id"] = current_trace_id()
        plan()
        answer()

    flow()
    Traceloop.get_default_span_processor().force_flush() if hasattr(Traceloop, "get_default_span_processor") else None
    from opentelemetry import trace
    trace.get_tracer_provider().force_flush()

elif which == "openinference":
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from openinference.instrumentation import OITracer, TraceConfig
    from openinference.instrumentation.openai import OpenAIInstrumentor
    tp = TracerProvider(resource=Resource.create({"service.name": "openinference-app"}))
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
    trace.set_tracer_provider(tp)
    OpenAIInstrumentor().instrument(tracer_provider=tp)
    tracer = OITracer(tp.get_tracer("app"), config=TraceConfig())
    import openai
    client = openai.OpenAI(base_url=base, api_key="sk-test")

    @tracer.tool(name="lookup")
    def lookup(q: str) -> str:
        return q.upper()

    @tracer.chain(name="plan")
    def plan():
        return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "plan"}])

    @tracer.chain(name="answer")
    def answer():
        lookup("order 42")
        return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "go"}])

    @tracer.agent(name="support_agent")
    def agent():
        out["trace_id"] = current_trace_id()
        plan()
        answer()

    agent()
    tp.force_flush()

elif which == "openlit":
    import openlit
    from opentelemetry import trace
    with open(cfg["pricing_json"], "w") as f:
        json.dump({"chat": {"gpt-4o-mini": {"promptPrice": 0.001, "completionPrice": 0.002}}}, f)
    openlit.init(application_name="openlit-app", otlp_endpoint=endpoint, disable_batch=True,
                 disable_metrics=True, disable_events=True, pricing_json=cfg["pricing_json"])
    import anthropic, openai
    client = openai.OpenAI(base_url=base, api_key="sk-test")
    claude = anthropic.Anthropic(base_url=cfg["anthropic_base_url"], api_key="sk-ant-test")
    with trace.get_tracer("app").start_as_current_span("openlit-run"):
        out["trace_id"] = current_trace_id()
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "priced"}])
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "unpriced"}])
        claude.messages.create(model="claude-3-5-haiku-20241022", max_tokens=100,
                               messages=[{"role": "user", "content": "cached"}])
    trace.get_tracer_provider().force_flush()

print("RESULT " + json.dumps(out), flush=True)
'''

_NEEDS = {
    "openllmetry": ("traceloop.sdk", "opentelemetry.instrumentation.openai"),
    "openinference": ("openinference.instrumentation.openai",),
    "openlit": ("openlit", "anthropic"),
}


@functools.cache
def _python_for(producer: str) -> str | None:
    code = "import " + ", ".join(_NEEDS[producer]) + ", openai"
    if subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120).returncode == 0:
        return sys.executable
    py, _reason = producers_python()
    if py and subprocess.run([py, "-c", code], capture_output=True, timeout=120).returncode == 0:
        return py
    return None


def _run_producer(producer: str, collector, fake_provider, tmp_path) -> str:
    py = _python_for(producer)
    if py is None:
        pytest.skip(f"{producer} is not installed here: set FLOWSCOPE_PRODUCERS_PYTHON to an interpreter with "
                    f"{', '.join(_NEEDS[producer])} (docs/conventions.md, 'Testing producers')")
    cfg = {"producer": producer, "openai_base_url": fake_provider.openai_base_url, "endpoint": collector.url,
           "anthropic_base_url": fake_provider.anthropic_base_url, "pricing_json": str(tmp_path / "pricing.json")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"TRACELOOP_TELEMETRY": "false", "OTEL_SDK_DISABLED": "false", "TRACELOOP_TRACE_CONTENT": "false"})
    proc = subprocess.run([py, "-c", _PRODUCER, json.dumps(cfg)], capture_output=True, text=True, timeout=180,
                          env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{producer} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT "):])["trace_id"]


def _wait(collector, run_id: str, llm_calls: int) -> dict:
    deadline = time.monotonic() + 30
    last = None
    while time.monotonic() < deadline:
        r = collector.get(f"/api/v1/runs/{run_id}")
        if r.status_code == 200:
            last = r.json()
            if last["llm_calls"] >= llm_calls:
                return last
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} never had {llm_calls} LLM calls; last={last}")


def _spans(collector, run_id: str) -> list[dict]:
    body = collector.get(f"/api/v1/runs/{run_id}/spans").json()
    out: list[dict] = []

    def walk(items: list[dict]) -> None:
        for s in items:
            out.append(s)
            walk(s.get("children", []))

    walk(body["roots"])
    return out


def _two_openai_calls(fake_provider) -> tuple[Decimal, Decimal]:
    fake_provider.script(
        Reply(text="plan", input_tokens=1200, cached_tokens=800, output_tokens=300, model="gpt-4o-mini-2024-07-18"),
        Reply(text="answer", input_tokens=900, output_tokens=100, model="gpt-4o-mini-2024-07-18"),
    )
    return cost("gpt-4o-mini", 1200, 300, cached=800), cost("gpt-4o-mini", 900, 100)


def _check_flow(collector, run_id: str, flow: str, service: str, costs: tuple[Decimal, Decimal]) -> None:
    s = _wait(collector, run_id, 2)
    assert (s["flow"], s["service"], s["status"]) == (flow, service, "ok")
    assert (s["llm_calls"], s["input_tokens"], s["cached_input_tokens"], s["output_tokens"]) == (2, 2100, 800, 400)
    assert Decimal(s["cost_usd"]) == sum(costs)
    assert s["unpriced_calls"] == 0
    assert s["by_model"][0]["provider"] == "openai"
    assert s["by_model"][0]["model"] == "gpt-4o-mini-2024-07-18"
    nodes = collector.get(f"/api/v1/runs/{run_id}/nodes").json()["nodes"]
    assert [(n["step"], n["name"], n["llm_calls"]) for n in nodes] == [(0, "plan", 1), (1, "answer", 1)]
    assert [Decimal(n["cost_usd"]) for n in nodes] == list(costs)
    listed = collector.get("/api/v1/runs", params={"service": service}).json()["runs"]
    mine = [r for r in listed if r["run_id"] == run_id]
    assert mine and Decimal(mine[0]["cost_usd"]) == sum(costs) and mine[0]["llm_calls"] == 2


def test_openllmetry_workflow_is_a_priced_run(collector, fake_provider, tmp_path) -> None:
    costs = _two_openai_calls(fake_provider)
    run_id = _run_producer("openllmetry", collector, fake_provider, tmp_path)
    _check_flow(collector, run_id, "support_flow", "openllmetry-app", costs)


def test_openinference_agent_is_a_priced_run(collector, fake_provider, tmp_path) -> None:
    costs = _two_openai_calls(fake_provider)
    run_id = _run_producer("openinference", collector, fake_provider, tmp_path)
    _check_flow(collector, run_id, "support_agent", "openinference-app", costs)


def test_openlit_costs_provider_computed_and_anthropic_cache(collector, fake_provider, tmp_path) -> None:
    fake_provider.script(
        Reply(text="a", input_tokens=1000, output_tokens=100, model="gpt-4o-mini"),
        Reply(text="b", input_tokens=500, output_tokens=50, model="gpt-4o"),
        Reply(text="c", input_tokens=3000, cached_tokens=1000, cache_write_tokens=500, output_tokens=100,
              model="claude-3-5-haiku-20241022"),
    )
    run_id = _run_producer("openlit", collector, fake_provider, tmp_path)
    s = _wait(collector, run_id, 3)
    assert (s["flow"], s["service"], s["llm_calls"], s["unpriced_calls"]) == ("openlit-run", "openlit-app", 3, 0)
    # Anthropic reported 1500 uncached + 1000 read + 500 written; OpenLIT copied the 1500.
    assert (s["input_tokens"], s["cached_input_tokens"], s["cache_write_input_tokens"]) == (4500, 1000, 500)
    llm = {m["model"]: m for m in s["by_model"]}
    assert llm["claude-3-5-haiku-20241022"]["input_tokens"] == 3000
    assert Decimal(llm["claude-3-5-haiku-20241022"]["cost_usd"]) == cost("claude-3-5-haiku", 3000, 100, 1000, 500)
    # gpt-4o is not in OpenLIT's price list: it reports 0, the collector prices it.
    assert Decimal(llm["gpt-4o"]["cost_usd"]) == cost("gpt-4o", 500, 50)
    # gpt-4o-mini has an OpenLIT price: kept as the producer reported it.
    reported = Decimal(1000) / 1000 * Decimal("0.001") + Decimal(100) / 1000 * Decimal("0.002")
    assert abs(Decimal(llm["gpt-4o-mini"]["cost_usd"]) - reported) < Decimal("1e-12")
    sources = {sp["attributes"].get("gen_ai.request.model"): sp["attributes"].get(semconv.COST_SOURCE)
               for sp in _spans(collector, run_id) if sp["attributes"].get(semconv.SPAN_KIND) == "llm"}
    assert sources == {"gpt-4o-mini": "provider", "gpt-4o": "computed", "claude-3-5-haiku-20241022": "computed"}


def test_grouping_keeps_runs_apart(collector, fake_provider, tmp_path) -> None:
    """Two executions of the same flow are two runs, each with its own calls."""
    _two_openai_calls(fake_provider)
    first = _run_producer("openinference", collector, fake_provider, tmp_path)
    _two_openai_calls(fake_provider)
    second = _run_producer("openinference", collector, fake_provider, tmp_path)
    assert first != second
    assert _wait(collector, first, 2)["llm_calls"] == 2
    assert _wait(collector, second, 2)["llm_calls"] == 2
    r = httpx.get(collector.url + f"/api/v1/runs/{first}/nodes", timeout=30)
    assert [n["name"] for n in r.json()["nodes"]] == ["plan", "answer"]
