"""OTLP/gRPC on its own port: same ingest path, same answers as OTLP/HTTP.

The collector runs as a real process with ``FLOWSCOPE_GRPC_PORT`` on a free
loopback port and API keys on; spans arrive through the official OTel Python
gRPC exporter and through a raw grpcio channel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent import futures
from decimal import Decimal

import grpc
import httpx
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from tests._collector_kit import CollectorProcess, free_port

KEY = "grpc-test-key-123"
READ_ONLY = "grpc-read-only-456"
OPERATOR = "grpc-operator-789"  # /metrics is the whole collector's: an operator key reads it
METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# gpt-4o-mini list prices, by hand, so the test does not trust the engine it checks.
IN, CACHED, OUT, M = Decimal("0.15"), Decimal("0.075"), Decimal("0.60"), Decimal(1_000_000)


class _KeyedCollector(CollectorProcess):
    """The shared collector process, readiness-polled with a key (keys guard /readyz too)."""

    def start(self, timeout_s: float = 60.0) -> CollectorProcess:
        env = {**os.environ, **self.env, "FLOWSCOPE_CLICKHOUSE_DSN": f"chdb://{self.data_dir}"}
        self._logf = open(self.log, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowscope_collector", "serve", "--port", str(self.port), "--log-level",
             "warning"],
            env=env, stdout=self._logf, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited early:\n{self.log.read_text()[-3000:]}")
            try:
                if _get(self, "/readyz").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"collector not ready in {timeout_s}s:\n{self.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def grpc_collector(tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    proc = _KeyedCollector(
        tmp_path_factory.mktemp("grpc") / "data",
        env={"FLOWSCOPE_GRPC_PORT": str(port), "FLOWSCOPE_API_KEYS": f"{KEY}=grpcproj,{READ_ONLY}=grpcproj:read,{OPERATOR}=ops:operator"},
    ).start()
    proc.grpc_port = port  # type: ignore[attr-defined]
    yield proc
    proc.stop()


def _get(col: CollectorProcess, path: str) -> httpx.Response:
    return httpx.get(col.url + path, headers={"authorization": f"Bearer {KEY}"}, timeout=5)


def _wait_run(col: CollectorProcess, run_id: str, spans: int) -> dict:
    deadline = time.monotonic() + 20
    last = None
    while time.monotonic() < deadline:
        r = _get(col, f"/api/v1/runs/{run_id}")
        if r.status_code == 200:
            last = r.json()
            if last["spans"] >= spans:
                return last
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} not visible; last={last}")


def _request(trace_id: bytes, *, service: str = "grpc-svc") -> ExportTraceServiceRequest:
    """A run in flowscope's conventions (docs/conventions.md) with a foreign LLM span in legacy names."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    now = time.time_ns()
    root, task, llm = os.urandom(8), os.urandom(8), os.urandom(8)
    for span_id, parent, name, attrs in (
        (root, b"", "invoke_workflow checkout", {"flowscope.span.kind": "run", "gen_ai.workflow.name": "checkout",
                                                 "gen_ai.operation.name": "invoke_workflow"}),
        (task, root, "plan", {"flowscope.span.kind": "node", "flowscope.node.name": "plan",
                              "flowscope.node.step": 0, "flowscope.node.type": "task"}),
        (llm, task, "openai.chat", {"gen_ai.system": "openai", "llm.request.type": "chat",
                                    "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini",
                                    "gen_ai.usage.prompt_tokens": 1000, "gen_ai.usage.completion_tokens": 100,
                                    "gen_ai.usage.cache_read_input_tokens": 400}),
    ):
        span = ss.spans.add()
        span.trace_id, span.span_id, span.parent_span_id, span.name = trace_id, span_id, parent, name
        span.start_time_unix_nano, span.end_time_unix_nano = now, now + 1_000_000
        now += 10
        for key, value in attrs.items():
            a = span.attributes.add()
            a.key = key
            if isinstance(value, int):
                a.value.int_value = value
            else:
                a.value.string_value = value
    return req


