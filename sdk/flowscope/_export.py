"""Getting spans out of the host process without ever getting in its way.

Ending a span only appends it to a bounded queue; a background thread exports
batches. When the queue is full (collector down, network slow) new spans are
dropped and counted instead of blocking the application or growing memory,
and :func:`flowscope.stats` says how many. ``force_flush`` and ``shutdown``
honour their timeouts even when the exporter is stuck retrying.

Just before export, secrets are scrubbed: attributes named like credentials
(``authorization``, ``api_key``, ``x-api-key``, cookies, passwords) and
values that look like API keys or bearer tokens are replaced, whichever
instrumentation recorded them, and the user's ``redact`` hook sees message
content. This is the last point every span passes through, so it is where
"secrets never leave the process" can be enforced rather than hoped for.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ._otel import attribute_dict, span_attribute_store, suppress_instrumentation

logger = logging.getLogger("flowscope")

REDACTED = "[REDACTED]"

_SECRET_NAMES = frozenset({
    "authorization", "proxy-authorization", "proxy_authorization", "api_key", "api-key", "apikey", "x-api-key",
    "x_api_key", "password", "passwd", "secret", "client_secret", "access_token", "refresh_token", "id_token",
    "cookie", "set-cookie", "private_key", "session_token", "x-goog-api-key", "openai_api_key",
    "anthropic_api_key",
})
_SECRET_VALUE = re.compile(
    r"(?:\bsk-(?:ant-|proj-|svcacct-)?[A-Za-z0-9_\-]{16,}"  # OpenAI / Anthropic keys
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/\-]{8,}=*"  # Authorization: Bearer …
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key id
    r"|\bAIza[0-9A-Za-z_\-]{35}"  # Google API key
    r"|\bxox[abposr]-[A-Za-z0-9\-]{10,}"  # Slack token
    r"|\bgh[pousr]_[A-Za-z0-9]{30,})"  # GitHub token
)
# No pattern above matches fewer characters ("bearer " + 8, "xoxb-" + 10): shorter values skip the regex.
_SHORTEST_SECRET = 15
# Every match of _SECRET_VALUE contains one of these once lowercased ("sk-", "bearer", "AKIA", "AIza",
# "xox", "gh?_"). Looking for them is a few substring searches, while the full pattern costs microseconds
# per value (its case-insensitive alternative is tried at every position), so text without any skips it.
_SECRET_HINTS = ("sk-", "bearer", "akia", "aiza", "xox")
_GITHUB_HINT = re.compile(r"gh[pousr]_")
_SCALARS = frozenset({int, float, bool})
# Message content: the user's redact hook sees these before they leave.
CONTENT_KEYS = frozenset({
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
})


@functools.lru_cache(maxsize=4096)
def secret_name(key: str) -> bool:
    """Memoised: attribute keys repeat on every span, and this runs for each of them."""
    k = key.lower()
    last = k.rsplit(".", 1)[-1]
    return last in _SECRET_NAMES or k in _SECRET_NAMES


def _may_hold_secret(text: str) -> bool:
    """False only when ``text`` cannot contain anything ``_SECRET_VALUE`` matches."""
    low = text.lower()
    for hint in _SECRET_HINTS:
        if hint in low:
            return True
    return "gh" in low and _GITHUB_HINT.search(low) is not None


# Attribute keys already found not to name a credential: most spans repeat the same few dozen
# keys, and one set lookup per span replaces a check per key.
_plain_keys: set[str] = set()
_MAX_PLAIN_KEYS = 4096


def _any_secret_name(keys: Any) -> bool:
    if _plain_keys.issuperset(keys):
        return False
    found = False
    for key in keys:
        if key in _plain_keys:
            continue
        if secret_name(key):
            found = True
        elif len(_plain_keys) < _MAX_PLAIN_KEYS:
            _plain_keys.add(key)
    return found


def scrub_value(value: Any) -> tuple[Any, bool]:
    """The value with anything that looks like a credential replaced; and whether it changed."""
    if isinstance(value, str):
        if len(value) < _SHORTEST_SECRET or not _may_hold_secret(value) or not _SECRET_VALUE.search(value):
            return value, False
        return _SECRET_VALUE.sub(REDACTED, value), True
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
        out = [scrub_value(v)[0] for v in value]
        changed = any(a != b for a, b in zip(out, value))
        return (tuple(out) if changed else value), changed
    return value, False


def _needs_scrub(attrs: Mapping[str, Any], redact: Callable[[str, Any], Any] | None) -> bool:
    """Whether ``scrub_attributes`` could change anything: False for the common span, checked in one pass.

    A secret-looking key, message content with a redact hook, or text holding one of the
    literals every secret pattern needs sends the span down the full per-value path.
    """
    if redact is not None and not CONTENT_KEYS.isdisjoint(attrs):
        return True
    if _any_secret_name(attrs):
        return True
    texts: list[str] = []
    scalars = _SCALARS
    for value in attrs.values():
        kind = type(value)
        if kind is str:
            texts.append(value)
        elif kind in scalars:
            continue
        elif isinstance(value, str):
            texts.append(value)
        elif isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
            texts.extend(v for v in value if isinstance(v, str))
    return bool(texts) and _may_hold_secret("\n".join(texts))


def scrub_attributes(attrs: Any, redact: Callable[[str, Any], Any] | None) -> tuple[dict[str, Any] | None, int]:
    """Scrubbed copy of ``attrs``, or None when nothing needed changing (the common case)."""
    if not attrs:
        return None, 0
    if not _needs_scrub(attribute_dict(attrs), redact):
        return None, 0
    out: dict[str, Any] | None = None
    n = 0
    for key, value in attrs.items():
        new = value
        if secret_name(key):
            new = REDACTED
        else:
            new, _ = scrub_value(value)
            if redact is not None and key in CONTENT_KEYS:
                try:
                    new = redact(key, new)
                except Exception:
                    new = REDACTED  # a failing hook must not leak what it was meant to hide
                if new is None:
                    new = REDACTED
        if new is not value and new != value:
            if out is None:
                out = dict(attrs)
            out[key] = new
            n += 1
    return out, n


def scrub_span(span: ReadableSpan, redact: Callable[[str, Any], Any] | None = None) -> tuple[ReadableSpan, int]:
    attrs, n = scrub_attributes(span_attribute_store(span), redact)
    events = list(span.events)
    events_changed = False
    for i, ev in enumerate(events):
        ev_attrs, m = scrub_attributes(ev.attributes, redact)
        if ev_attrs is not None:
            events[i] = Event(ev.name, ev_attrs, ev.timestamp)
            events_changed = True
            n += m
    if attrs is None and not events_changed:
        return span, 0
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attrs if attrs is not None else span.attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    ), n


# Export threads of processors shutting down: their exporter's log lines (retry warnings, "failed to
# export") are dropped, as the processor's own one-line summary says what was lost.
_QUIET_THREADS: set[int] = set()
_QUIET_LOGGERS: set[str] = set()


class _QuietThreads(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread not in _QUIET_THREADS


def _quiet(exporter: SpanExporter, thread: int | None) -> None:
    """Drop log records from ``thread`` on the exporter's logger (and the OTLP HTTP client's)."""
    if thread is None:
        return
    _QUIET_THREADS.add(thread)
    for name in (type(exporter).__module__, "opentelemetry.exporter.otlp.common.http"):
        if name not in _QUIET_LOGGERS:
            _QUIET_LOGGERS.add(name)
            logging.getLogger(name).addFilter(_QuietThreads())


@dataclass
class ExportStats:
    queued: int = 0  # waiting in the queue now
    max_queue_size: int = 0
    ended: int = 0  # spans handed to the queue
    exported: int = 0  # accepted by the exporter
    dropped: int = 0  # refused because the queue was full
    failed: int = 0  # the exporter gave up on them (collector unreachable past its retries)
    redacted_values: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class BoundedBatchProcessor(SpanProcessor):
    """A batch span processor that never blocks ``span.end()`` and counts what it drops."""

    # It enqueues in on_end and never reads attributes at start: see _otel.start_policy.
    flowscope_start_attributes_indifferent = True

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = 8192,
        max_export_batch_size: int = 512,
        schedule_delay_s: float | None = None,
        redact: Callable[[str, Any], Any] | None = None,
        scrub: bool = True,
    ) -> None:
        self.exporter = exporter
        self.max_queue_size = max(1, max_queue_size)
        self.batch_size = max(1, min(max_export_batch_size, self.max_queue_size))
        if schedule_delay_s is None:
            schedule_delay_s = float(os.environ.get("OTEL_BSP_SCHEDULE_DELAY", "1000")) / 1000
        self.delay_s = schedule_delay_s
        self.redact = redact
        self.scrub = scrub
        self.stats = ExportStats(max_queue_size=self.max_queue_size)
        self._queue: deque[ReadableSpan] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._done = 0  # spans exported or failed (for flush)
        self._shutdown = False
        self._start_worker()
        if hasattr(os, "register_at_fork"):
            ref = weakref.WeakMethod(self._after_fork)
            os.register_at_fork(after_in_child=lambda: (m := ref()) and m())

    def _start_worker(self) -> None:
        self._pid = os.getpid()
        self._worker = threading.Thread(target=self._run, name="flowscope-export", daemon=True)
        self._worker.start()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._queue.clear()
        self._start_worker()

    # --- span processor interface ----------------------------------------------------

    def snapshot_stats(self) -> ExportStats:
        """The counters, with ``queued`` read now under the queue's lock."""
        with self._lock:
            self.stats.queued = len(self._queue)
        return self.stats

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        try:
            if self._shutdown or not span.context.trace_flags.sampled:
                return
            with self._lock:
                if len(self._queue) >= self.max_queue_size:
                    self.stats.dropped += 1
                    return
                self._queue.append(span)
                self.stats.ended += 1
                full = len(self._queue) >= self.batch_size
            if full:
                self._wake.set()
        except Exception:  # never into the host app
            pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export what has ended so far; False when that takes longer than the timeout."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._lock:
            target = self.stats.ended
        self._wake.set()
        with self._progress:
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._worker.is_alive():
                    return False
                self._progress.wait(min(left, 0.1))
                self._wake.set()
        return True

    def shutdown(self, timeout_millis: int = 2000) -> None:
        """Flush for at most ``timeout_millis`` in all, then stop; one warning line if spans are left.

        The exporter may be stuck in a request to a hung collector or waiting
        to retry one that is down: its retries are cut short (``shutdown``)
        and its log lines from then on are dropped, so an exiting app waits
        the bound and prints one line saying what was lost, not a retry log.
        """
        if self._shutdown:
            return
        deadline = time.monotonic() + max(0, timeout_millis) / 1000
        _quiet(self.exporter, self._worker.ident)
        self.force_flush(timeout_millis)
        self._shutdown = True
        self._wake.set()
        try:
            self.exporter.shutdown()  # aborts the exporter's wait between retries
        except Exception:
            logger.debug("flowscope: exporter shutdown failed", exc_info=True)
        self._worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = self.stats.ended - self.stats.exported - self.stats.failed
            failed, dropped = self.stats.failed, self.stats.dropped
        if left or failed or dropped:
            logger.warning("flowscope: %d spans not exported: %d still unsent after the %.1fs shutdown bound, "
                           "%d failed (collector unreachable or refusing), %d dropped (queue full); "
                           "flowscope.stats() counts them, FLOWSCOPE_SHUTDOWN_TIMEOUT_S sets the bound",
                           left + failed + dropped, left, timeout_millis / 1000, failed, dropped)

    # --- the worker -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            _QUIET_THREADS.discard(threading.get_ident())

    def _loop(self) -> None:
        while not self._shutdown:
            self._wake.wait(self.delay_s)
            self._wake.clear()
            while not self._shutdown:
                with self._lock:
                    n = min(self.batch_size, len(self._queue))
                    batch = [self._queue.popleft() for _ in range(n)]
                    self.stats.queued = len(self._queue)
                if not batch:
                    break
                self._export(batch)

    def _export(self, batch: Sequence[ReadableSpan]) -> None:
        ok = False
        try:
            spans = list(batch)
            if self.scrub:
                for i, span in enumerate(spans):
                    spans[i], n = scrub_span(span, self.redact)
                    self.stats.redacted_values += n
            token = suppress_instrumentation()  # the exporter's own HTTP call must not be traced
            try:
                ok = self.exporter.export(spans) == SpanExportResult.SUCCESS
            finally:
                if token is not None:
                    otel_context.detach(token)  # type: ignore[arg-type]
        except Exception:
            logger.debug("flowscope: span export failed", exc_info=True)
        if ok:
            self.stats.exported += len(batch)
        else:
            self.stats.failed += len(batch)
        with self._progress:
            self._done += len(batch)
            self._progress.notify_all()
