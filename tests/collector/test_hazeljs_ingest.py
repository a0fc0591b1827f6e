"""HazelJS (``@hazeljs/agent`` 2.0.2) spans through the real collector become runs, nodes and priced calls.

The spans are shaped exactly as the runtime opens them (its
``dist/utils/agent-tracing.js`` and callers): ``agent.run`` (attributes
``agent.run_id`` / ``agent.execution_id`` / ``agent.state`` /
``agent.duration_ms`` added when it ends), ``agent.execute``, ``agent.llm``
and ``agent.tool.execute``, execution ids as UUIDs. They go over real OTLP/HTTP
(protobuf, and JSON once) to the session collector; the API's answers are
checked against costs computed here by hand (gpt-4o-mini: $0.15 / $0.60 per
million input / output tokens, $0.075 cached).
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from decimal import Decimal

import httpx
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flowscope.core.hazeljs import run_id_of
from flowscope.core.normalize import normalize_attributes

M = Decimal(1_000_000)


def cost(inp: int, out: int, cached: int = 0) -> Decimal:
    return ((inp - cached) * Decimal("0.15") + cached * Decimal("0.075") + out * Decimal("0.60")) / M


class Trace:
    """Spans of one trace in one OTLP request, parent links by name."""

    def __init__(self) -> None:
        self.req = ExportTraceServiceRequest()
        rs = self.req.resource_spans.add()
        a = rs.resource.attributes.add()
        a.key, a.value.string_value = "service.name", "hazel-svc"
        self.ss = rs.scope_spans.add()
        self.ss.scope.name = "hazeljs-agent"
        self.trace_id = os.urandom(16)
        self.t = time.time_ns()

    def span(self, name: str, attrs: dict[str, object], parent: bytes = b"", status: int = 1) -> bytes:
        s = self.ss.spans.add(trace_id=self.trace_id, span_id=os.urandom(8), parent_span_id=parent, name=name,
                              start_time_unix_nano=self.t, end_time_unix_nano=self.t + 1_000_000)
        self.t += 2_000_000
        s.status.code = status
        for k, v in attrs.items():
            a = s.attributes.add()
            a.key = k
            if isinstance(v, bool):
                a.value.bool_value = v
            elif isinstance(v, int):
                a.value.int_value = v
            else:
                a.value.string_value = str(v)
        return bytes(s.span_id)

    def execution(self, agent: str, parent: bytes = b"") -> tuple[str, bytes]:
        """``agent.run`` around ``agent.execute``, as ``runtime.execute`` opens them; returns (execution id, execute span)."""
        ex = str(uuid.uuid4())
        run = self.span("agent.run", {"agent.name": agent, "agent.session_id": "", "agent.user_id": "",
                                      "agent.run_id": ex, "agent.execution_id": ex, "agent.state": "completed",
                                      "agent.duration_ms": 12}, parent)
        execute = self.span("agent.execute", {"agent.name": agent, "agent.execution_id": ex, "agent.run_id": ex,
                                              "agent.session_id": "s1"}, run)
        return ex, execute

    def llm(self, agent: str, ex: str, parent: bytes, usage: tuple[int, int] | None = None,
            extra: dict[str, object] | None = None) -> bytes:
        attrs: dict[str, object] = {"agent.name": agent, "agent.execution_id": ex, "agent.run_id": ex}
        if usage:  # the adapter recorded the provider's usage on the active span (agent.llm)
            attrs.update({"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
                          "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                          "gen_ai.usage.input_tokens": usage[0], "gen_ai.usage.output_tokens": usage[1]})
        return self.span("agent.llm", {**attrs, **(extra or {})}, parent)

    def tool(self, agent: str, ex: str, parent: bytes, name: str) -> bytes:
        return self.span("agent.tool.execute", {"agent.tool.name": name, "agent.id": agent, "agent.name": agent,
                                                "agent.session_id": "s1", "agent.run_id": ex,
                                                "agent.execution_id": ex}, parent)

    def openai_child(self, parent: bytes, inp: int, out: int, run_id: str | None = None,
                     extra: dict[str, object] | None = None) -> bytes:
        """What an OpenAI JS instrumentation opens around the HTTP call (OTel GenAI names)."""
        attrs: dict[str, object] = {**(extra or {}), "gen_ai.operation.name": "chat", "gen_ai.system": "openai",
                                    "gen_ai.request.model": "gpt-4o-mini",
                                    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                                    "gen_ai.usage.input_tokens": inp, "gen_ai.usage.output_tokens": out}
        if run_id:  # stamped by the example's bridge (every span inside an execution says its run)
            attrs["flowscope.run.id"] = run_id
        return self.span("chat gpt-4o-mini", attrs, parent)

    def send(self, collector, *, as_json: bool = False) -> None:
        if as_json:
            doc = json_format.MessageToDict(self.req)
            for span in doc["resourceSpans"][0]["scopeSpans"][0]["spans"]:  # OTLP/JSON ids are hex
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
            body = json.dumps(doc).encode()
            ctype = "application/json"
        else:
            body, ctype = self.req.SerializeToString(), "application/x-protobuf"
        r = httpx.post(collector.url + "/v1/traces", content=body, headers={"content-type": ctype}, timeout=30)
        assert r.status_code == 200, r.text


def nodes(collector, run_id: str) -> list[tuple]:
    got = collector.get(f"/api/v1/runs/{run_id}/nodes").json()["nodes"]
    return [(n["name"], n["type"], n["status"], n["llm_calls"]) for n in got]


def test_execution_is_a_run_with_a_tool_node_and_priced_llm_calls(collector) -> None:
    """Usage on agent.llm itself (the adapter reported it): each agent.llm is one priced call."""
    t = Trace()
    ex, execute = t.execution("support-agent")
    t.llm("support-agent", ex, execute, usage=(300, 20))
    t.tool("support-agent", ex, execute, "lookup_order")
    t.llm("support-agent", ex, execute, usage=(400, 30))
    t.send(collector)

    run_id = run_id_of(ex)
    assert run_id == ex.replace("-", "") and len(run_id) == 32
    s = collector.wait_for_run(run_id, spans=5)
    assert (s["flow"], s["service"], s["status"], s["spans"], s["llm_calls"]) == (
        "support-agent", "hazel-svc", "ok", 5, 2)
    assert (s["input_tokens"], s["output_tokens"], s["unpriced_calls"]) == (700, 50, 0)
    assert Decimal(s["cost_usd"]) == cost(300, 20) + cost(400, 30)
    assert nodes(collector, run_id) == [("lookup_order", "tool", "ok", 0)]
    # no run of the trace id beside the execution's run
    assert collector.get(f"/api/v1/runs/{t.trace_id.hex()}").status_code == 404


def test_usage_on_both_the_hazeljs_span_and_an_instrumented_child_is_counted_once(collector) -> None:
    """The bridge marked agent.llm a node when the instrumented call started beneath it: the child counts."""
    t = Trace()
    ex, execute = t.execution("support-agent")
    rid = run_id_of(ex)
    mark = {"flowscope.span.kind": "node", "flowscope.node.type": "llm", "flowscope.node.name": "llm",
            "flowscope.run.id": rid}
    step = t.llm("support-agent", ex, execute, usage=(300, 20), extra=mark)
    t.openai_child(step, 300, 20, run_id=rid)
    t.tool("support-agent", ex, execute, "lookup_order")
    step2 = t.llm("support-agent", ex, execute, usage=(400, 30), extra=mark)
    t.openai_child(step2, 400, 30, run_id=rid)
    t.send(collector)

    s = collector.wait_for_run(rid, spans=7)
    assert (s["spans"], s["llm_calls"], s["input_tokens"], s["output_tokens"]) == (7, 2, 700, 50)
    assert Decimal(s["cost_usd"]) == cost(300, 20) + cost(400, 30)
    assert nodes(collector, rid) == [("llm", "llm", "ok", 1), ("lookup_order", "tool", "ok", 0),
                                     ("llm", "llm", "ok", 1)]
    # the runs list (summed in ClickHouse, not in Python) agrees
    listed = collector.get("/api/v1/runs", params={"flow": "support-agent", "limit": 200}).json()["runs"]
    row = next(r for r in listed if r["run_id"] == rid)
    assert Decimal(row["cost_usd"]) == cost(300, 20) + cost(400, 30)


def test_usage_on_agent_llm_declared_the_call_and_on_a_client_child_is_counted_once(collector) -> None:
    """The adapter declared agent.llm the call (kind llm, with cached input the instrumentation does not
    report); the bridge marked the instrumented child a client span (kind http): agent.llm counts."""
    t = Trace()
    ex, execute = t.execution("support-agent")
    rid = run_id_of(ex)
    step = t.llm("support-agent", ex, execute, usage=(400, 30),
                 extra={"flowscope.span.kind": "llm", "gen_ai.usage.cache_read.input_tokens": 100})
    t.openai_child(step, 400, 30, run_id=rid, extra={"flowscope.span.kind": "http"})
    t.send(collector)

    s = collector.wait_for_run(rid, spans=4)
    assert (s["spans"], s["llm_calls"], s["input_tokens"], s["cached_input_tokens"]) == (4, 1, 400, 100)
    assert Decimal(s["cost_usd"]) == cost(400, 30, cached=100)
    assert nodes(collector, rid) == []


def test_without_usage_on_agent_llm_it_is_an_llm_node_over_the_instrumented_call(collector) -> None:
    """HazelJS's own adapter puts no usage on agent.llm: the step is a node, the OpenAI child the call (JSON OTLP)."""
    t = Trace()
    ex, execute = t.execution("research-agent")
    rid = run_id_of(ex)
    step = t.llm("research-agent", ex, execute)
    t.openai_child(step, 500, 50, run_id=rid)
    t.send(collector, as_json=True)

    s = collector.wait_for_run(rid, spans=4)
    assert (s["flow"], s["llm_calls"], s["input_tokens"], s["output_tokens"]) == ("research-agent", 1, 500, 50)
    assert Decimal(s["cost_usd"]) == cost(500, 50)
    assert nodes(collector, rid) == [("llm", "llm", "ok", 1)]


