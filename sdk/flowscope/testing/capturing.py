"""Capture a test's spans in memory and read them back as runs, with no collector running.

    with flowscope.testing.capture() as cap:
        my_flow("hello")
    run = cap.run()                      # the latest run (or cap.run(run_id))
    run.summary["cost_usd"], [n["name"] for n in run.nodes], run.state(at=1)

The views are the collector's own (:mod:`flowscope.core.views`): finished spans are
turned into the same :class:`~flowscope.core.views.SpanRecord` rows the collector
stores (attributes stringified as OTLP ingest does, then normalised and
priced by :func:`flowscope.core.normalize.normalize_attributes`), so a test sees
exactly the summary, node sequence and state the API would serve.

Works whether or not ``flowscope.init()`` ran: the global TracerProvider can
be set only once per process, so capture reuses whatever provider flowscope
(or the application) installed, creating flowscope's if there is none, and
taps it with one extra span processor that is a no-op while no capture is
active.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import StatusCode

from flowscope.attributes import install_propagator
from flowscope.core import semconv, views
from flowscope.core.normalize import normalize_attributes
from flowscope.instrumentation import instrument_all
from flowscope.tracing import tracer_provider

_STATUS = {StatusCode.UNSET: "Unset", StatusCode.OK: "Ok", StatusCode.ERROR: "Error"}


# --- spans → records --------------------------------------------------------------------


def stringify(value: Any) -> str:
    """An attribute value as the collector stores it (OTel Collector ``AsString`` rules):
    bools lower-case, whole doubles without ``.0``, arrays as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _attrs(raw: Any) -> dict[str, str]:
    return {str(k): stringify(v) for k, v in (raw or {}).items()}


def span_record(span: ReadableSpan) -> views.SpanRecord:
    """The collector's row for one finished span."""
    ctx = span.context
    parent = span.parent
    start = span.start_time or 0
    end = span.end_time or start
    attrs = normalize_attributes(_attrs(span.attributes), span_name=span.name)
    return views.record_from_attributes(
        trace_id=f"{ctx.trace_id:032x}" if ctx is not None else "",
        span_id=f"{ctx.span_id:016x}" if ctx is not None else "",
        parent_span_id=f"{parent.span_id:016x}" if parent is not None else "",
        name=span.name,
        start_ns=start,
        duration_ns=max(0, end - start),
        status=_STATUS.get(span.status.status_code, "Unset"),
        status_message=span.status.description or "",
        attributes=attrs,
        service=str(span.resource.attributes.get(semconv.SERVICE_NAME, "")),
    )


def state_events(span: ReadableSpan, record: views.SpanRecord) -> list[views.StateEvent]:
    return [
        views.state_event_from_attributes(_attrs(ev.attributes), node_name=record.node_name)
        for ev in span.events
        if ev.name == semconv.EVENT_STATE
    ]


# --- runs -------------------------------------------------------------------------------


class CapturedRun:
    """One captured run: the API's summary, node sequence and state-at-step views."""

    def __init__(self, run_id: str, spans: list[views.SpanRecord], events: list[views.StateEvent],
                 fork: dict[str, Any] | None = None) -> None:
        self.id = run_id
        self.view = views.RunView(run_id, spans, events)
        self.spans = self.view.spans
        self.events = self.view.events
        self.summary: dict[str, Any] = {**self.view.summary(), **(fork or views.fork_fields(None, None))}
        self.nodes: list[dict[str, Any]] = self.view.nodes()

    @property
    def node_names(self) -> list[str]:
        """Node names in step order, retries included."""
        return [n["name"] for n in self.nodes]

    @property
    def steps(self) -> list[int]:
        """Every step there is a state for: -1 (the input) and each node step."""
        return sorted({-1, *(n["step"] for n in self.nodes), *views.state_steps(self.events)})

    def state(self, at: int) -> Any:
        """The flow's state after node step ``at`` (-1: the input), as ``/state?at=`` serves it."""
        last = max(self.steps)
        if at < -1 or at > last:
            raise ValueError(f"at={at} is out of range: run {self.id} has steps -1 (input) to {last}")
        return self.view.state(at)

    def node(self, name: str) -> dict[str, Any]:
        """The first node called ``name``."""
        for n in self.nodes:
            if n["name"] == name:
                return n
        raise KeyError(f"run {self.id} has no node {name!r}; nodes: {self.node_names}")

    def __repr__(self) -> str:
        s = self.summary
        return (f"CapturedRun(id={self.id!r}, flow={s['flow']!r}, status={s['status']!r}, "
                f"nodes={self.node_names}, cost_usd={s['cost_usd']!r})")


class _Tap(SpanProcessor):
    """Hands finished spans to the active captures; does nothing while there are none."""

    def __init__(self) -> None:
        self.sinks: tuple[Capture, ...] = ()
        self._lock = threading.Lock()

    def add(self, sink: Capture) -> None:
        with self._lock:
            self.sinks = (*self.sinks, sink)

    def remove(self, sink: Capture) -> None:
        with self._lock:
            self.sinks = tuple(s for s in self.sinks if s is not sink)

    def on_end(self, span: ReadableSpan) -> None:
        for sink in self.sinks:
            sink._add(span)


_TAP = _Tap()
_MARK = "_flowscope_capture_tap"


