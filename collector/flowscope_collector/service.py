"""The collector's moving parts, owned by one object with a start and a stop.

The receivers (:mod:`flowscope_collector.server`) only translate between
their protocol and this object, so the same ingest path serves OTLP/HTTP and
OTLP/gRPC.

The path of a request: admission lets it in (:mod:`.admission`), ingest
decodes and checks it (refusals are 4xx with a reason), applies the per-span
limits and builds its rows (:mod:`.ingest`), the write-ahead log makes it
durable and the answer goes out once the log is fsync'd; the background
writer (:mod:`.buffer`) moves it to ClickHouse (:mod:`.store`). In server
mode ClickHouse may be down at start-up or at any time later: requests are
still accepted into the log, ``/readyz`` says not ready, and the writer
drains the log when ClickHouse is back.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .admission import Admission
from .buffer.acks import Ack, RecentRequests
from .buffer.wal import WAL
from .buffer.writer import Writer
from .ingest import otlp
from .ingest.limits import RequestLimits, SpanLimiter
from .ingest.records import wal_payload
from .ingest.rows import RowBuilder
from .settings import CollectorSettings
from .store.connection import Target, connect, parse_dsn
from .store.queries import Store
from .store.schema import SchemaOptions, applied_versions, latest_version, migrate

logger = logging.getLogger("flowscope.collector")


@dataclass
class IngestStats:
    """Counters of what ingest saw, for ``/metrics``."""

    requests: int = 0
    spans_received: int = 0
    spans_rejected: int = 0
    requests_rejected: int = 0
    duplicate_requests: int = 0
    values_truncated: int = 0
    attributes_dropped: int = 0
    events_dropped: int = 0
    metric_requests: int = 0


def default_wal_dir(target: Target) -> str:
    """Next to the data for chDB; ``./flowscope-wal`` for a server (mount a volume there)."""
    if target.embedded and target.path:
        return os.path.join(target.path, "flowscope-wal")
    return os.path.abspath("flowscope-wal")


class Collector:
    """One collector: owns its parts, starts and stops them, and runs a request through them.

    The parts do not know each other's owner: the writer gets the row builder
    it needs, admission gets the writer it guards, so this is the only place
    that knows the whole pipeline.
    """

    def __init__(self, settings: CollectorSettings, client: Client | None = None) -> None:
        self.settings = settings
        self.target: Target = parse_dsn(settings.dsn)
        self.schema = SchemaOptions(
            database=self.target.database, cluster=settings.cluster, ttl_days=settings.ttl_days,
            sharded=settings.sharded,
        )
        self._client = client
        self.client: Client | None = None
        self.store: Store | None = None
        # why the last attempt to reach ClickHouse failed (None once connected), for /readyz
        # and the API's 503: the writer has no error of its own until it has a connection
        self.connect_error: str | None = None
        self.writer: Writer | None = None
        self.wal: WAL | None = None
        self.wal_dir = settings.wal_dir or default_wal_dir(self.target)
        self.limits = RequestLimits(max_attributes=settings.max_attributes, max_events=settings.max_events,
                                    max_value_chars=settings.max_value_chars)
        self.rows = RowBuilder(self.limits)
        self.admission = Admission(settings)
        self.stats = IngestStats()
        self.recent = RecentRequests()
        self.started_at = time.time()
        self.schema_version: int | None = None
        self._store_lock = threading.Lock()

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        self.wal = WAL(self.wal_dir, segment_bytes=s.wal_segment_bytes, fsync=s.wal_fsync)
        recovery = self.wal.open()
        if recovery.truncated_bytes:
            logger.warning("write-ahead log: a torn, never-acknowledged record was cut off (%d bytes)",
                           recovery.truncated_bytes)
        try:
            self._ensure_store()
        except Exception as exc:
            if self.target.embedded or self._client is not None:
                self.wal.close()
                raise
            # A server that is down must not stop us from accepting spans: they
            # wait in the log and the writer connects when it can.
            logger.warning("ClickHouse at %s is unreachable (%s); accepting spans into the write-ahead log "
                           "in %s until it is back", self.target.redacted(), exc, self.wal_dir)
        self.writer = Writer(
            self.wal,
            self.schema.database,
            self.rows,
            self._writer_client,
            client=self._writer_client() if self.client is not None else None,
            max_batch_spans=s.max_batch_spans,
            max_batch_bytes=s.max_batch_bytes,
            max_cache_bytes=s.max_cache_bytes,
        )
        for rec in recovery.committed:
            done = Ack()
            done.set_result(None)
            done.stored.set_result(None)
            self.recent.remember(rec.digest, done)
        for rec, ack in self.writer.recover(recovery):
            self.recent.remember(rec.digest, ack)
        self.writer.start()
        self.admission.open(self.writer)
        logger.info("flowscope collector storing in %s, write-ahead log in %s", self.target.redacted(), self.wal_dir)

    def stop(self) -> None:
        self.admission.close()
        if self.writer is not None:
            self.writer.stop(self.settings.drain_timeout_s)
        if self.wal is not None:
            self.wal.close()

    def migrate(self) -> int:
        """Apply the schema and return its version, without opening the write-ahead log."""
        self._ensure_store()
        assert self.schema_version is not None
        return self.schema_version

    def _ensure_store(self) -> Client:
        """Connect and migrate once; callable again after a failure."""
        with self._store_lock:
            if self.client is None:
                try:
                    client = self._client or connect(self.target)
                    migrate(client, self.schema)
                    self.schema_version = max(applied_versions(client, self.schema))
                except Exception as exc:
                    self.connect_error = (f"ClickHouse at {self.target.redacted()} is unreachable: "
                                          f"{type(exc).__name__}: {exc}")[:400]
                    raise
                self.store = Store(client, self.schema.database)
                self.client = client
                self.connect_error = None
            return self.client

    def _writer_client(self) -> Client:
        """The writer's own connection (a server session is not shared with queries)."""
        client = self._ensure_store()
        if self.target.embedded or self._client is not None:
            return client
        return connect(self.target)

    # --- ingest -----------------------------------------------------------------

    def ingest(self, body: bytes, media: str, content_encoding: str | None, project: str) -> Ack:
        """Decode, check and durably log one OTLP request.

        ``media`` is ``otlp.PROTOBUF`` or ``otlp.JSON``: the receiver has
        checked the request's content type already (``otlp.accepted_media``).
        Returns a future that resolves once the request is fsync'd to the
        write-ahead log (its ``stored`` future: once it is in ClickHouse).
        Raises ``otlp.OTLPError`` for a request we refuse and
        ``admission.Refused`` for one we cannot take now;
        :func:`admission.refusal` says what to answer for either.
        """
        self.admission.check_open()
        self.admission.check_memory()
        self.stats.requests += 1
        with self.admission.decoding(project):
            return self._ingest(body, media, content_encoding, project)

    def _ingest(self, body: bytes, media: str, content_encoding: str | None, project: str) -> Ack:
        # One pass applies the limits and builds the rows: the write-ahead log
        # then holds the request as it will be stored, and a request we could
        # not store is refused now (and logged), not acknowledged and set aside later.
        # OTLP/JSON meets the count limits while it is decoded (they bound its work).
        limiter = SpanLimiter(self.limits)
        try:
            req, count = self._decode(body, media, content_encoding, limiter)
        except otlp.OTLPError:
            self.stats.requests_rejected += 1
            raise
        try:
            batch = self.rows.build(req, project, limiter)
        except otlp.OTLPError:  # the request's fault (ids of the wrong length): 400 with the reason
            self.stats.requests_rejected += 1
            raise
        except Exception as exc:
            self.stats.requests_rejected += 1
            logger.error("could not convert an OTLP request for storage (a collector bug; please report "
                         "it): %s: %s", type(exc).__name__, exc)
            raise otlp.OTLPError(400, f"spans could not be converted for storage ({type(exc).__name__}: "
                                      f"{str(exc)[:200]}); this is a collector bug, please report it") from exc
        report = limiter.finish()
        spans = count - report.rejected_spans
        self.stats.spans_received += spans
        self.stats.spans_rejected += report.rejected_spans
        self.stats.values_truncated += report.truncated_values
        self.stats.attributes_dropped += report.dropped_attributes
        self.stats.events_dropped += report.dropped_events
        if spans == 0:
            # Nothing to store, so nothing a retry could write twice: answer
            # this request with its own partial success, never with the
            # remembered answer of an earlier request that stored nothing
            # either (every empty payload has the same digest).
            ack = Ack()
            ack.rejected_spans, ack.message = report.rejected_spans, report.message
            ack.set_result(None)
            ack.stored.set_result(None)
            return ack
        payload = wal_payload(batch)
        # The digest covers the stored rows and the project, so the same spans
        # sent as JSON and as protobuf are also recognised as one.
        hasher = hashlib.sha256(project.encode() + b"\0")
        hasher.update(payload)  # no copy of a request-sized payload just to hash it
        digest = hasher.digest()
        is_new, ack = self.recent.claim(digest)
        if not is_new:
            self.stats.duplicate_requests += 1
            return ack
        ack.rejected_spans, ack.message = report.rejected_spans, report.message
        try:
            self.admission.enqueue(project, digest, spans, payload, ack, batch)
        except BaseException:
            self.recent.forget(digest)
            raise
        ack.add_done_callback(lambda f: self.recent.forget(digest) if f.exception() is not None else None)
        return ack

    def _decode(self, body: bytes, media: str, content_encoding: str | None, limiter: SpanLimiter,
                ) -> tuple[ExportTraceServiceRequest, int]:
        raw = otlp.decompress(body, content_encoding, self.settings.max_decompressed_bytes,
                              self.settings.max_inflation_ratio)
        try:
            req = otlp.parse(raw, media, limiter.limits, limiter.report)
        except otlp.OTLPError:
            raise
        except Exception as exc:  # deep nesting, odd values: still the request's fault, never a 500
            raise otlp.OTLPError(400, f"body is not a valid OTLP request: {type(exc).__name__}: "
                                      f"{str(exc)[:200]}") from exc
        return req, otlp.count_spans(req, self.settings.max_spans_per_request)

    # --- health -------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str, str | None]:
        w = self.writer
        backlog = f"{w.pending_spans} spans ({w.pending_bytes} bytes) buffered" if w is not None else ""
        if self.client is None:
            last = self.connect_error or (w.stats.last_error if w is not None else None)
            if last is None:
                return False, "unreachable", f"ClickHouse not connected yet; {backlog}"[:500]
            return False, "unreachable", f"{last}; {backlog}"[:500]
        try:
            version = Store(self.client, self.schema.database).ping()
            applied = max(applied_versions(self.client, self.schema))
        except Exception as exc:
            return False, "unreachable", f"{type(exc).__name__}: {exc}; {backlog}"[:500]
        if applied < latest_version():
            return False, version, f"schema at {applied}, expected {latest_version()}"
        if w is not None and w.stats.consecutive_failures:
            return False, version, (f"ClickHouse inserts failing ({w.stats.consecutive_failures} in a row); "
                                    f"{backlog}; last error: {w.stats.last_error}")[:500]
        return True, version, None

