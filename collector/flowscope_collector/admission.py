"""Admission: whether an OTLP request comes in, and what a refused one is told.

Every decision to turn ingest away is made here, for OTLP/HTTP and OTLP/gRPC
alike, so both receivers refuse for the same reasons with the same delays:

* the collector is starting (no writer yet) or shutting down;
* too many request bytes are being received at once (HTTP bodies share one
  memory budget, so many large concurrent requests wait their turn outside);
* the buffer is full: more spans or log bytes wait for ClickHouse than the
  settings allow (the write-ahead log must not grow without bound while
  ClickHouse is slow or down);
* the process's resident memory is above ``max_memory_bytes`` (503, like the
  OTel Collector's ``memory_limiter``): better a retry than an OOM kill.

No client can starve the others: bytes are counted as they are received, not
as a ``Content-Length`` declares them (a slow upload that declares 16 MiB and
trickles holds only what it sent), and each project may hold at most its share
of the in-flight bytes, of the buffer and of the decode slots, so one
project's flood is refused (429) while another's small requests still fit.

Decoding takes one of a few slots here too: it is CPU-bound under the GIL, so
more decodes at once only add memory (each may inflate to
``max_decompressed_bytes``), not speed; a request waits for a slot rather
than being refused, up to ``decode_wait_s`` (then 503 with Retry-After).

:func:`refusal` turns whatever stopped a request into one :class:`Refused`:
an HTTP status, a reason a person can act on and, for the statuses exporters
retry (429, 503), how long to wait. The HTTP route sends it as it is; the
gRPC receiver maps it to ``INVALID_ARGUMENT``, ``RESOURCE_EXHAUSTED`` or
``UNAVAILABLE`` with ``RetryInfo``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

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


def _share(value: int | None, total: int, whole: bool) -> int:
    """A per-project share: as configured, else half of the whole (at least 1), or all of it for a lone project."""
    if value is not None and value > 0:
        return value
    return total if whole else max(1, total // 2)


def cgroup_memory_limit() -> int | None:
    """The container's memory limit (cgroup v2, then v1), or None when there is none."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                raw = f.read().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:  # v1 says "no limit" with a huge number
            return int(raw)
    return None


