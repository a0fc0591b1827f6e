"""The spine: SDK → OTLP/HTTP → collector → chDB → API, all real, on loopback."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import time
from decimal import Decimal

import httpx
import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import flowscope
from flowscope.testing import Reply

# gpt-4o-mini list prices (USD per million tokens), written here by hand so the
# test does not trust the pricing engine it is checking.
IN, CACHED, OUT = Decimal("0.15"), Decimal("0.075"), Decimal("0.60")
M = Decimal(1_000_000)


def expected_cost(inp: int, cached: int, out: int) -> Decimal:
    return ((inp - cached) * IN + cached * CACHED + out * OUT) / M


def as_dec(s: str) -> Decimal:
    return Decimal(s)


def test_run_with_sync_async_and_streaming_calls(traced, fake_provider) -> None:
    fake_provider.script(
        Reply(text="plan", input_tokens=1200, cached_tokens=800, output_tokens=300, model="gpt-4o-mini-2024-07-18"),
        Reply(text="work", input_tokens=1000, cached_tokens=0, output_tokens=200, reasoning_tokens=0,
              model="gpt-4o-mini-2024-07-18"),
        Reply(text="streamed answer here", input_tokens=400, cached_tokens=0, output_tokens=50,
              model="gpt-4o-mini-2024-07-18"),
    )
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")
    aclient = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")
    msgs = [{"role": "user", "content": "hello"}]

    with flowscope.run("checkout-flow") as run:
        with flowscope.node("plan"):
            r1 = client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
        with flowscope.node("work"):
            r2 = asyncio.run(aclient.chat.completions.create(model="gpt-4o-mini", messages=msgs))
        with flowscope.node("finish"):
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=msgs, stream=True, stream_options={"include_usage": True}
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert r1.choices[0].message.content == "plan"
    assert r2.choices[0].message.content == "work"
    assert text == "streamed answer here"
    assert flowscope.force_flush()

    summary = traced.wait_for_run(run.id, spans=7)
    assert summary["run_id"] == run.id
    assert summary["flow"] == "checkout-flow"
    assert summary["service"] == "tests"
    assert summary["status"] == "ok"
    assert summary["spans"] == 7  # run + 3 nodes + 3 llm
    assert summary["llm_calls"] == 3
    assert summary["input_tokens"] == 2600
    assert summary["cached_input_tokens"] == 800
    assert summary["output_tokens"] == 550
    want = expected_cost(1200, 800, 300) + expected_cost(1000, 0, 200) + expected_cost(400, 0, 50)
    assert as_dec(summary["cost_usd"]) == want
    assert summary["unpriced_calls"] == 0
    assert [n["name"] for n in summary["by_node"]] == ["plan", "work", "finish"]
    assert as_dec(summary["by_node"][0]["cost_usd"]) == expected_cost(1200, 800, 300)
    assert summary["by_model"][0]["model"] == "gpt-4o-mini-2024-07-18"
    assert summary["by_model"][0]["provider"] == "openai"
    assert summary["url"].endswith(f"/api/v1/runs/{run.id}")
    assert run.cost_usd == want  # the SDK's own running total agrees with the collector

    nodes = traced.get(f"/api/v1/runs/{run.id}/nodes").json()["nodes"]
    assert [(n["step"], n["name"], n["status"], n["llm_calls"]) for n in nodes] == [
        (0, "plan", "ok", 1), (1, "work", "ok", 1), (2, "finish", "ok", 1)
    ]

    listed = traced.get("/api/v1/runs", params={"flow": "checkout-flow"}).json()["runs"]
    mine = [r for r in listed if r["run_id"] == run.id]
    assert mine and as_dec(mine[0]["cost_usd"]) == want and mine[0]["llm_calls"] == 3


def test_decorators_and_errors(traced, fake_provider) -> None:
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test", max_retries=0)

    @flowscope.node
    def plan() -> str:
        return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]).id

    @flowscope.node(type="tool")
    def explode() -> None:
        raise ValueError("boom")

    @flowscope.flow
    def my_flow() -> str:
        current = flowscope.current_run()
        assert current is not None
        plan()
        try:
            explode()
        except ValueError:
            pass
        return current.id

    run_id = my_flow()
    flowscope.force_flush()
    s = traced.wait_for_run(run_id, spans=4)
    assert s["flow"] == "my_flow"
    assert s["errors"] == 1
    assert s["status"] == "ok"  # the flow handled the failure
    nodes = traced.get(f"/api/v1/runs/{run_id}/nodes").json()["nodes"]
    assert [(n["name"], n["type"], n["status"]) for n in nodes] == [("plan", "task", "ok"), ("explode", "tool", "error")]
    assert nodes[1]["error"] == "ValueError"


async def test_async_decorated_flow(traced, fake_provider) -> None:
    client = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")

    @flowscope.node
    async def ask(i: int) -> None:
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": str(i)}])

    @flowscope.flow(name="fan-out")
    async def fan_out() -> str:
        await asyncio.gather(*(ask(i) for i in range(3)))
        return flowscope.current_run().id  # type: ignore[union-attr]

    run_id = await fan_out()
    flowscope.force_flush()
    s = traced.wait_for_run(run_id, spans=7)
    assert s["llm_calls"] == 3
    assert sorted(n["step"] for n in s["by_node"]) == [0, 1, 2]
    assert all(n["llm_calls"] == 1 for n in s["by_node"])  # each call parented to its own node


def test_error_run_status(traced) -> None:
    with pytest.raises(RuntimeError), flowscope.run("failing") as run, flowscope.node("only"):
        raise RuntimeError("nope")
    flowscope.force_flush()
    s = traced.wait_for_run(run.id, spans=2)
    assert s["status"] == "error" and s["errors"] == 2


# --- OTLP wire formats ----------------------------------------------------------------


def _otlp_json(trace_id: str, span_id: str, run_id: str, cost_model: str = "gpt-4o-mini") -> dict:
    now = time.time_ns()
    attr = lambda k, v: {"key": k, "value": v}  # noqa: E731
    return {
        "resourceSpans": [{
            "resource": {"attributes": [attr("service.name", {"stringValue": "json-svc"})]},
            "scopeSpans": [{
                "scope": {"name": "handmade"},
                "spans": [{
                    "traceId": trace_id, "spanId": span_id, "name": f"chat {cost_model}", "kind": 3,
                    "startTimeUnixNano": str(now - 5_000_000), "endTimeUnixNano": str(now),
                    "attributes": [
                        attr("flowscope.run.id", {"stringValue": run_id}),
                        attr("gen_ai.operation.name", {"stringValue": "chat"}),
                        attr("gen_ai.provider.name", {"stringValue": "openai"}),
                        attr("gen_ai.request.model", {"stringValue": cost_model}),
                        attr("gen_ai.usage.input_tokens", {"intValue": "1000"}),
                        attr("gen_ai.usage.output_tokens", {"intValue": 100}),
                    ],
                    "status": {"code": 1},
                }],
            }],
        }]
    }


def _post(url: str, body: bytes, ctype: str, **headers: str) -> httpx.Response:
    return httpx.post(url + "/v1/traces", content=body, headers={"content-type": ctype, **headers}, timeout=30)


def test_otlp_json_protobuf_and_gzip(collector) -> None:
    run_id = os.urandom(16).hex()
    trace_id = os.urandom(16).hex()
    doc = _otlp_json(trace_id, os.urandom(8).hex(), run_id)
    r = _post(collector.url, json.dumps(doc).encode(), "application/json")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")

    # the same shape as protobuf, gzip-compressed, with another span id
    doc2 = _otlp_json(trace_id, os.urandom(8).hex(), run_id)
    from google.protobuf import json_format

    import flowscope_collector.ingest.otlp as otlp_mod

    otlp_mod._fix_ids(doc2)
    req = json_format.ParseDict(doc2, ExportTraceServiceRequest())
    r = _post(collector.url, gzip.compress(req.SerializeToString()), "application/x-protobuf",
              **{"content-encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-protobuf"

    s = collector.wait_for_run(run_id, spans=2)
    assert s["llm_calls"] == 2
    assert s["service"] == "json-svc"
    # priced by the collector, since the producer sent no cost
    assert as_dec(s["cost_usd"]) == 2 * expected_cost(1000, 0, 100)
    spans = collector.get(f"/api/v1/runs/{run_id}/spans").json()
    attrs = spans["roots"][0]["attributes"]
    assert attrs["flowscope.cost.source"] == "computed"


def _span_ids(trace_id: bytes, span_id: bytes, parent: bytes = b"") -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add().spans
    spans.add(trace_id=b"T" * 16, span_id=b"S" * 8, name="fine", start_time_unix_nano=1)
    spans.add(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name="odd", start_time_unix_nano=1)
    return req.SerializeToString()


@pytest.mark.parametrize(
    ("body", "ctype", "status", "needle"),
    [
        (b"\x0a\x05garbage-not-protobuf", "application/x-protobuf", 400, "protobuf"),
        (_span_ids(b"t" * 16, b"s" * 4), "application/x-protobuf", 400, "span 'odd' has an invalid trace_id or span_id"),
        (_span_ids(b"t" * 12, b"s" * 8), "application/x-protobuf", 400, "span 'odd' has an invalid trace_id or span_id"),
        (_span_ids(b"t" * 16, b"s" * 8, b"p" * 3), "application/x-protobuf", 400, "invalid parent_span_id"),
        (b"{not json", "application/json", 400, "JSON"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "00"}]}]}]}',
         "application/json", 400, "hex"),
        (b"hello", "text/plain", 415, "Content-Type"),
    ],
)
def test_malformed_requests_get_clear_errors(collector, body, ctype, status, needle) -> None:
    r = _post(collector.url, body, ctype)
    assert r.status_code == status
    err = r.json()
    assert needle in err["error"] and err["status"] == status
    assert "bug" not in err["error"]  # the request's fault, said as such
    assert collector.get("/healthz").status_code == 200  # still serving


def test_bad_gzip_is_400(collector) -> None:
    r = _post(collector.url, b"\x1f\x8bnot really gzip", "application/x-protobuf", **{"content-encoding": "gzip"})
    assert r.status_code == 400 and "gzip" in r.json()["error"]


def test_exporter_retry_does_not_double_cost(collector) -> None:
    run_id = os.urandom(16).hex()
    doc = _otlp_json(os.urandom(16).hex(), os.urandom(8).hex(), run_id)
    body = json.dumps(doc).encode()
    for _ in range(3):  # the exporter timed out and sent it again, twice
        assert _post(collector.url, body, "application/json").status_code == 200
    # and once more re-batched with a different resource (a new request body)
    doc["resourceSpans"][0]["resource"]["attributes"].append(
        {"key": "host.name", "value": {"stringValue": "other"}}
    )
    assert _post(collector.url, json.dumps(doc).encode(), "application/json").status_code == 200
    s = collector.wait_for_run(run_id)
    assert s["spans"] == 1 and s["llm_calls"] == 1
    assert as_dec(s["cost_usd"]) == expected_cost(1000, 0, 100)
    metrics = collector.get("/metrics").text
    assert "flowscope_duplicate_requests_total" in metrics


def test_unknown_run_is_404_json(collector) -> None:
    r = collector.get("/api/v1/runs/" + "0" * 32)
    assert r.status_code == 404
    assert "no run" in r.json()["error"]


def test_ops_endpoints(collector) -> None:
    assert collector.get("/readyz").json()["status"] == "ready"
    v = collector.get("/version").json()
    assert v["version"] == flowscope.__version__ and v["pricing_version"]
    assert "flowscope_spans_written_total" in collector.get("/metrics").text
    assert collector.get("/openapi.json").status_code == 200
