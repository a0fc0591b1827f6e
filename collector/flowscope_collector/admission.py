"""Admission: whether an OTLP request comes in, and what a refused one is told.

Every decision to turn ingest away is made here, for OTLP/HTTP and OTLP/gRPC
alike, so both receivers refuse for the same reasons with the same delays:

* the collector is starting (no writer yet) or shutting down;
* too many request bytes are being received at once (HTTP bodies share one
  memory budget, so many large concurrent requests wait their turn outside);
* the buffer is full: more spans or log bytes wait for ClickHouse than the
  settings allow (the write-ahead log must not grow without bound while
  ClickHouse is slow or down).

Decoding takes one of a few slots here too: it is CPU-bound under the GIL, so
more decodes at once only add memory (each may inflate to
``max_decompressed_bytes``), not speed; a request waits for a slot rather
than being refused.

:func:`refusal` turns whatever stopped a request into one :class:`Refused`:
an HTTP status, a reason a person can act on and, for the statuses exporters
retry (429, 503), how long to wait. The HTTP route sends it as it is; the
gRPC receiver maps it to ``INVALID_ARGUMENT``, ``RESOURCE_EXHAUSTED`` or
``UNAVAILABLE`` with ``RetryInfo``.
"""

from __future__ import annotations

import logging
import threading

from .buffer.acks import Ack
from .buffer.wal import WALError
from .buffer.writer import Writer
from .ingest import otlp
from .ingest.batch import Batch
from .settings import CollectorSettings

logger = logging.getLogger("flowscope.collector")


class Refused(Exception):
    """A request turned away: its HTTP status, why, and when to retry (``None``: do not)."""

    def __init__(self, status: int, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


class Overloaded(Refused):
    """The buffer is full: the client should retry later (HTTP 429, gRPC RESOURCE_EXHAUSTED)."""

    def __init__(self, retry_after_s: float, reason: str = "the write buffer is full") -> None:
        super().__init__(429, f"collector is overloaded ({reason}); retry after {retry_after_s:.0f}s", retry_after_s)


def refusal(exc: BaseException) -> Refused:
    """What to tell a client whose request raised ``exc`` on its way in."""
    if isinstance(exc, Refused):
        return exc
    if isinstance(exc, otlp.OTLPError):  # the request's fault: never retried
        return Refused(exc.status, exc.message)
    if isinstance(exc, WALError):
        logger.error("write-ahead log refused a request: %s", exc)
        return Refused(503, f"spans could not be made durable ({exc}); retry", 5.0)
    logger.warning("could not accept spans: %s: %s", type(exc).__name__, exc)
    return Refused(503, f"spans could not be accepted ({type(exc).__name__}); retry", 2.0)


class Admission:
    """The gate in front of the writer; the :class:`~flowscope_collector.service.Collector` owns one."""

    def __init__(self, settings: CollectorSettings) -> None:
        self.max_inflight_bytes = settings.max_inflight_bytes
        self.max_pending_spans = settings.max_pending_spans
        self.max_pending_bytes = settings.max_pending_bytes
        self.decode_slots = threading.BoundedSemaphore(settings.max_concurrent_decodes)
        self.overloaded = 0  # requests refused because the buffer was full
        self._writer: Writer | None = None
        self._closed = False
        self._inflight = 0
        self._lock = threading.Lock()

    # --- lifecycle (the collector's) ------------------------------------------------

    def open(self, writer: Writer) -> None:
        """Start admitting requests into ``writer``."""
        with self._lock:
            self._writer, self._closed = writer, False

    def close(self) -> None:
        """Admit nothing more: once this returns, no request is being handed to the writer."""
        with self._lock:
            self._closed = True

    # --- the checks -----------------------------------------------------------------

    def check_open(self) -> None:
        """Refuse while there is no writer to take the request (starting, or stopped)."""
        if self._writer is None:
            raise Refused(503, "collector is starting; retry shortly", 1.0)
        if self._closed:
            raise Overloaded(5.0, "the collector is shutting down")

    def reserve_bytes(self, n: int) -> None:
        """Count ``n`` more request bytes being received; 429 when over the budget (nothing counted then).

        Called from the event loop only, so the count needs no lock. One request
        alone is always let in, however large (``max_body_bytes`` bounds it).
        """
        if self._inflight and self._inflight + n > self.max_inflight_bytes:
            raise Refused(429, "too many request bytes in flight; retry shortly", 1.0)
        self._inflight += n

    def release_bytes(self, n: int) -> None:
        self._inflight -= n

    def enqueue(self, project: str, digest: bytes, spans: int, payload: bytes, ack: Ack,
                batch: Batch | None = None) -> None:
        """Hand one built request to the writer, or refuse it because the buffer is full.

        The check and the append are one step under a lock, so concurrent
        requests cannot all pass a check that only one of them fits. The first
        request into an empty buffer is always taken, however large.
        """
        with self._lock:
            self.check_open()
            writer = self._writer
            assert writer is not None
            if writer.queued and (writer.pending_spans + spans > self.max_pending_spans
                                  or writer.pending_bytes + len(payload) > self.max_pending_bytes):
                self.overloaded += 1
                raise Overloaded(writer.retry_after(), f"{writer.pending_spans} spans waiting for ClickHouse")
            writer.submit(project, digest, spans, payload, ack, batch)
