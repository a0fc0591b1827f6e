"""Acknowledgements: the futures a receiver waits on, and the recent ones by request digest."""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future


class Ack(Future[None]):
    """What a receiver waits on: resolves once the request is durable in the write-ahead log.

    ``stored`` resolves later, once it is in ClickHouse. The receivers wait on
    it briefly when ``read_your_writes`` says the writer was idle when the
    request arrived, so a client can read what it just wrote. Under load they
    do not: clients waiting on inserts would cap each insert at what they
    have in flight, and small inserts cost ClickHouse several times the CPU
    per span of large ones (docs/performance.md).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stored: Future[None] = Future()
        self.read_your_writes = False
        # The OTLP partial-success answer: spans the limits refused, and why.
        self.rejected_spans = 0
        self.message = ""


class RecentRequests:
    """Digests of recently accepted requests.

    An OTLP exporter that timed out waiting for our answer sends the same
    body again; recognising it here answers success without a second write.
    Seeded at start-up from the write-ahead log, so a retry that reaches a
    restarted collector is recognised too.
    """

    def __init__(self, capacity: int = 65_536) -> None:
        self.capacity = capacity
        self._items: OrderedDict[bytes, Ack] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, digest: bytes) -> tuple[bool, Ack]:
        """Return (is_new, ack). A repeat gets the first request's ack.

        Not when the first one failed: neither one the log refused nor one
        ClickHouse refused (set aside in quarantine) is stored, so the same
        body sent again (a retry, ``flowscope-collector quarantine replay``)
        must be written, not answered "already have it".
        """
        with self._lock:
            ack = self._items.get(digest)
            if ack is not None and not (ack.done() and ack.exception() is not None) \
                    and not (ack.stored.done() and ack.stored.exception() is not None):
                self._items.move_to_end(digest)
                return False, ack
            ack = Ack()
            self._items[digest] = ack
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            return True, ack

    def remember(self, digest: bytes, ack: Ack) -> None:
        with self._lock:
            self._items[digest] = ack
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def forget(self, digest: bytes) -> None:
        with self._lock:
            self._items.pop(digest, None)
