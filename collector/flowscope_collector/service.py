"""The collector's moving parts, owned by one object with a start and a stop.

The HTTP layer (:mod:`flowscope_collector.api`) only translates between HTTP
and this object, so the same ingest path serves OTLP/HTTP today and any other
receiver tomorrow.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from . import otlp
from .clickhouse import Target, connect, parse_dsn
from .queries import Store
from .rows import RowBuilder
from .schema import SchemaOptions, applied_versions, latest_version, migrate
from .settings import CollectorSettings
from .writer import Writer

logger = logging.getLogger("flowscope.collector")


@dataclass
class IngestStats:
    requests: int = 0
    spans_received: int = 0
    spans_rejected: int = 0
    requests_rejected: int = 0
    duplicate_requests: int = 0


class _RecentRequests:
    """Digests of recently accepted requests.

    An OTLP exporter that timed out waiting for our answer sends the same
    body again; recognising it here answers success without a second write.
    """

    def __init__(self, capacity: int = 65_536) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Future[None]] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, digest: str) -> tuple[bool, Future[None]]:
        """Return (is_new, future). A repeat gets the first request's future."""
        with self._lock:
            fut = self._items.get(digest)
            if fut is not None and not (fut.done() and fut.exception() is not None):
                self._items.move_to_end(digest)
                return False, fut
            fut = Future()
            self._items[digest] = fut
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            return True, fut

    def forget(self, digest: str) -> None:
        with self._lock:
            self._items.pop(digest, None)


class Collector:
    def __init__(self, settings: CollectorSettings, client: Client | None = None) -> None:
        self.settings = settings
        self.target: Target = parse_dsn(settings.dsn)
        self.schema = SchemaOptions(
            database=self.target.database, cluster=settings.cluster, ttl_days=settings.ttl_days
        )
        self._client = client
        self.client: Client | None = None
        self.store: Store | None = None
        self.writer: Writer | None = None
        self.rows = RowBuilder()
        self.stats = IngestStats()
        self.recent = _RecentRequests()
        self.started_at = time.time()
        self.schema_version: int | None = None

    def start(self) -> None:
        self.client = self._client or connect(self.target)
        migrate(self.client, self.schema)
        self.schema_version = max(applied_versions(self.client, self.schema))
        self.store = Store(self.client, self.schema.database)
        self.writer = Writer(
            self.client,
            self.schema.database,
            max_batch_spans=self.settings.max_batch_spans,
            max_pending_spans=self.settings.max_pending_spans,
        )
        self.writer.start()
        logger.info("flowscope collector storing in %s", self.target.redacted())

    def stop(self) -> None:
        if self.writer is not None:
            self.writer.stop()

    # --- ingest -----------------------------------------------------------------

    def ingest(self, body: bytes, content_type: str, content_encoding: str | None, project: str) -> Future[None]:
        """Decode, normalise and queue one OTLP request. Raises OTLPError for bad input.

        Returns a future that completes once the spans are in ClickHouse.
        """
        assert self.writer is not None
        self.stats.requests += 1
        try:
            media = otlp.media_type(content_type)
            if media not in (otlp.PROTOBUF, otlp.JSON):
                raise otlp.OTLPError(
                    415, f"unsupported Content-Type {content_type!r}; use {otlp.PROTOBUF} or {otlp.JSON}"
                )
            raw = otlp.decompress(body, content_encoding, self.settings.max_decompressed_bytes)
            req = otlp.parse(raw, media)
            count = otlp.validate(req, self.settings.max_spans_per_request)
        except otlp.OTLPError:
            self.stats.requests_rejected += 1
            raise
        self.stats.spans_received += count
        # The digest covers the decoded request and the project, so the same
        # spans sent as JSON and as protobuf are also recognised as one.
        digest = hashlib.sha256(project.encode() + b"\0" + req.SerializeToString(deterministic=True)).hexdigest()
        is_new, fut = self.recent.claim(digest)
        if not is_new:
            self.stats.duplicate_requests += 1
            return fut
        try:
            batch = self.rows.build(req, project)
            inner = self.writer.submit(batch, digest)
        except BaseException as exc:
            self.recent.forget(digest)
            fut.set_exception(exc)
            raise

        def _done(f: Future[None]) -> None:
            exc = f.exception()
            if exc is None:
                fut.set_result(None)
            else:
                self.recent.forget(digest)
                fut.set_exception(exc)

        inner.add_done_callback(_done)
        return fut

    # --- health -------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str, str | None]:
        try:
            assert self.client is not None
            version = Store(self.client, self.schema.database).ping()
            applied = max(applied_versions(self.client, self.schema))
        except Exception as exc:
            return False, "unreachable", f"{type(exc).__name__}: {exc}"[:300]
        if applied < latest_version():
            return False, version, f"schema at {applied}, expected {latest_version()}"
        return True, version, None