def test_two_executions_in_one_trace_are_two_runs(collector) -> None:
    """An HTTP request span around two runtime.execute calls: one run per execution, not per trace."""
    t = Trace()
    http = t.span("POST /ask", {"http.request.method": "POST"})
    ex1, e1 = t.execution("support-agent", http)
    t.llm("support-agent", ex1, e1, usage=(100, 10))
    ex2, e2 = t.execution("support-agent", http)
    t.llm("support-agent", ex2, e2, usage=(200, 20))
    t.tool("support-agent", ex2, e2, "lookup_order")
    t.send(collector)

    a = collector.wait_for_run(run_id_of(ex1), spans=3)
    b = collector.wait_for_run(run_id_of(ex2), spans=4)
    assert (a["spans"], a["llm_calls"], Decimal(a["cost_usd"])) == (3, 1, cost(100, 10))
    assert (b["spans"], b["llm_calls"], Decimal(b["cost_usd"])) == (4, 1, cost(200, 20))
    assert nodes(collector, run_id_of(ex2)) == [("lookup_order", "tool", "ok", 0)]


def test_normalisation_rules_one_span_at_a_time() -> None:
    """The pure rules (flowscope.core.hazeljs via normalize_attributes), including what they leave alone."""
    ex = "0b9e8a6c-1f2d-4c3b-9a8e-7d6c5b4a3f21"
    base = {"agent.name": "a", "agent.execution_id": ex, "agent.run_id": ex}
    run = normalize_attributes(dict(base), span_name="agent.execute")
    assert (run["flowscope.run.id"], run["flowscope.span.kind"], run["gen_ai.workflow.name"]) == (
        "0b9e8a6c1f2d4c3b9a8e7d6c5b4a3f21", "run", "a")
    tool = normalize_attributes({**base, "agent.tool.name": "t"}, span_name="agent.tool.execute")
    assert (tool["flowscope.span.kind"], tool["flowscope.node.type"], tool["flowscope.node.name"],
            tool["gen_ai.tool.name"]) == ("node", "tool", "t", "t")
    bare = normalize_attributes(dict(base), span_name="agent.llm")
    assert (bare["flowscope.span.kind"], bare["flowscope.node.type"]) == ("node", "llm")
    called = normalize_attributes({**base, "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": "10",
                                   "gen_ai.usage.output_tokens": "5"}, span_name="agent.llm")
    assert (called["flowscope.span.kind"], called["flowscope.cost.source"]) == ("llm", "computed")
    assert Decimal(called["flowscope.cost.usd"]) == cost(10, 5)
    # a marked span keeps its kind; a span already in a flowscope run keeps its run
    marked = normalize_attributes({**base, "flowscope.span.kind": "node", "gen_ai.usage.input_tokens": "10"},
                                  span_name="agent.llm")
    assert marked["flowscope.span.kind"] == "node" and "flowscope.cost.usd" not in marked
    inside = normalize_attributes({**base, "flowscope.run.id": "f" * 32}, span_name="agent.run")
    assert inside["flowscope.run.id"] == "f" * 32 and "flowscope.span.kind" not in inside
    # agent.run is a plain span of the run; a non-UUID id is kept as sent; no id, nothing changes
    assert normalize_attributes({"agent.run_id": "exec-7"}, span_name="agent.run") == {
        "agent.run_id": "exec-7", "flowscope.run.id": "exec-7"}
    assert normalize_attributes({"agent.name": "a", "agent.run_id": ""}, span_name="agent.run") == {
        "agent.name": "a", "agent.run_id": ""}
    assert json.loads(json.dumps(run))  # a flat string map still
