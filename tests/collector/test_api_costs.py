"""Runs list (filters, sorts, cursor pages) and cost roll-ups, on hand-built OTLP sent over real HTTP.

Hand-built spans carry their cost (``flowscope.cost.source=provider``), so
every expected figure below is exact and independent of the pricing catalog.
Timestamps sit in March 2021, a window no other test writes into.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

T0 = int(datetime(2021, 3, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000_000
HOUR = 3_600_000_000_000


@dataclass
class Call:
    provider: str
    model: str
    inp: int
    out: int
    cost: str
    node: str


@dataclass
class RunSpec:
    flow: str
    start_ns: int
    duration_ns: int
    calls: list[Call] = field(default_factory=list)
    error: bool = False
    finished: bool = True
    run_id: str = field(default_factory=lambda: os.urandom(16).hex())

    @property
    def cost(self) -> Decimal:
        return sum((Decimal(c.cost) for c in self.calls), Decimal(0))


def _attr(span: Span, key: str, value: str | int) -> None:
    kv = span.attributes.add()
    kv.key = key
    if isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.string_value = value


def otlp_request(service: str, runs: list[RunSpec]) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    ss.scope.name = "hand-built"
    for r in runs:
        trace_id, root_id = bytes.fromhex(r.run_id), os.urandom(8)
        t = r.start_ns + 1000
        for step, c in enumerate(r.calls):
            node_id = os.urandom(8)
            node = ss.spans.add(trace_id=trace_id, span_id=node_id, parent_span_id=root_id, name=c.node,
                                start_time_unix_nano=t, end_time_unix_nano=t + 2000)
            for k, v in (("flowscope.span.kind", "node"), ("flowscope.node.name", c.node),
                         ("flowscope.node.step", step), ("flowscope.run.id", r.run_id)):
                _attr(node, k, v)
            llm = ss.spans.add(trace_id=trace_id, span_id=os.urandom(8), parent_span_id=node_id,
                               name=f"chat {c.model}", kind=Span.SPAN_KIND_CLIENT,
                               start_time_unix_nano=t + 100, end_time_unix_nano=t + 1900)
            for k, v in (("flowscope.span.kind", "llm"), ("gen_ai.operation.name", "chat"),
                         ("gen_ai.provider.name", c.provider), ("gen_ai.request.model", c.model),
                         ("gen_ai.usage.input_tokens", c.inp), ("gen_ai.usage.output_tokens", c.out),
                         ("flowscope.cost.usd", c.cost), ("flowscope.cost.source", "provider"),
                         ("flowscope.run.id", r.run_id), ("flowscope.node.name", c.node),
                         ("flowscope.node.step", step), ("team", f"team-{c.provider}")):
                _attr(llm, k, v)
            t += 3000
        if r.finished:
            root = ss.spans.add(trace_id=trace_id, span_id=root_id, name=f"invoke_workflow {r.flow}",
                                start_time_unix_nano=r.start_ns, end_time_unix_nano=r.start_ns + r.duration_ns)
            root.status.code = Status.STATUS_CODE_ERROR if r.error else Status.STATUS_CODE_OK
            for k, v in (("flowscope.span.kind", "run"), ("gen_ai.workflow.name", r.flow),
                         ("flowscope.run.id", r.run_id)):
                _attr(root, k, v)
    return req.SerializeToString()


MINI = ("openai", "gpt-4o-mini")
SONNET = ("anthropic", "claude-sonnet-4")


def _call(model: tuple[str, str], inp: int, out: int, cost: str, node: str) -> Call:
    return Call(model[0], model[1], inp, out, cost, node)


@pytest.fixture(scope="module")
def dataset(collector) -> tuple[str, list[RunSpec]]:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    runs = [
        RunSpec("checkout", T0 + 1 * HOUR, 5_000_000, [_call(MINI, 1000, 100, "0.001", "plan"),
                                                       _call(SONNET, 2000, 300, "0.0105", "draft")]),
        RunSpec("checkout", T0 + 2 * HOUR, 9_000_000, [_call(MINI, 500, 50, "0.0004", "plan")], error=True),
        RunSpec("refund", T0 + 3 * HOUR, 1_000_000, [_call(SONNET, 4000, 400, "0.018", "draft")]),
        RunSpec("refund", T0 + 26 * HOUR, 7_000_000, [_call(MINI, 100, 10, "0.0001", "plan"),
                                                      _call(MINI, 200, 20, "0.0002", "check")]),
        RunSpec("checkout", T0 + 27 * HOUR, 3_000_000, [_call(SONNET, 1000, 100, "0.0045", "draft")]),
        RunSpec("checkout", T0 + 28 * HOUR, 2_000_000, [_call(MINI, 300, 30, "0.0003", "plan")], finished=False),
    ]
    body = otlp_request(service, runs)
    r = httpx.post(collector.url + "/v1/traces", content=body,
                   headers={"content-type": "application/x-protobuf"}, timeout=30)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = collector.get("/api/v1/runs", params={"service": service, "limit": 100}).json()["runs"]
        if len(got) == len(runs) and sum(x["llm_calls"] for x in got) == 8:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"dataset not visible: {got}")
    return service, runs


def _ids(collector, **params) -> list[str]:
    r = collector.get("/api/v1/runs", params={"limit": 100, **params})
    assert r.status_code == 200, r.text
    return [x["run_id"] for x in r.json()["runs"]]


def test_runs_list_filters(collector, dataset) -> None:
    service, runs = dataset
    ids = [r.run_id for r in runs]
    assert _ids(collector, service=service) == ids[::-1]  # newest first
    assert _ids(collector, service=service, flow="refund") == [ids[3], ids[2]]
    assert _ids(collector, service=service, status="error") == [ids[1]]
    assert _ids(collector, service=service, status="running") == [ids[5]]
    assert _ids(collector, service=service, since="2021-03-01T02:00:00Z", until="2021-03-02T02:30:00Z") == [
        ids[3], ids[2], ids[1]]
    assert set(_ids(collector, service=service, min_cost="0.004")) == {ids[0], ids[2], ids[4]}
    row = collector.get("/api/v1/runs", params={"service": service, "flow": "refund", "limit": 1}).json()
    first = row["runs"][0]
    assert first["status"] == "ok" and Decimal(first["cost_usd"]) == Decimal("0.0003")
    assert first["duration_ms"] == 7.0 and first["llm_calls"] == 2 and first["input_tokens"] == 300
    running = collector.get("/api/v1/runs", params={"service": service, "status": "running"}).json()["runs"][0]
    assert running["end"] is None


def test_runs_list_sorts_and_cursor_pages(collector, dataset) -> None:
    service, runs = dataset
    by_cost = [r.run_id for r in sorted(runs, key=lambda r: (r.cost, r.run_id), reverse=True)]  # ties: by id
    assert _ids(collector, service=service, sort="cost") == by_cost
    assert _ids(collector, service=service, sort="cost", order="asc") == by_cost[::-1]
    finished = [r for r in runs if r.finished]
    longest = [r.run_id for r in sorted(finished, key=lambda r: r.duration_ns, reverse=True)]
    assert _ids(collector, service=service, sort="duration")[:3] == longest[:3]
    for sort, order in (("start", "desc"), ("cost", "desc"), ("cost", "asc"), ("duration", "asc")):
        whole = _ids(collector, service=service, sort=sort, order=order)
        paged, cursor, pages = [], None, 0
        while True:
            params = {"service": service, "sort": sort, "order": order, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = collector.get("/api/v1/runs", params=params).json()
            paged += [x["run_id"] for x in page["runs"]]
            pages += 1
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert paged == whole and pages == 3, (sort, order)


@pytest.mark.parametrize(("params", "needle"), [
    ({"cursor": "not-a-cursor"}, "cursor"), ({"since": "yesterday"}, "ISO 8601"),
    ({"since": "1h", "until": "2h"}, "before"), ({"sort": "price"}, "sort"), ({"min_cost": "-1"}, "min_cost"),
    ({"limit": 0}, "limit"),
])
def test_runs_list_bad_parameters(collector, params, needle) -> None:
    r = collector.get("/api/v1/runs", params=params)
    assert r.status_code == 422 and needle in r.json()["error"]


WINDOW = {"since": "2021-03-01T00:00:00Z", "until": "2021-03-03T00:00:00Z"}


def _groups(collector, group_by: str, **extra) -> dict[str, dict]:
    r = collector.get("/api/v1/costs", params={"group_by": group_by, **WINDOW, **extra})
    assert r.status_code == 200, r.text
    body = r.json()
    assert Decimal(body["total_usd"]) == sum(Decimal(g["cost_usd"]) for g in body["groups"])
    return {g["key"]: g for g in body["groups"]}


def test_costs_by_model_provider_node_day(collector, dataset) -> None:
    _, runs = dataset
    calls = [c for r in runs for c in r.calls]

    def total(pred) -> Decimal:
        return sum((Decimal(c.cost) for c in calls if pred(c)), Decimal(0))

    m = _groups(collector, "model")
    assert list(m) == ["claude-sonnet-4", "gpt-4o-mini"]  # most expensive first
    assert Decimal(m["claude-sonnet-4"]["cost_usd"]) == total(lambda c: c.model == "claude-sonnet-4") == Decimal(
        "0.033")
    assert m["gpt-4o-mini"]["provider"] == "openai" and m["gpt-4o-mini"]["llm_calls"] == 5
    assert m["gpt-4o-mini"]["input_tokens"] == 2100 and m["gpt-4o-mini"]["output_tokens"] == 210
    p = _groups(collector, "provider")
    assert Decimal(p["openai"]["cost_usd"]) == total(lambda c: c.provider == "openai")
    n = _groups(collector, "node")
    assert {k: Decimal(v["cost_usd"]) for k, v in n.items()} == {
        "draft": Decimal("0.033"), "plan": Decimal("0.0018"), "check": Decimal("0.0002")}
    d = _groups(collector, "day")
    assert list(d) == ["2021-03-01", "2021-03-02"]
    assert Decimal(d["2021-03-01"]["cost_usd"]) == Decimal("0.0299") and d["2021-03-02"]["llm_calls"] == 4
    narrow = _groups(collector, "model", since="2021-03-02T00:00:00Z")
    assert Decimal(narrow["gpt-4o-mini"]["cost_usd"]) == Decimal("0.0006")


def test_costs_by_service_flow_and_attribute(collector, dataset) -> None:
    service, runs = dataset
    s = _groups(collector, "service")
    assert Decimal(s[service]["cost_usd"]) == sum(r.cost for r in runs)
    f = _groups(collector, "flow")
    # the unfinished run has no root span yet, so no flow
    assert Decimal(f["checkout"]["cost_usd"]) == Decimal("0.0164")
    assert Decimal(f["refund"]["cost_usd"]) == Decimal("0.0183")
    a = _groups(collector, "attr:team")
    assert Decimal(a["team-anthropic"]["cost_usd"]) == Decimal("0.033") and a["team-openai"]["llm_calls"] == 5


def test_costs_bad_group_by(collector) -> None:
    r = collector.get("/api/v1/costs", params={"group_by": "colour"})
    assert r.status_code == 422 and "group_by" in r.json()["error"]


def test_a_runs_flow_is_the_same_in_the_list_the_summary_and_the_filter(collector, dataset) -> None:
    """One rule for a run's flow: its root's name. A run whose root has not arrived (still
    running) has no flow yet, in every view, rather than its first node's name in one."""
    service, runs = dataset
    listed = {r["run_id"]: r["flow"] for r in
              collector.get("/api/v1/runs", params={"service": service, "limit": 100}).json()["runs"]}
    for spec in runs:
        summary = collector.get(f"/api/v1/runs/{spec.run_id}").json()
        assert summary["flow"] == listed[spec.run_id] == (spec.flow if spec.finished else ""), spec
        if summary["flow"]:
            assert spec.run_id in _ids(collector, service=service, flow=summary["flow"])