def memory_threshold(settings: CollectorSettings) -> int:
    """``max_memory_bytes``, or 80% of the cgroup limit when unset; 0 means no check."""
    if settings.max_memory_bytes is not None:
        return max(0, settings.max_memory_bytes)
    limit = cgroup_memory_limit()
    return limit * 4 // 5 if limit else 0


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """This process's resident memory now (Linux ``/proc``; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class Admission:
    """The gate in front of the writer; the :class:`~flowscope_collector.service.Collector` owns one."""

    def __init__(self, settings: CollectorSettings) -> None:
        self.max_inflight_bytes = settings.max_inflight_bytes
        self.max_pending_spans = settings.max_pending_spans
        self.max_pending_bytes = settings.max_pending_bytes
        self._settings = settings
        self.decode_slots = max(1, settings.max_concurrent_decodes)
        self.share_between(2)
        self.decode_wait_s = settings.decode_wait_s
        self.max_memory_bytes = memory_threshold(settings)
        self.overloaded = 0  # requests refused because the buffer (or the project's share) was full
        self.memory_refused = 0  # requests refused because memory was above max_memory_bytes
        self._writer: Writer | None = None
        self._closed = False
        self._inflight = 0
        self._inflight_by: dict[str, int] = {}
        self._pending_by: dict[str, list[int]] = {}  # project -> [spans, bytes] not yet stored
        self._decoding = 0
        self._decoding_by: dict[str, int] = {}
        self._slots = threading.Condition()
        self._memory_checked = 0.0
        self._memory_high = False
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

    def share_between(self, projects: int) -> None:
        """Set each project's share for ``projects`` possible projects (the API keys' projects).

        A share keeps one project's flood from filling what another needs; with a
        single project (no API keys: everything is ``default``) there is no one to
        keep room for, and a share would only halve the buffer, so the project gets
        the whole unless a ``*_per_project`` setting says otherwise.
        """
        s = self._settings
        whole = projects <= 1
        self.project_inflight_bytes = _share(s.max_inflight_bytes_per_project, s.max_inflight_bytes, whole)
        self.project_pending_spans = _share(s.max_pending_spans_per_project, s.max_pending_spans, whole)
        self.project_pending_bytes = _share(s.max_pending_bytes_per_project, s.max_pending_bytes, whole)
        self.project_decode_slots = _share(s.max_concurrent_decodes_per_project, self.decode_slots, whole)

    def check_memory(self) -> None:
        """503 + Retry-After while resident memory is above ``max_memory_bytes`` (read at most every 50 ms)."""
        if not self.max_memory_bytes:
            return
        now = time.monotonic()
        if now - self._memory_checked > 0.05:
            self._memory_checked = now
            self._memory_high = resident_bytes() > self.max_memory_bytes
        if self._memory_high:
            self.memory_refused += 1
            raise Refused(503, f"collector memory is above its limit ({self.max_memory_bytes} bytes); "
                               "retry shortly", 5.0)

    def reserve_bytes(self, n: int, project: str = "", held: int = 0) -> None:
        """Count ``n`` more request bytes received for ``project``; 429 when over the budget (nothing counted then).

        ``held``: what this request has counted already. Called from the event
        loop only, so the counts need no lock. Callers count bytes as they
        arrive, never a declared length. A request alone is always let in
        (``max_body_bytes`` bounds it); beside others, a project may hold only
        its share, so the other projects still get in.
        """
        mine = self._inflight_by.get(project, 0)
        if mine > held and mine + n > self.project_inflight_bytes:
            raise Refused(429, "too many request bytes in flight for this project; retry shortly", 1.0)
        if self._inflight > held and self._inflight + n > self.max_inflight_bytes:
            raise Refused(429, "too many request bytes in flight; retry shortly", 1.0)
        self._inflight += n
        self._inflight_by[project] = mine + n

    def release_bytes(self, n: int, project: str = "") -> None:
        self._inflight -= n
        left = self._inflight_by.get(project, 0) - n
        if left > 0:
            self._inflight_by[project] = left
        else:
            self._inflight_by.pop(project, None)

    @contextmanager
    def decoding(self, project: str) -> Iterator[None]:
        """Hold a decode slot for ``project``: at most its share, so others always find one free.

        Waits up to ``decode_wait_s``; then 503 with Retry-After (the client retries later).
        """
        deadline = time.monotonic() + self.decode_wait_s
        with self._slots:
            while (self._decoding >= self.decode_slots
                   or self._decoding_by.get(project, 0) >= self.project_decode_slots):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Refused(503, "every decode slot this project may use is busy; retry shortly", 1.0)
                self._slots.wait(left)
            self._decoding += 1
            self._decoding_by[project] = self._decoding_by.get(project, 0) + 1
        try:
            yield
        finally:
            with self._slots:
                self._decoding -= 1
                n = self._decoding_by[project] - 1
                if n:
                    self._decoding_by[project] = n
                else:
                    del self._decoding_by[project]
                self._slots.notify_all()

    def _stored(self, project: str, spans: int, size: int) -> None:
        with self._lock:
            held = self._pending_by.get(project)
            if held is None:
                return
            held[0] -= spans
            held[1] -= size
            if held[0] <= 0 and held[1] <= 0:
                del self._pending_by[project]

    def enqueue(self, project: str, digest: bytes, spans: int, payload: bytes, ack: Ack,
                batch: Batch | None = None) -> None:
        """Hand one built request to the writer, or refuse it because the buffer is full.

        The check and the append are one step under a lock, so concurrent
        requests cannot all pass a check that only one of them fits. The first
        request into an empty buffer is always taken, however large, and so is
        a project's first while it has nothing waiting; past that a project may
        fill only its share of the buffer, so one project's flood leaves room
        for the others.
        """
        size = len(payload)
        with self._lock:
            self.check_open()
            writer = self._writer
            assert writer is not None
            held = self._pending_by.get(project)
            if held is not None and (held[0] + spans > self.project_pending_spans
                                     or held[1] + size > self.project_pending_bytes):
                self.overloaded += 1
                raise Overloaded(writer.retry_after(),
                                 f"this project has {held[0]} spans waiting for ClickHouse, its share of the buffer")
            if writer.queued and (writer.pending_spans + spans > self.max_pending_spans
                                  or writer.pending_bytes + size > self.max_pending_bytes):
                self.overloaded += 1
                raise Overloaded(writer.retry_after(), f"{writer.pending_spans} spans waiting for ClickHouse")
            writer.submit(project, digest, spans, payload, ack, batch)
            if held is None:
                held = self._pending_by[project] = [0, 0]
            held[0] += spans
            held[1] += size
        ack.stored.add_done_callback(lambda _f: self._stored(project, spans, size))
