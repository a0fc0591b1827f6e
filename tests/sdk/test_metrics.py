"""GenAI client metrics through the real OTel metrics SDK (in-memory reader and OTLP/HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import flowscope
from flowscope import metrics
from flowscope.testing import FakeProvider, Reply
from tests._llm_kit import ANTHROPIC_MODEL, CLAUDE_HAIKU_35, GPT_4O_MINI, MSGS, OPENAI_MODEL, Capture


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def test_token_duration_and_cost_metrics(cap: Capture, fake_provider: FakeProvider) -> None:
    reader = InMemoryMetricReader()
    metrics.enable(reader=reader)
    fake_provider.script(Reply(text="a", input_tokens=1200, cached_tokens=800, output_tokens=300), route="chat.completions")
    fake_provider.script(Reply(text="b", input_tokens=400, output_tokens=40), route="messages")
    fake_provider.fail_next(1, status=400, route="chat.completions")
    oai = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    oai.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    anthropic.Anthropic(base_url=fake_provider.anthropic_base_url, api_key="k").messages.create(
        model=ANTHROPIC_MODEL, max_tokens=8, messages=MSGS
    )
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)

    got = points(reader)
    tokens = {(p.attributes["gen_ai.provider.name"], p.attributes["gen_ai.token.type"]): p
              for p in got[metrics.TOKEN_USAGE_METRIC]}
    assert tokens[("openai", "input")].sum == 1200 and tokens[("openai", "input")].count == 1
    assert tokens[("openai", "output")].sum == 300
    assert tokens[("anthropic", "input")].sum == 400
    assert tokens[("anthropic", "output")].sum == 40
    assert all(p.attributes["gen_ai.operation.name"] == "chat" for p in got[metrics.TOKEN_USAGE_METRIC])

    durations = got[metrics.DURATION_METRIC]
    assert sum(p.count for p in durations) == 3
    failed = [p for p in durations if "error.type" in p.attributes]
    assert len(failed) == 1 and failed[0].attributes["gen_ai.provider.name"] == "openai"
    assert all(p.sum > 0 for p in durations)

    cost = {p.attributes["gen_ai.provider.name"]: p.value for p in got[metrics.COST_METRIC]}
    assert cost["openai"] == pytest.approx(float(GPT_4O_MINI.cost(1200, 300, cached=800)))
    assert cost["anthropic"] == pytest.approx(float(CLAUDE_HAIKU_35.cost(400, 40)))


def test_disabled_records_nothing(cap: Capture, fake_provider: FakeProvider) -> None:
    reader = InMemoryMetricReader()
    metrics.enable(reader=reader)
    metrics.disable()
    openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k").chat.completions.create(
        model=OPENAI_MODEL, messages=MSGS
    )
    assert not metrics.enabled()


class _Sink(BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        type(self).bodies.append((self.path, self.rfile.read(length)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def otlp_sink() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    _Sink.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Sink.bodies
    server.shutdown()
    server.server_close()


def test_init_metrics_true_exports_over_otlp(fake_provider: FakeProvider, otlp_sink, monkeypatch) -> None:
    url, bodies = otlp_sink
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    monkeypatch.setenv("FLOWSCOPE_METRICS", "true")  # the env var alone turns metrics on
    flowscope.init(service_name="tests", endpoint=url, exporter=InMemorySpanExporter(),
                   instrument=["openai"])
    try:
        assert metrics.enabled()
        openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k").chat.completions.create(
            model=OPENAI_MODEL, messages=MSGS
        )
        assert metrics.force_flush()
    finally:
        metrics.disable()
    paths = {path for path, _ in bodies}
    assert paths == {"/v1/metrics"}
    names = set()
    service = None
    for _, body in bodies:
        req = ExportMetricsServiceRequest.FromString(body)
        for rm in req.resource_metrics:
            for kv in rm.resource.attributes:
                if kv.key == "service.name":
                    service = kv.value.string_value
            for sm in rm.scope_metrics:
                names.update(m.name for m in sm.metrics)
    assert {metrics.TOKEN_USAGE_METRIC, metrics.DURATION_METRIC, metrics.COST_METRIC} <= names
    assert service is not None
