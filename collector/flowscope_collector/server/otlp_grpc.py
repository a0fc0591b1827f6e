"""OTLP/gRPC receiver: ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` on 4317.

``MetricsService/Export`` is answered too, as ``POST /v1/metrics`` is: checked,
counted, not stored. Zero-code OTel (``opentelemetry-instrument``) sends metrics to
4317 beside the traces, and without it every app ended with "Failed to export
metrics ... UNIMPLEMENTED".

Many exporters (the OTel Collector, Go and Java SDKs, OpenLIT, Traceloop) default
to gRPC, so the collector takes it as well as OTLP/HTTP. The method receives the
request as raw protobuf bytes and hands them to :meth:`Collector.ingest`
exactly as ``POST /v1/traces`` does with an ``application/x-protobuf`` body:
one decode, limit, normalise and write path, and one set of refusals
(:mod:`flowscope_collector.admission`), given here in gRPC's terms.

Answers follow the OTLP/gRPC spec:

* accepted (possibly partially): OK with ``ExportTraceServiceResponse``
  (``partial_success`` says how many spans were rejected and why);
* malformed or over a per-request limit: ``INVALID_ARGUMENT`` (never retried);
  a message over ``max_body_bytes`` is refused by gRPC itself with
  ``RESOURCE_EXHAUSTED`` and no retry info, which exporters do not retry;
* buffer full: ``RESOURCE_EXHAUSTED`` *with* ``google.rpc.RetryInfo``, the only
  form of that code exporters retry; shutting down, or the log refused the
  write: ``UNAVAILABLE`` with ``RetryInfo``. The delay goes both in the
  status details (``grpc-status-details-bin``, read by Go/Java exporters) and
  in ``google.rpc.retryinfo-bin`` (read by the Python exporter);
* API keys, when configured, come from ``authorization: Bearer KEY`` or
  ``x-api-key`` metadata, as for HTTP: ``UNAUTHENTICATED`` /
  ``PERMISSION_DENIED`` otherwise.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any, NoReturn

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from ..admission import Refused, refusal
from ..ingest import otlp
from ..service import Collector
from .auth import INGEST, key_from_headers

logger = logging.getLogger("flowscope.collector")

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
METHOD = "Export"
FULL_METHOD = f"/{SERVICE}/{METHOD}"
METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"
DEFAULT_PROJECT = "default"

_CODES = {
    grpc.StatusCode.RESOURCE_EXHAUSTED: code_pb2.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE: code_pb2.UNAVAILABLE,
}


def _identity(b: bytes) -> bytes:
    return b


def _retry_metadata(code: grpc.StatusCode, message: str, retry_after_s: float) -> tuple[tuple[str, bytes], ...]:
    seconds = max(1.0, retry_after_s)
    info = error_details_pb2.RetryInfo(
        retry_delay=Duration(seconds=int(seconds), nanos=int((seconds % 1) * 1e9))
    )
    status = status_pb2.Status(code=_CODES[code], message=message)
    status.details.add().Pack(info)
    return (
        ("grpc-status-details-bin", status.SerializeToString()),
        ("google.rpc.retryinfo-bin", info.SerializeToString()),
    )


class TraceServiceHandler:
    """The Export method, independent of the server around it (so tests can call it)."""

    def __init__(self, collector: Collector, keys: Any = None) -> None:
        self.collector = collector
        self.keys = keys

    def _project(self, context: grpc.ServicerContext) -> str | None:
        """The caller's project, or None after aborting the call."""
        if not self.keys:
            return DEFAULT_PROJECT
        headers = [(k.encode("latin-1"), v if isinstance(v, bytes) else v.encode("latin-1"))
                   for k, v in context.invocation_metadata()]
        principal = self.keys.authenticate(key_from_headers(headers))
        if principal is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "missing or unknown API key: send 'authorization: Bearer <key>' or 'x-api-key: <key>' "
                          "metadata")
        if not principal.may(INGEST):
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"this API key (id {principal.key_id}) has no 'ingest' scope; use an ingest key")
        return str(principal.project)

    def export(self, body: bytes, context: grpc.ServicerContext) -> bytes:
        project = self._project(context)
        col = self.collector
        try:
            ack = col.ingest(body, otlp.PROTOBUF, None, project or DEFAULT_PROJECT)
            ack.result()
        except Exception as exc:
            self._refuse(context, refusal(exc))
        wait_s = col.settings.ack_wait_s
        if wait_s > 0 and ack.read_your_writes and not ack.stored.done():
            # Durable already; when the writer was idle also wait for the insert,
            # so a client can read what it just sent (as the HTTP receiver does).
            try:
                ack.stored.result(timeout=wait_s)
            except Exception:
                pass
        return otlp.response(otlp.PROTOBUF, ack.rejected_spans, ack.message)

    def export_metrics(self, body: bytes, context: grpc.ServicerContext) -> bytes:
        """Metrics are checked and counted, not stored: flowscope keeps traces (see ``POST /v1/metrics``)."""
        self._project(context)
        try:
            ExportMetricsServiceRequest.FromString(body)
        except DecodeError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"body is not a valid OTLP ExportMetricsServiceRequest: {exc}")
        self.collector.stats.metric_requests += 1
        return bytes(ExportMetricsServiceResponse().SerializeToString())

    @staticmethod
    def _refuse(context: grpc.ServicerContext, refused: Refused) -> NoReturn:
        """Abort with the gRPC form of ``refused``: retryable ones carry ``RetryInfo``."""
        if refused.retry_after_s is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, refused.message)
        else:
            code = grpc.StatusCode.RESOURCE_EXHAUSTED if refused.status == 429 else grpc.StatusCode.UNAVAILABLE
            context.set_trailing_metadata(_retry_metadata(code, refused.message, refused.retry_after_s))
            context.abort(code, refused.message)
        raise AssertionError("grpc's abort returned")


