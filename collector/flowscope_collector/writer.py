"""Group-commit writer: many requests, one ClickHouse insert, one acknowledgement each.

A request is acknowledged only after the insert that carries it succeeded, so
an acknowledged span is in ClickHouse. Every insert carries a deduplication
token derived from the requests inside it; when an insert is retried (the
first attempt may have landed before the connection broke) ClickHouse drops
the repeat instead of doubling rows and cost.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from .rows import COLUMNS, Batch

logger = logging.getLogger("flowscope.collector")


class Overloaded(Exception):
    """The writer's queue is full: the client should retry later (HTTP 429/503)."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"collector is overloaded; retry after {retry_after_s:.0f}s")
        self.retry_after_s = retry_after_s


@dataclass
class _Item:
    batch: Batch
    token: str
    future: Future[None] = field(default_factory=Future)


@dataclass
class WriterStats:
    spans_written: int = 0
    inserts: int = 0
    insert_failures: int = 0
    insert_seconds_total: float = 0.0
    last_insert_seconds: float = 0.0


class Writer:
    def __init__(
        self,
        client: Client,
        database: str,
        *,
        max_batch_spans: int = 20_000,
        max_pending_spans: int = 500_000,
        linger_s: float = 0.02,
        max_attempts: int = 8,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.client = client
        self.table = f"{database}.otel_traces"
        self.max_batch_spans = max_batch_spans
        self.max_pending_spans = max_pending_spans
        self.linger_s = linger_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stats = WriterStats()
        self._queue: deque[_Item] = deque()
        self._pending_spans = 0
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None

    @property
    def pending_spans(self) -> int:
        return self._pending_spans

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="flowscope-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, then stop."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def submit(self, batch: Batch, token: str) -> Future[None]:
        item = _Item(batch, token)
        with self._cond:
            if self._stop:
                raise Overloaded(5.0)
            if self._pending_spans and self._pending_spans + batch.spans > self.max_pending_spans:
                raise Overloaded(max(1.0, self.stats.last_insert_seconds * 2))
            self._queue.append(item)
            self._pending_spans += batch.spans
            self._cond.notify()
        return item.future

    def _take(self) -> list[_Item]:
        with self._cond:
            while not self._queue and not self._stop:
                self._cond.wait()
            if not self._queue:
                return []
        if self.linger_s and not self._stop:
            time.sleep(self.linger_s)  # let concurrent requests join this insert
        items: list[_Item] = []
        spans = 0
        with self._cond:
            while self._queue and (not items or spans + self._queue[0].batch.spans <= self.max_batch_spans):
                item = self._queue.popleft()
                items.append(item)
                spans += item.batch.spans
        return items

    def _run(self) -> None:
        while True:
            items = self._take()
            if not items:
                return
            self._write(items)
            with self._cond:
                self._pending_spans -= sum(i.batch.spans for i in items)

    def _write(self, items: list[_Item]) -> None:
        merged = Batch()
        for item in items:
            merged.extend(item.batch)
        token = hashlib.sha256("|".join(i.token for i in items).encode()).hexdigest()
        delay = self.backoff_s
        for attempt in range(1, self.max_attempts + 1):
            try:
                t0 = time.perf_counter()
                if merged.spans:
                    self.client.insert(
                        self.table,
                        merged.columns,
                        column_names=list(COLUMNS),
                        column_oriented=True,
                        settings={
                            "insert_deduplication_token": token,
                            "deduplicate_blocks_in_dependent_materialized_views": 1,
                        },
                    )
                elapsed = time.perf_counter() - t0
                self.stats.inserts += 1
                self.stats.spans_written += merged.spans
                self.stats.insert_seconds_total += elapsed
                self.stats.last_insert_seconds = elapsed
                for item in items:
                    item.future.set_result(None)
                return
            except Exception as exc:
                self.stats.insert_failures += 1
                if attempt == self.max_attempts or self._stop:
                    logger.error("insert of %d spans failed after %d attempts: %s", merged.spans, attempt, exc)
                    for item in items:
                        item.future.set_exception(exc)
                    return
                logger.warning("insert failed (attempt %d), retrying in %.1fs: %s", attempt, delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
