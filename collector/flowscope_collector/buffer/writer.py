"""The background writer: moves acknowledged requests from the write-ahead log into ClickHouse.

A request is acknowledged once it is in the log (see :mod:`.wal`); from then on
delivering it is this module's job, whatever ClickHouse does. Requests are
grouped into one insert per batch (group commit), each insert carries a
deduplication token made from the log positions and digests of the requests
inside it, and the range is written down before the insert is sent, so the
insert repeated after a crash carries the same token and ClickHouse drops it
if it had landed. An insert that fails is retried with exponential backoff for
as long as it takes (a ClickHouse outage only delays delivery); one that keeps
failing while ClickHouse answers pings is split, and a request that ClickHouse
refuses on its own is set aside in a quarantine directory instead of blocking
everything behind it.

Memory stays bounded whatever the input rate: the queue holds small
descriptors and built rows are kept only up to a budget (the rest is read back
from the log). The writer takes every request it is given: whether the buffer
has room for one more is :mod:`flowscope_collector.admission`'s decision, made
from :attr:`Writer.pending_spans`, :attr:`Writer.pending_bytes` and
:meth:`Writer.retry_after`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Literal

from clickhouse_connect.driver.client import Client

from ..ingest.batch import Batch
from ..ingest.records import as_otlp_request, batch_from_wal
from ..ingest.rows import RowBuilder
from ..store.insert import insert_rows
from . import quarantine
from .acks import Ack
from .wal import WAL, Intent, Record, Recovery, WALError

logger = logging.getLogger("flowscope.collector")


@dataclass
class _Entry:
    rec: Record
    ack: Ack
    batch: Batch | None = None  # rows built at ingest, while within the cache budget
    cost: int = 0  # bytes counted against the budget


@dataclass
class WriterStats:
    spans_written: int = 0
    inserts: int = 0
    insert_failures: int = 0
    insert_seconds_total: float = 0.0
    last_insert_seconds: float = 0.0
    consecutive_failures: int = 0
    last_error: str | None = None
    spans_replayed: int = 0
    requests_quarantined: int = 0
    spans_quarantined: int = 0


class Writer:
    def __init__(
        self,
        wal: WAL,
        database: str,
        rows: RowBuilder,
        connect: Callable[[], Client],
        *,
        client: Client | None = None,
        max_batch_spans: int = 50_000,
        max_batch_bytes: int = 64 * 1024 * 1024,
        max_cache_bytes: int = 256 * 1024 * 1024,
        linger_s: float = 0.02,
        backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
        split_after: int = 3,
    ) -> None:
        self.wal = wal
        self.database = database
        self.rows = rows  # for log records of older collectors, which hold an OTLP request, not rows
        self._connect = connect
        self.client = client
        self.max_batch_spans = max_batch_spans
        self.max_batch_bytes = max_batch_bytes
        self.max_cache_bytes = max_cache_bytes
        self.linger_s = linger_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.split_after = split_after
        self.stats = WriterStats()
        self._queue: deque[_Entry] = deque()
        self._pending_spans = 0
        self._cache_bytes = 0
        self._intent: Intent | None = None
        self._replay: deque[Intent] = deque()  # journaled inserts a replay repeats as they were
        self._cond = threading.Condition()
        self._stopping = False  # drain what is queued, then stop
        self._abort = threading.Event()  # stop retrying, leave the rest in the log
        self._thread: threading.Thread | None = None
        self._rate = 0.0  # spans/s drained, smoothed
        self._backoff_now = 0.0

    # --- state ------------------------------------------------------------------------

    @property
    def pending_spans(self) -> int:
        return self._pending_spans

    @property
    def pending_bytes(self) -> int:
        return self.wal.disk_bytes

    @property
    def wal_corruptions(self) -> int:
        """Damaged regions in the log found at start-up (torn tails, never acknowledged, are not counted)."""
        return self.wal.corruptions

    @property
    def wal_lost_requests(self) -> int:
        """Acknowledged requests the log could not give back at start-up: lost, named in the log by seq."""
        return len(self.wal.lost)

    @property
    def quarantined_requests(self) -> int:
        """Requests in quarantine on disk now (also those of earlier processes): acknowledged, not stored."""
        return quarantine.totals(self.wal.dir)[0]

    @property
    def quarantined_spans(self) -> int:
        return quarantine.totals(self.wal.dir)[1]

    @property
    def queued(self) -> bool:
        """Requests are waiting for ClickHouse."""
        return bool(self._queue)

    @property
    def healthy(self) -> bool:
        """ClickHouse is taking our inserts (so acknowledging after the insert is cheap)."""
        return self.client is not None and self.stats.consecutive_failures == 0

    def retry_after(self) -> float:
        """How long a refused client should wait: the time to drain what is queued."""
        if self.stats.consecutive_failures:
            return min(60.0, max(5.0, self._backoff_now * 2))
        if self._rate <= 0:
            return 2.0
        return min(60.0, max(1.0, self._pending_spans / self._rate))

    # --- lifecycle -----------------------------------------------------------------

    def recover(self, recovery: Recovery) -> list[tuple[Record, Ack]]:
        """Queue what a previous process acknowledged but did not store."""
        out = []
        with self._cond:
            for rec in recovery.pending:
                ack = Ack()
                ack.set_result(None)
                self._queue.append(_Entry(rec, ack))
                self._pending_spans += rec.spans
                out.append((rec, ack))
            # Every journaled insert still covering a pending record is repeated as it was, with
            # its token (the checkpoint's intent among them); the rest are grouped afresh.
            self._replay = deque(recovery.intents or ([recovery.intent] if recovery.intent else []))
            self._intent = None
        self.stats.spans_replayed = sum(r.spans for r in recovery.pending)
        if recovery.pending:
            logger.info("replaying %d acknowledged requests (%d spans) from the write-ahead log",
                        len(recovery.pending), self.stats.spans_replayed)
        return out

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="flowscope-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is queued if ClickHouse lets us, then stop (admission has stopped new requests).

        Whatever is not written in time stays in the log for the next start.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._queue and time.monotonic() < deadline and self._thread is not None:
                self._cond.wait(0.05)
        self._abort.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(max(1.0, deadline - time.monotonic() + 5))
            self._thread = None

    # --- accepting --------------------------------------------------------------------

    def submit(self, project: str, digest: bytes, spans: int, payload: bytes, ack: Ack,
               batch: Batch | None = None) -> None:
        """Append one request to the log; ``ack`` resolves when it is durable.

        ``batch`` is the request's rows if they were built already; kept for
        the insert while the cache budget allows, else rebuilt from the log.

        Raises ``WALError`` when the disk refuses the write; nothing is queued then.
        """
        with self._cond:
            ack.read_your_writes = not self._queue and self.healthy
            cache = self._cache_bytes + 2 * len(payload) <= self.max_cache_bytes
            # Built rows are worth more than the bytes they came from; keep one or the other.
            rec = self.wal.append(project, digest, spans, payload, cache=cache and batch is None)
            cost = 2 * len(payload) if cache else 0
            self._cache_bytes += cost
            self._queue.append(_Entry(rec, ack, batch if cache else None, cost))
            self._pending_spans += spans
            self._cond.notify_all()

        def _durable(f: Future[None]) -> None:
            exc = f.exception()
            if exc is None:
                ack.set_result(None)
            else:
                ack.set_exception(exc)
                ack.stored.set_exception(exc)

        rec.durable.add_done_callback(_durable)

    # --- draining ---------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.backoff_s
        while True:
            try:
                entries = self._take()
                if not entries:
                    return
                if not self._store(entries):
                    return  # aborted: the rest stays in the log
                delay = self.backoff_s
            except Exception as exc:  # e.g. the checkpoint cannot be written: keep trying, visibly
                self.stats.consecutive_failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
                logger.exception("writer step failed; retrying in %.1fs (nothing acknowledged is dropped)", delay)
                if self._abort.wait(delay):
                    return
                delay = min(delay * 2, self.max_backoff_s)

    def _take(self) -> list[_Entry]:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue or self._abort.is_set():
                return []
            bound = None  # a fresh group stops before the next journaled insert
            if self._intent is None:
                head = self._queue[0].rec.seq
                while self._replay and self._replay[0].last < head:
                    self._replay.popleft()
                if self._replay and self._replay[0].first <= head:
                    self._intent = self._replay.popleft()
                elif self._replay:
                    bound = self._replay[0].first
            intent = self._intent
        if intent is None and self.linger_s and not self._stopping and self._pending_spans < self.max_batch_spans:
            time.sleep(self.linger_s)  # let concurrent requests join this insert
        entries: list[_Entry] = []
        spans = size = 0
        with self._cond:
            for e in self._queue:
                if intent is not None:
                    if e.rec.seq > intent.last:
                        break
                else:
                    full = bool(entries) and (spans + e.rec.spans > self.max_batch_spans
                                              or size + e.rec.disk_bytes > self.max_batch_bytes)
                    if full or (bound is not None and e.rec.seq >= bound):
                        break
                entries.append(e)
                spans += e.rec.spans
                size += e.rec.disk_bytes
        # Only durable records go to ClickHouse: a record whose fsync failed was
        # refused to its client, which will send it again.
        for e in entries:
            try:
                e.rec.durable.result()
            except Exception:
                pass
        return entries

    def _store(self, entries: list[_Entry]) -> bool:
        good = [e for e in entries if e.rec.durable.exception() is None]
        first, last = entries[0].rec.seq, entries[-1].rec.seq
        if self._intent is not None:
            token = self._intent.token
        else:
            h = hashlib.sha256(f"{first}-{last}:".encode())
            for e in good:
                h.update(e.rec.digest)
            token = h.hexdigest()
        built: list[tuple[_Entry, Batch]] = []
        for e in good:
            try:
                built.append((e, e.batch if e.batch is not None else
                              batch_from_wal(self.wal.read(e.rec), e.rec.project, self.rows)))
            except Exception as exc:
                self._quarantine(e, exc)
        if built:
            intent = Intent(first, last, token)
            self.wal.begin(intent)
            self._intent = intent  # a retried step regroups exactly these records under this token
            merged = Batch()
            for _, b in built:
                merged.extend(b)
            outcome = self._insert(merged, token)
            if outcome == "aborted":
                return False
            if outcome == "refused":
                if len(built) == 1:
                    self._quarantine(built[0][0], RuntimeError(self.stats.last_error or "insert refused"))
                else:
                    logger.warning("ClickHouse refuses an insert of %d requests; inserting them one by one",
                                   len(built))
                    for e, b in built:
                        one = self._insert(b, f"{token}/{e.rec.seq}")
                        if one == "aborted":
                            return False
                        if one == "refused":
                            self._quarantine(e, RuntimeError(self.stats.last_error or "insert refused"))
        released = sum(e.rec.disk_bytes for e in entries)
        self.wal.commit(last, released)
        with self._cond:
            self._intent = None
            for _ in entries:
                e = self._queue.popleft()
                self._pending_spans -= e.rec.spans
                self._cache_bytes -= e.cost
                e.rec.payload, e.batch = None, None
            self._cond.notify_all()
        for e in entries:
            if not e.ack.stored.done():
                e.ack.stored.set_result(None)
        return True

    def _insert(self, batch: Batch, token: str) -> Literal["ok", "refused", "aborted"]:
        """Insert until it works; "refused" when ClickHouse is up but keeps rejecting this data."""
        delay = self.backoff_s
        attempts = 0
        while True:
            try:
                client = self._client()
                t0 = time.perf_counter()
                if batch.spans:
                    self._send(client, batch, token)
                elapsed = time.perf_counter() - t0
                s = self.stats
                s.inserts += 1
                s.spans_written += batch.spans
                s.insert_seconds_total += elapsed
                s.last_insert_seconds = elapsed
                if s.consecutive_failures:
                    logger.warning("ClickHouse inserts work again after %d failures", s.consecutive_failures)
                s.consecutive_failures = 0
                s.last_error = None
                self._backoff_now = 0.0
                if elapsed > 0:
                    rate = batch.spans / max(elapsed, 1e-3)
                    self._rate = rate if self._rate == 0 else 0.8 * self._rate + 0.2 * rate
                return "ok"
            except Exception as exc:
                attempts += 1
                self.stats.insert_failures += 1
                self.stats.consecutive_failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
                if attempts >= self.split_after and self._reachable():
                    return "refused"
                if self._abort.is_set():
                    return "aborted"
                if attempts == 1 or attempts % 10 == 0:
                    logger.warning("insert of %d spans failed (attempt %d), retrying in %.1fs: %s",
                                   batch.spans, attempts, delay, self.stats.last_error)
                self._backoff_now = delay
                if self._abort.wait(delay):
                    return "aborted"
                delay = min(delay * 2, self.max_backoff_s)

    def _send(self, client: Client, batch: Batch, token: str) -> None:
        """One insert carrying ``token``, so ClickHouse drops it if it already has it."""
        settings = {
            "insert_deduplication_token": token,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
            # A batch is acknowledged already, and spans on more than 100 days (a
            # backfill, a request whose clocks disagree, several such requests in
            # one group commit) are valid data: ClickHouse's default limit of 100
            # partitions per insert would refuse them and send them to quarantine.
            # The limit guards against accidental partition explosions; here
            # each partition still gets its own part and its own deduplication
            # block id (the token is hashed per partition), so lifting it keeps
            # a retried insert exactly-once.
            "max_partitions_per_insert_block": 0,
        }
        insert_rows(client, self.database, batch.body(), settings)

    def _client(self) -> Client:
        if self.client is None:
            self.client = self._connect()
        return self.client

    def _reachable(self) -> bool:
        try:
            self._client().command("SELECT 1")
            return True
        except Exception:
            return False

    def _quarantine(self, entry: _Entry, exc: BaseException) -> None:
        """Keep a request ClickHouse will not take, so it neither blocks the rest nor vanishes."""
        rec = entry.rec
        qdir = quarantine.directory(self.wal.dir)
        try:
            qdir.mkdir(exist_ok=True)
            (qdir / f"{rec.seq:020d}.pb").write_bytes(as_otlp_request(self.wal.read(rec)))
            (qdir / f"{rec.seq:020d}.json").write_text(json.dumps(
                {"seq": rec.seq, "project": rec.project, "spans": rec.spans, "error": str(exc)[:2000]}))
        except (OSError, WALError) as io_exc:
            logger.error("could not quarantine request %d: %s", rec.seq, io_exc)
        self.stats.requests_quarantined += 1
        self.stats.spans_quarantined += rec.spans
        logger.error("request %d (%d spans, project %r) cannot be stored and was set aside in %s: %s",
                     rec.seq, rec.spans, rec.project, qdir, exc)
        if not entry.ack.stored.done():
            entry.ack.stored.set_exception(RuntimeError(f"request set aside: {exc}"))
        # ClickHouse answered; the data was the problem, so the store counts as healthy again.
        self.stats.consecutive_failures = 0