class GrpcReceiver:
    """A grpcio server carrying the TraceService (and MetricsService), started and stopped with the HTTP app."""

    def __init__(self, collector: Collector, host: str, port: int, keys: Any = None, workers: int = 8) -> None:
        self.handler = TraceServiceHandler(collector, keys)
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.workers = workers
        self._server: grpc.Server | None = None

    def start(self) -> int:
        """Bind and serve; returns the bound port. Raises RuntimeError if it cannot bind."""
        max_bytes = self.handler.collector.settings.max_body_bytes
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="otlp-grpc"),
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.so_reuseport", 0),  # a second collector on the same port must fail, not share
            ],
        )
        rpc = grpc.unary_unary_rpc_method_handler(
            self.handler.export, request_deserializer=_identity, response_serializer=_identity
        )
        metrics = grpc.unary_unary_rpc_method_handler(
            self.handler.export_metrics, request_deserializer=_identity, response_serializer=_identity
        )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: rpc}),
                                         grpc.method_handlers_generic_handler(METRICS_SERVICE, {METHOD: metrics})))
        host = self.host if ":" not in self.host or self.host.startswith("[") else f"[{self.host}]"
        try:
            bound = server.add_insecure_port(f"{host}:{self.requested_port}")
        except RuntimeError as exc:
            raise RuntimeError(f"cannot listen for OTLP/gRPC on {self.host}:{self.requested_port}: {exc}") from exc
        if not bound:
            raise RuntimeError(f"cannot listen for OTLP/gRPC on {self.host}:{self.requested_port} (in use?)")
        server.start()
        self._server = server
        self.port = bound
        logger.info("OTLP/gRPC on %s:%d", self.host, bound)
        return bound

    def stop(self, grace_s: float = 5.0) -> None:
        if self._server is not None:
            self._server.stop(grace_s).wait(grace_s + 1)
            self._server = None


def start_grpc(collector: Collector, keys: Any = None) -> GrpcReceiver | None:
    """Start the gRPC receiver if settings ask for it; a port in use is logged, not fatal.

    Not fatal because OTLP/HTTP on the main port is the primary interface: a
    second collector on one machine (tests, a dev box) must still come up.
    """
    settings = collector.settings
    port = settings.grpc_port
    if not port:
        return None
    receiver = GrpcReceiver(collector, settings.host, port, keys)
    try:
        receiver.start()
    except RuntimeError as exc:
        logger.warning("%s; OTLP/gRPC is off, OTLP/HTTP is unaffected", exc)
        return None
    return receiver