def _export(port: int, body: bytes, metadata: tuple = ((("authorization", f"Bearer {KEY}"),))) -> bytes:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary(METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        return call(body, metadata=metadata, timeout=30)


def test_grpc_and_http_give_the_same_run(grpc_collector) -> None:
    port = grpc_collector.grpc_port
    via_grpc, via_http = os.urandom(16), os.urandom(16)
    reply = ExportTraceServiceResponse.FromString(_export(port, _request(via_grpc).SerializeToString()))
    assert reply.partial_success.rejected_spans == 0
    r = httpx.post(grpc_collector.url + "/v1/traces", content=_request(via_http).SerializeToString(),
                   headers={"content-type": "application/x-protobuf", "authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text
    a = _wait_run(grpc_collector, via_grpc.hex(), 3)
    b = _wait_run(grpc_collector, via_http.hex(), 3)
    want = ((1000 - 400) * IN + 400 * CACHED + 100 * OUT) / M
    for s in (a, b):
        assert (s["flow"], s["service"], s["status"], s["llm_calls"]) == ("checkout", "grpc-svc", "ok", 1)
        assert (s["input_tokens"], s["cached_input_tokens"], s["output_tokens"]) == (1000, 400, 100)
        assert Decimal(s["cost_usd"]) == want
    nodes = _get(grpc_collector, f"/api/v1/runs/{via_grpc.hex()}/nodes").json()["nodes"]
    assert [(n["step"], n["name"], n["llm_calls"]) for n in nodes] == [(0, "plan", 1)]
    assert Decimal(nodes[0]["cost_usd"]) == want


def test_official_grpc_exporter(grpc_collector) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "grpc-exporter"}))
    exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{grpc_collector.grpc_port}", insecure=True,
                                headers={"authorization": f"Bearer {KEY}"}, compression=grpc.Compression.Gzip)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("invoke_workflow triage") as root:
        root.set_attributes({"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": "triage"})
        with tracer.start_as_current_span("chat gpt-4o-mini") as llm:
            llm.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 200,
                                "gen_ai.usage.output_tokens": 20})
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    s = _wait_run(grpc_collector, trace_id, 2)
    assert (s["flow"], s["service"], s["llm_calls"], s["input_tokens"]) == ("triage", "grpc-exporter", 1, 200)
    assert Decimal(s["cost_usd"]) == (200 * IN + 20 * OUT) / M


def test_errors_map_to_grpc_status_codes(grpc_collector) -> None:
    port = grpc_collector.grpc_port
    body = _request(os.urandom(16)).SerializeToString()
    with pytest.raises(grpc.RpcError) as err:
        _export(port, body, metadata=())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        _export(port, body, metadata=(("x-api-key", READ_ONLY),))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        _export(port, b"\xff\xff\xff not protobuf")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "protobuf" in err.value.details()
    bad = _request(os.urandom(16))
    bad.resource_spans[0].scope_spans[0].spans[0].span_id = b"\x01\x02"
    with pytest.raises(grpc.RpcError) as err:
        _export(port, bad.SerializeToString())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "span_id" in err.value.details()


class _BusyCollector:
    """Stands in for storage only: answers Overloaded once, then accepts.

    The receiver, grpcio, the exporter and its retry logic are the real ones;
    ClickHouse cannot be made reliably full on demand in a test.
    """

    def __init__(self) -> None:
        from flowscope_collector.settings import CollectorSettings

        self.settings = CollectorSettings(ack_wait_s=0)
        self.calls = 0

    def ingest(self, body: bytes, media: str, encoding: str | None, project: str) -> futures.Future:
        from flowscope_collector.admission import Overloaded
        from flowscope_collector.buffer.acks import Ack

        self.calls += 1
        ExportTraceServiceRequest.FromString(body)
        if self.calls == 1:
            raise Overloaded(1.0)
        ack = Ack()
        ack.set_result(None)
        return ack