def _ensure_tapped(instrument: bool) -> TracerProvider:
    try:
        provider = tracer_provider()
    except RuntimeError as exc:
        raise RuntimeError(f"flowscope.testing.capture: {exc}") from None
    if getattr(provider, _MARK, None) is not _TAP:
        provider.add_span_processor(_TAP)
        setattr(provider, _MARK, _TAP)
    install_propagator()
    if instrument:
        instrument_all()
    return provider


class Capture:
    """Spans finished while the capture is active, readable as runs.

    ``instrument`` (default True) turns on flowscope's instrumentations of the
    installed libraries, as ``flowscope.init()`` does, so LLM calls and flow
    runtimes are traced even in a test that never called ``init()``.
    """

    def __init__(self, *, instrument: bool = True) -> None:
        self.instrument = instrument
        self._lock = threading.Lock()
        self._spans: list[ReadableSpan] = []
        self._active = False

    # lifecycle
    def start(self) -> Capture:
        if not self._active:
            _ensure_tapped(self.instrument)
            _TAP.add(self)
            self._active = True
        return self

    def stop(self) -> None:
        if self._active:
            _TAP.remove(self)
            self._active = False

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _add(self, span: ReadableSpan) -> None:
        with self._lock:
            self._spans.append(span)

    def clear(self) -> None:
        """Forget what was captured so far (the capture stays active)."""
        with self._lock:
            self._spans.clear()

    # reading
    @property
    def spans(self) -> list[ReadableSpan]:
        """The raw finished OTel spans, in the order they ended."""
        with self._lock:
            return list(self._spans)

    def _records(self) -> list[tuple[views.SpanRecord, list[views.StateEvent]]]:
        out = []
        for span in self.spans:
            rec = span_record(span)
            out.append((rec, state_events(span, rec)))
        return out

    def run_ids(self) -> list[str]:
        """Ids of the captured runs, oldest first (by when the run's root started)."""
        return [r for r, _ in _order(rec for rec, _ in self._records())]

    def _forks(self) -> dict[str, dict[str, Any]]:
        """Each fork's parent and step (flowscope.replay), from the attributes of its spans."""
        out: dict[str, dict[str, Any]] = {}
        for span in self.spans:
            attrs = span.attributes or {}
            parent = attrs.get(semconv.RUN_FORKED_FROM)
            run_id = attrs.get(semconv.RUN_ID)
            if parent and run_id:
                out[str(run_id)] = views.fork_fields(str(parent), attrs.get(semconv.RUN_FORKED_AT_STEP))
        return out

    def runs(self) -> list[CapturedRun]:
        records, forks = self._records(), self._forks()
        return [_build(run_id, records, forks) for run_id, _ in _order(rec for rec, _ in records)]

    def run(self, run: Any = None, *, flow: str | None = None) -> CapturedRun:
        """A captured run: by id (or a ``flowscope.Run``), else the latest one
        (of flow ``flow`` if given). Raises AssertionError, with what *was*
        captured, when there is no such run."""
        __tracebackhide__ = True
        records = self._records()
        order = _order(rec for rec, _ in records)
        if flow is not None:
            order = [(rid, f) for rid, f in order if f == flow]
        run_id = getattr(run, "id", run)
        if run_id is None:
            if not order:
                raise AssertionError(_nothing_captured(records, flow))
            run_id = order[-1][0]
        elif not any(rec.run_id == run_id for rec, _ in records):
            raise AssertionError(
                f"no captured run {run_id!r}; captured runs: {_describe(order) or 'none'}"
            )
        return _build(str(run_id), records, self._forks())

    def __repr__(self) -> str:
        return f"Capture(spans={len(self._spans)}, active={self._active})"


def _order(records: Iterable[views.SpanRecord]) -> list[tuple[str, str]]:
    """(run id, flow) pairs ordered by the run's start: its run span, else its first span."""
    first: dict[str, tuple[int, str]] = {}
    roots: dict[str, tuple[int, str]] = {}
    for rec in records:
        if rec.kind == semconv.KIND_RUN and (rec.run_id not in roots or rec.start_ns < roots[rec.run_id][0]):
            roots[rec.run_id] = (rec.start_ns, rec.flow or rec.name)
        if rec.run_id not in first or rec.start_ns < first[rec.run_id][0]:
            first[rec.run_id] = (rec.start_ns, "")
    first.update(roots)
    return [(rid, flow) for rid, (_, flow) in sorted(first.items(), key=lambda kv: (kv[1][0], kv[0]))]


def _build(run_id: str, records: Sequence[tuple[views.SpanRecord, list[views.StateEvent]]],
           forks: dict[str, dict[str, Any]] | None = None) -> CapturedRun:
    spans = [rec for rec, _ in records if rec.run_id == run_id]
    events = [ev for rec, evs in records if rec.run_id == run_id for ev in evs]
    return CapturedRun(run_id, spans, events, (forks or {}).get(run_id))


def _describe(order: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{rid} ({flow or 'no run span'})" for rid, flow in order)


def _nothing_captured(records: Sequence[Any], flow: str | None) -> str:
    if flow is not None and records:
        return f"no captured run of flow {flow!r}; captured runs: " + (
            _describe(_order(rec for rec, _ in records)) or "none")
    return (
        "no spans were captured. Did the code under test run inside the capture (a flowscope.run, "
        "a @flowscope.flow or an instrumented graph/flow invocation)? If the application installed its "
        "own TracerProvider, check that its sampler records spans and that OTEL_SDK_DISABLED is not set."
    )


def capture(*, instrument: bool = True) -> Capture:
    """Capture spans in memory: ``with flowscope.testing.capture() as cap: ...``."""
    return Capture(instrument=instrument)
