"""Realistic OTLP trace data for the benchmarks.

A generated run looks like what the SDK sends for an agent flow: a run root,
~10 nodes (some routers, ~3% failing), 1-4 ``chat`` spans per node each with
an HTTP client child span (as httpx instrumentation makes), tool spans with a
database child, state events on the nodes, retry events on some LLM calls.
On average a run has ~100 spans, so "10M spans in 100k runs" is this shape.

Spans are built from per-kind templates with ``CopyFrom`` (C speed in upb
protobuf) and only the fields that differ are set, so generating data is not
what the ingest benchmark measures.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status

SERVICES = ("shop", "support-bot", "search")
FLOWS = {"shop": ("checkout-flow", "refund-flow"), "support-bot": ("triage", "answer"), "search": ("rag",)}
NODES = ("plan", "retrieve", "rank", "route", "draft", "critique", "revise", "tool-call", "summarize", "finish",
         "classify", "extract", "validate", "respond")
# (provider, model, input $/M, cached $/M, output $/M)
MODELS = (
    ("openai", "gpt-4o-mini-2024-07-18", "0.15", "0.075", "0.60"),
    ("openai", "gpt-4o-2024-08-06", "2.5", "1.25", "10"),
    ("anthropic", "claude-sonnet-4-20250514", "3", "0.3", "15"),
    ("anthropic", "claude-3-5-haiku-20241022", "0.8", "0.08", "4"),
    ("openai", "o3-mini-2025-01-31", "1.1", "0.55", "4.4"),
)
TOOLS = ("search_docs", "lookup_order", "send_email", "calculator", "fetch_url")
M = Decimal(1_000_000)


def _kv(key: str, value: str | int | float | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _span_template(name: str, kind: int, attrs: list[tuple[str, object]]) -> Span:
    s = Span(name=name, kind=kind)  # type: ignore[arg-type]
    s.attributes.extend(_kv(k, v) for k, v in attrs)  # type: ignore[arg-type]
    return s


@dataclass
class RunTruth:
    """What the generator put in a run, for checking query answers."""

    run_id: str
    flow: str
    service: str
    start_ns: int
    spans: int
    llm_calls: int
    cost_usd: Decimal
    nodes: int


class Generator:
    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)

    def _id(self, n: int) -> bytes:
        return self.rng.getrandbits(n * 8).to_bytes(n, "big")

    def run(self, start_ns: int, service: str | None = None) -> tuple[str, list[Span], RunTruth]:
        """One run's spans (in export order: children end first) and its truth."""
        rng = self.rng
        service = service or rng.choice(SERVICES)
        flow = rng.choice(FLOWS[service])
        trace_id = self._id(16)
        run_id = trace_id.hex()
        root_id = self._id(8)
        spans: list[Span] = []
        t = start_ns + 200_000
        cost_total = Decimal(0)
        llm_calls = 0
        seq = 1
        n_nodes = rng.randint(6, 14)
        for step in range(n_nodes):
            node_name = NODES[(step + rng.randint(0, 3)) % len(NODES)]
            node_id = self._id(8)
            node_start = t
            ntype = "router" if node_name == "route" else ("tool" if node_name == "tool-call" else "task")
            for _ in range(rng.choice((1, 2, 2, 3, 3, 4))):
                provider, model, p_in, p_cached, p_out = rng.choice(MODELS)
                inp = rng.randint(200, 6000)
                cached = rng.choice((0, 0, inp // 2))
                out = rng.randint(20, 900)
                reasoning = out // 3 if model.startswith("o3") else 0
                c_in = (inp - cached) * Decimal(p_in) / M
                c_cached = cached * Decimal(p_cached) / M
                c_out = out * Decimal(p_out) / M
                cost = c_in + c_cached + c_out
                cost_total += cost
                llm_calls += 1
                dur = rng.randint(150, 4000) * 1_000_000
                llm_id = self._id(8)
                attrs: list[tuple[str, object]] = [
                    ("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", provider),
                    ("flowscope.span.kind", "llm"), ("gen_ai.request.model", model.rsplit("-20", 1)[0]),
                    ("server.address", "api." + provider + ".com"), ("server.port", 443),
                    ("flowscope.run.id", run_id), ("flowscope.node.name", node_name),
                    ("flowscope.node.step", step), ("gen_ai.response.model", model),
                    ("gen_ai.response.id", "resp_" + self._id(6).hex()),
                    ("gen_ai.response.finish_reasons", '["stop"]'),
                    ("gen_ai.usage.input_tokens", inp), ("gen_ai.usage.output_tokens", out),
                    ("gen_ai.usage.cache_read.input_tokens", cached),
                    ("flowscope.cost.usd", str(cost.normalize())),
                    ("flowscope.cost.input_usd", str(c_in.normalize())),
                    ("flowscope.cost.cached_input_usd", str(c_cached.normalize())),
                    ("flowscope.cost.cache_write_usd", "0"),
                    ("flowscope.cost.output_usd", str(c_out.normalize())),
                    ("flowscope.cost.source", "computed"), ("flowscope.pricing.version", "2026.11.1"),
                ]
                if reasoning:
                    attrs.append(("gen_ai.usage.reasoning.output_tokens", reasoning))
                llm = _span_template(f"chat {model}", Span.SPAN_KIND_CLIENT, attrs)
                llm.trace_id, llm.span_id, llm.parent_span_id = trace_id, llm_id, node_id
                llm.start_time_unix_nano, llm.end_time_unix_nano = t, t + dur
                llm.status.code = Status.STATUS_CODE_OK
                if rng.random() < 0.05:
                    llm.attributes.append(_kv("flowscope.retry.count", 1))
                    ev = llm.events.add(name="flowscope.retry", time_unix_nano=t + dur // 3)
                    ev.attributes.extend([_kv("flowscope.retry.attempt", 1), _kv("error.type", "RateLimitError"),
                                          _kv("flowscope.retry.status", 429)])
                http = _span_template("POST", Span.SPAN_KIND_CLIENT, [
                    ("http.request.method", "POST"), ("url.full", f"https://api.{provider}.com/v1/chat/completions"),
                    ("server.address", f"api.{provider}.com"), ("http.response.status_code", 200),
                    ("flowscope.run.id", run_id), ("flowscope.node.name", node_name), ("flowscope.node.step", step),
                ])
                http.trace_id, http.span_id, http.parent_span_id = trace_id, self._id(8), llm_id
                http.start_time_unix_nano, http.end_time_unix_nano = t + 1_000_000, t + dur - 1_000_000
                spans += [http, llm]
                t += dur + 100_000
            for _ in range(rng.choice((0, 1, 2, 2, 3, 4))):
                tool = rng.choice(TOOLS)
                dur = rng.randint(5, 400) * 1_000_000
                tool_id = self._id(8)
                ts = _span_template(f"execute_tool {tool}", Span.SPAN_KIND_INTERNAL, [
                    ("gen_ai.operation.name", "execute_tool"), ("gen_ai.tool.name", tool),
                    ("flowscope.span.kind", "tool"), ("flowscope.run.id", run_id),
                    ("flowscope.node.name", node_name), ("flowscope.node.step", step),
                ])
                ts.trace_id, ts.span_id, ts.parent_span_id = trace_id, tool_id, node_id
                ts.start_time_unix_nano, ts.end_time_unix_nano = t, t + dur
                db = _span_template("SELECT orders", Span.SPAN_KIND_CLIENT, [
                    ("db.system.name", "postgresql"), ("db.operation.name", "SELECT"),
                    ("db.query.text", "SELECT * FROM orders WHERE id = $1"),
                    ("flowscope.run.id", run_id), ("flowscope.node.name", node_name), ("flowscope.node.step", step),
                ])
                db.trace_id, db.span_id, db.parent_span_id = trace_id, self._id(8), tool_id
                db.start_time_unix_nano, db.end_time_unix_nano = t + 500_000, t + dur // 2
                spans += [db, ts]
                t += dur + 50_000
            failed = rng.random() < 0.03
            nattrs: list[tuple[str, object]] = [
                ("flowscope.span.kind", "node"), ("flowscope.node.name", node_name), ("flowscope.node.type", ntype),
                ("flowscope.node.step", step), ("flowscope.node.attempt", 0), ("flowscope.run.id", run_id),
            ]
            if ntype == "router":
                nattrs.append(("flowscope.router.branch", rng.choice(("refund", "answer", "escalate"))))
            if failed:
                nattrs.append(("error.type", "ValueError"))
            ns = _span_template(node_name, Span.SPAN_KIND_INTERNAL, nattrs)
            ns.trace_id, ns.span_id, ns.parent_span_id = trace_id, node_id, root_id
            ns.start_time_unix_nano, ns.end_time_unix_nano = node_start, t
            ns.status.code = Status.STATUS_CODE_ERROR if failed else Status.STATUS_CODE_UNSET
            if failed:
                ns.status.message = "ValueError: bad value"
            ev = ns.events.add(name="flowscope.state", time_unix_nano=t - 10_000)
            ev.attributes.extend([
                _kv("flowscope.state.seq", seq), _kv("flowscope.state.op", "set"),
                _kv("flowscope.state.path", f"{node_name}.result"),
                _kv("flowscope.state.value", json.dumps({"step": step, "ok": not failed, "items": [step, step + 1]})),
                _kv("flowscope.node.step", step),
            ])
            seq += 1
            spans.append(ns)
            t += 100_000
        root = _span_template(f"invoke_workflow {flow}", Span.SPAN_KIND_INTERNAL, [
            ("gen_ai.operation.name", "invoke_workflow"), ("gen_ai.workflow.name", flow),
            ("flowscope.span.kind", "run"), ("flowscope.run.id", run_id),
        ])
        root.trace_id, root.span_id = trace_id, root_id
        root.start_time_unix_nano, root.end_time_unix_nano = start_ns, t + 100_000
        ev = root.events.add(name="flowscope.state", time_unix_nano=start_ns + 1000)
        ev.attributes.extend([
            _kv("flowscope.state.seq", 0), _kv("flowscope.state.op", "snapshot"), _kv("flowscope.state.path", ""),
            _kv("flowscope.state.value", json.dumps({"question": "where is my order?", "user": run_id[:8]})),
            _kv("flowscope.node.step", -1),
        ])
        spans.append(root)
        truth = RunTruth(run_id, flow, service, start_ns, len(spans), llm_calls, cost_total, n_nodes)
        return service, spans, truth


def resource_spans(service: str, spans: list[Span]) -> ResourceSpans:
    rs = ResourceSpans()
    rs.resource.attributes.extend([
        _kv("service.name", service), _kv("telemetry.sdk.language", "python"),
        _kv("telemetry.sdk.name", "opentelemetry"), _kv("telemetry.sdk.version", "1.45.2"),
        _kv("host.name", f"{service}-7f9c"), _kv("process.pid", 4242),
    ])
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "flowscope", "0.1.0"
    ss.spans.extend(spans)
    return rs


def requests(
    gen: Generator,
    runs: int,
    *,
    start_ns: int,
    span_ns: int,
    batch_spans: int = 2000,
    truths: list[RunTruth] | None = None,
) -> Iterator[ExportTraceServiceRequest]:
    """Export requests of about ``batch_spans`` spans each, runs spread over ``span_ns``."""
    req = ExportTraceServiceRequest()
    count = 0
    step = span_ns // max(runs, 1)
    for i in range(runs):
        service, spans, truth = gen.run(start_ns + i * step + gen.rng.randint(0, max(step - 1, 0)))
        if truths is not None:
            truths.append(truth)
        req.resource_spans.append(resource_spans(service, spans))
        count += len(spans)
        if count >= batch_spans:
            yield req
            req = ExportTraceServiceRequest()
            count = 0
    if count:
        yield req