def test_overload_is_resource_exhausted_with_retry_info() -> None:
    from flowscope_collector.server.otlp_grpc import GrpcReceiver

    busy = _BusyCollector()
    rx = GrpcReceiver(busy, "127.0.0.1", 0)  # type: ignore[arg-type]
    port = rx.start()
    try:
        with pytest.raises(grpc.RpcError) as err:
            _export(port, _request(os.urandom(16)).SerializeToString(), metadata=())
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        trailers = dict(err.value.trailing_metadata())
        status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
        assert status.code == code_pb2.RESOURCE_EXHAUSTED
        info = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(info)
        assert info.retry_delay.seconds >= 1
        assert error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"]) == info

        # The official exporter honours it: the retry lands.
        busy.calls = 0
        exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True)
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        results = []
        original = exporter.export
        exporter.export = lambda spans: results.append(original(spans)) or results[-1]  # type: ignore[method-assign]
        with provider.get_tracer("t").start_as_current_span("x"):
            pass
        provider.shutdown()
        assert results == [SpanExportResult.SUCCESS]
        assert busy.calls == 2
    finally:
        rx.stop()


def test_official_grpc_metric_exporter_is_accepted(grpc_collector) -> None:
    """``opentelemetry-instrument`` sends metrics to 4317 too: no UNIMPLEMENTED at exit (issue 20)."""
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("test").create_counter("requests").add(3, {"route": "/x"})
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None

    def received() -> float:
        text = httpx.get(grpc_collector.url + "/metrics", headers={"authorization": f"Bearer {OPERATOR}"},
                         timeout=5).text
        line = next(x for x in text.splitlines() if x.startswith("flowscope_metric_requests_total"))
        return float(line.split()[-1])

    before = received()
    exporter = OTLPMetricExporter(endpoint=f"127.0.0.1:{grpc_collector.grpc_port}", insecure=True,
                                  headers={"authorization": f"Bearer {KEY}"})
    assert exporter.export(data) == MetricExportResult.SUCCESS
    exporter.shutdown()
    assert received() == before + 1
    unauthenticated = OTLPMetricExporter(endpoint=f"127.0.0.1:{grpc_collector.grpc_port}", insecure=True)
    assert unauthenticated.export(data) == MetricExportResult.FAILURE
    unauthenticated.shutdown()
    with pytest.raises(grpc.RpcError) as err, grpc.insecure_channel(f"127.0.0.1:{grpc_collector.grpc_port}") as ch:
        call = ch.unary_unary("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)
        call(b"\xff\xff\xff not protobuf", metadata=(("authorization", f"Bearer {KEY}"),), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_opentelemetry_instrument_with_its_grpc_defaults_ends_quietly(grpc_collector, tmp_path) -> None:
    """The issue's own case: ``opentelemetry-instrument python app.py`` against 4317 (gRPC, the
    OTel default), metrics on, used to end with "Failed to export metrics ... UNIMPLEMENTED"."""
    pytest.importorskip("opentelemetry.distro", reason="opentelemetry-distro configures the SDK")
    (tmp_path / "app.py").write_text(
        "from opentelemetry import metrics, trace\n"
        "metrics.get_meter('app').create_counter('orders').add(1)\n"
        "with trace.get_tracer('app').start_as_current_span('checkout'):\n"
        "    pass\n"
        "print('DONE')\n")
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "OTEL_SERVICE_NAME": "otel-grpc-defaults", "OTEL_TRACES_EXPORTER": "otlp",
           "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "none",
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{grpc_collector.grpc_port}",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_INSECURE": "true",
           "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {KEY}"}
    r = subprocess.run(["opentelemetry-instrument", "python", "app.py"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "DONE" in r.stdout, r.stderr[-3000:]
    assert "Failed to export" not in r.stderr and "UNIMPLEMENTED" not in r.stderr, r.stderr[-3000:]
