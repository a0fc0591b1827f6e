"""Run attributes on every span, across services through W3C baggage, and waiting time.

The two-service test is all real: service A is this process, service B a
child process serving WSGI (wrapped by the standard OTel WSGI middleware) that
calls the fake provider with the real openai client; both export OTLP to the
real collector over loopback, and the run is read back through its API.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
import requests
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import flowscope
from flowscope.attributes import RunBaggagePropagator, apply_run_attributes, install_propagator
from flowscope.core import semconv, views
from flowscope.core.run_attributes import RUN_PARENT_ID, attribute_key, run_attributes_from
from flowscope.testing import FakeProvider, Reply

M = Decimal(1_000_000)
MINI_IN, MINI_OUT = Decimal("0.15"), Decimal("0.60")  # gpt-4o-mini, USD per 1M tokens
FOUR_IN, FOUR_OUT = Decimal("2.50"), Decimal("10.00")  # gpt-4o


def _attrs(cap, name: str) -> dict:
    spans = [s for s in cap.spans if s.name == name]
    assert spans, f"no span {name!r}; spans: {[s.name for s in cap.spans]}"
    return dict(spans[0].attributes)


# --- in one process ---------------------------------------------------------------------


def test_names_map_to_conventional_keys() -> None:
    assert attribute_key("user_id") == "user.id"
    assert attribute_key("session_id") == "gen_ai.conversation.id"
    assert attribute_key("tenant") == "flowscope.run.attr.tenant"
    assert attribute_key("flowscope.run.attr.tenant") == "flowscope.run.attr.tenant"
    assert attribute_key("user.id") == "user.id"


def test_set_run_attributes_reaches_open_and_later_spans(flowscope_capture) -> None:
    with flowscope.run("attrs-flow") as run:
        with flowscope.node("plan"):
            got = flowscope.set_run_attributes(
                user_id="u-42", tenant="acme", session_id="s-1", plan="pro", seats=3, bad_name_="x",
                **{"not valid!": "skipped"},
            )
        with flowscope.node("work"), flowscope.tool("lookup"):
            pass
    assert got == {
        "user.id": "u-42",
        "flowscope.run.attr.tenant": "acme",
        "gen_ai.conversation.id": "s-1",
        "flowscope.run.attr.plan": "pro",
        "flowscope.run.attr.seats": 3,
        "flowscope.run.attr.bad_name_": "x",
    }
    for name in ("invoke_workflow attrs-flow", "plan", "work", "execute_tool lookup"):
        a = _attrs(flowscope_capture, name)
        assert a["flowscope.run.id"] == run.id, name
        assert a["user.id"] == "u-42", name
        assert a["flowscope.run.attr.tenant"] == "acme", name
        assert a["gen_ai.conversation.id"] == "s-1", name
        assert a["flowscope.run.attr.seats"] == 3, name
    assert not any("not valid!" in k for s in flowscope_capture.spans for k in s.attributes)


def test_the_test_kit_summary_says_who_the_run_was_for(flowscope_capture) -> None:
    """The in-memory summary answers as GET /api/v1/runs/{id} does: user, session, tenant, attributes."""
    with flowscope.run("who-kit") as run, flowscope.node("plan"):
        flowscope.set_run_attributes(user_id="u-7", tenant="acme", plan="pro")
    s = flowscope_capture.run(run.id).summary
    assert (s["user_id"], s["session_id"], s["tenant"]) == ("u-7", None, "acme")
    assert s["attributes"] == {"user_id": "u-7", "tenant": "acme", "plan": "pro"}


def test_set_run_attributes_outside_a_run_does_nothing(flowscope_capture) -> None:
    assert flowscope.set_run_attributes(user_id="u-1") == {}
    with trace.get_tracer("t").start_as_current_span("plain"):
        assert flowscope.set_run_attributes(user_id="u-1") == {}
    assert "user.id" not in _attrs(flowscope_capture, "plain")


def test_runtime_metadata_maps_onto_the_same_attributes(flowscope_capture) -> None:
    """LangGraph ``config["metadata"]`` and PenguiFlow ``Message.meta`` are plain mappings."""
    from penguiflow import Headers, Message

    langgraph_metadata = {"user_id": "u-7", "session_id": "thread-9", "langgraph_step": 3,
                          "flowscope": {"tenant": "acme", "tier": "gold"}}
    assert run_attributes_from(langgraph_metadata) == {
        "user.id": "u-7", "gen_ai.conversation.id": "thread-9",
        "flowscope.run.attr.tenant": "acme", "flowscope.run.attr.tier": "gold",
    }
    msg = Message(payload={"q": "hi"}, headers=Headers(tenant="acme"), meta={"user_id": "u-8", "trace": "x"})
    with flowscope.run("meta-flow"):
        applied = apply_run_attributes({**msg.meta, "tenant": msg.headers.tenant})
        with flowscope.node("n"):
            pass
    assert applied == {"user.id": "u-8", "flowscope.run.attr.tenant": "acme"}
    a = _attrs(flowscope_capture, "n")
    assert a["user.id"] == "u-8" and a["flowscope.run.attr.tenant"] == "acme"
    assert "flowscope.run.attr.trace" not in a  # other metadata stays out


def test_propagator_is_installed_once_and_keeps_others() -> None:
    before = propagate.get_global_textmap()
    try:
        propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()]))
        assert install_propagator()
        assert install_propagator()
        members = propagate.get_global_textmap()._propagators  # type: ignore[attr-defined]
        assert [type(p) for p in members] == [TraceContextTextMapPropagator, RunBaggagePropagator]
    finally:
        propagate.set_global_textmap(before)
        install_propagator()


def test_baggage_carries_the_run_and_downstream_spans_join_it(flowscope_capture) -> None:
    install_propagator()
    headers: dict[str, str] = {}
    with flowscope.run("upstream") as run:
        flowscope.set_run_attributes(user_id="u 1", tenant="acme")  # a space must survive encoding
        propagate.inject(headers)
    assert "traceparent" in headers
    assert f"flowscope.run.id={run.id}" in headers["baggage"]

    # The receiving side: only the headers cross over, no local run.
    token = otel_context.attach(propagate.extract(headers, context=otel_context.Context()))
    try:
        assert flowscope.current_run() is None
        with trace.get_tracer("svc-b").start_as_current_span("handle request"):
            with trace.get_tracer("svc-b").start_as_current_span("db query"):
                pass
            # a flow of its own in the downstream service stays its own run, linked to the caller
            with flowscope.run("downstream") as sub, flowscope.node("sub-node"):
                pass
    finally:
        otel_context.detach(token)
    for name in ("handle request", "db query"):
        a = _attrs(flowscope_capture, name)
        assert a["flowscope.run.id"] == run.id
        assert a["user.id"] == "u 1"
        assert a["flowscope.run.attr.tenant"] == "acme"
    sub_attrs = _attrs(flowscope_capture, "sub-node")
    assert sub_attrs["flowscope.run.id"] == sub.id != run.id
    assert sub_attrs[RUN_PARENT_ID] == run.id
    # and the upstream run's view includes the downstream work
    assert flowscope_capture.run(run).summary["spans"] == 3


def test_no_run_no_baggage() -> None:
    install_propagator()
    headers: dict[str, str] = {}
    propagate.inject(headers, context=baggage.set_baggage("other", "x", otel_context.Context()))
    assert headers.get("baggage") == "other=x"


# --- waiting ----------------------------------------------------------------------------


def test_waiting_is_its_own_span_and_reported(flowscope_capture) -> None:
    with flowscope.run("approval-flow") as run:
        with flowscope.node("draft"):
            pass
        with flowscope.node("review"):
            with flowscope.wait("approval"):
                pass
            flowscope.record_wait("interrupt", 1_000_000_000, 1_250_000_000)  # 250 ms, known after the fact
    cap_run = flowscope_capture.run(run)
    waits = [s for s in cap_run.spans if s.kind == semconv.KIND_WAIT]
    assert sorted(s.name for s in waits) == ["wait approval", "wait interrupt"]
    assert all(s.node_name == "review" and not s.is_llm for s in waits)
    live = next(s for s in waits if s.name == "wait approval")
    assert cap_run.summary["waiting_ms"] == views.ms(250_000_000 + live.duration_ns)
    assert cap_run.summary["llm_calls"] == 0
    assert [n["name"] for n in cap_run.nodes] == ["draft", "review"]


def test_waiting_ms_counts_overlaps_once() -> None:
    def wait_span(start: int, end: int) -> views.SpanRecord:
        return views.SpanRecord(run_id="r", trace_id="t", span_id=f"{start}", parent_span_id="", name="wait x",
                                start_ns=start, duration_ns=end - start, kind=semconv.KIND_WAIT)

    spans = [wait_span(0, 100_000_000), wait_span(50_000_000, 150_000_000), wait_span(300_000_000, 400_000_000)]
    assert views.waiting_ms(spans) == 250.0
    assert views.waiting_ms([]) == 0.0


# --- two services over real HTTP --------------------------------------------------------

SERVICE_B = textwrap.dedent(
    """
    import json, sys
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    import openai
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    import flowscope
    from flowscope.attributes import remote_run_id

    collector_url, provider_url = sys.argv[1], sys.argv[2]
    flowscope.init(service_name="billing", endpoint=collector_url)
    client = openai.OpenAI(base_url=provider_url, api_key="sk-test", max_retries=0)

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/flush":
            body = {"flushed": flowscope.force_flush()}
        else:
            reply = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "charge the card"}])
            body = {"text": reply.choices[0].message.content, "run_id": remote_run_id()}
        start_response("200 OK", [("content-type", "application/json")])
        return [json.dumps(body).encode()]

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, OpenTelemetryMiddleware(app), handler_class=Quiet)
    print("PORT", server.server_port, flush=True)
    server.serve_forever()
    """
)


@pytest.fixture(scope="module")
def shared_provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fp:
        yield fp


@pytest.fixture(scope="module")
def service_b(collector, shared_provider: FakeProvider, tmp_path_factory) -> Iterator[str]:
    script = Path(tmp_path_factory.mktemp("svc-b")) / "service_b.py"
    script.write_text(SERVICE_B)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.Popen(
        [sys.executable, str(script), collector.url, shared_provider.openai_base_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("PORT "):
            proc.kill()
            raise RuntimeError(f"service B did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _call_b_with_httpx(url: str) -> dict:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    with httpx.Client(timeout=30) as client:
        HTTPXClientInstrumentor.instrument_client(client)
        return client.post(url + "/charge").json()


def _call_b_with_requests(url: str) -> dict:
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    inst = RequestsInstrumentor()
    inst.instrument()
    try:
        return requests.post(url + "/charge", timeout=30).json()
    finally:
        inst.uninstrument()


@pytest.mark.parametrize("http_client", ["httpx", "requests"])
def test_two_services_are_one_run_with_one_cost(traced, service_b, shared_provider, http_client) -> None:
    shared_provider.script(Reply(text="plan", input_tokens=1000, output_tokens=100,
                                 model="gpt-4o-mini-2024-07-18"), model="gpt-4o-mini")
    shared_provider.script(Reply(text="charged", input_tokens=400, output_tokens=40, model="gpt-4o-2024-08-06"),
                           model="gpt-4o")
    client = openai.OpenAI(base_url=shared_provider.openai_base_url, api_key="sk-test", max_retries=0)
    call = _call_b_with_httpx if http_client == "httpx" else _call_b_with_requests
    tenant = f"acme-{http_client}"  # the collector is shared by the session: one tenant per case

    with flowscope.run("checkout") as run:
        flowscope.set_run_attributes(user_id="u-42", tenant=tenant)
        with flowscope.node("plan"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "plan"}])
        with flowscope.node("bill"):
            answer = call(service_b)
    assert answer == {"text": "charged", "run_id": run.id}
    assert flowscope.force_flush()
    assert httpx.get(service_b + "/flush", timeout=30).json() == {"flushed": True}

    # A: run, plan, chat, bill, HTTP client span; B: HTTP server span, chat
    summary = traced.wait_for_run(run.id, spans=7)
    assert summary["spans"] == 7
    assert summary["llm_calls"] == 2
    cost_a = (1000 * MINI_IN + 100 * MINI_OUT) / M
    cost_b = (400 * FOUR_IN + 40 * FOUR_OUT) / M
    assert Decimal(summary["cost_usd"]) == cost_a + cost_b
    assert {(m["model"], Decimal(m["cost_usd"])) for m in summary["by_model"]} == {
        ("gpt-4o-mini-2024-07-18", cost_a), ("gpt-4o-2024-08-06", cost_b)}
    by_node = {n["name"]: Decimal(n["cost_usd"]) for n in summary["by_node"]}
    assert by_node == {"plan": cost_a, "bill": cost_b}  # B's call is under the node that made the request

    tree = traced.get(f"/api/v1/runs/{run.id}/spans").json()
    flat: list[dict] = []
    stack = list(tree["roots"])
    while stack:
        s = stack.pop()
        flat.append(s)
        stack.extend(s["children"])
    assert len(tree["roots"]) == 1  # one tree: B's spans hang under A's HTTP client span
    billing = [s for s in flat if s["service"] == "billing"]
    assert len(billing) == 2
    for s in billing:
        assert s["attributes"]["flowscope.run.id"] == run.id
        assert s["attributes"]["user.id"] == "u-42"
        assert s["attributes"]["flowscope.run.attr.tenant"] == tenant

    # costs roll up by the run attribute's short name, both services' calls included
    rows = traced.get("/api/v1/costs", params={"group_by": "attr:tenant"}).json()["groups"]
    mine = [r for r in rows if r["key"] == tenant]
    assert len(mine) == 1, rows
    assert (mine[0]["llm_calls"], Decimal(mine[0]["cost_usd"])) == (2, cost_a + cost_b)
