"""The one input of every run view: typed span and state-event records.

A view's input is :class:`SpanRecord`, the typed form of a span (the same
fields as the ``flowscope_spans`` table), and :class:`StateEvent`. The
collector builds them from ClickHouse rows, the in-memory test kit from
finished OTel spans (``record_from_attributes``, ``state_event_from_attributes``),
so both get identical answers. The money, time and duration formats of every
answer (``usd``, ``iso``, ``ms``) live here too, beside the records they format.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from .. import semconv
from ..run_attributes import is_run_attribute_key

ZERO = Decimal(0)


@dataclass
class SpanRecord:
    run_id: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start_ns: int
    duration_ns: int
    service: str = ""
    project: str = "default"
    kind: str = ""  # run | node | llm | tool | ""
    flow: str = ""
    node_name: str = ""
    node_type: str = ""
    node_step: int = -1
    node_attempt: int = 0
    branch: str = ""
    status: str = "Unset"  # Unset | Ok | Error (as the OTel Collector exporter writes it)
    status_message: str = ""
    error_type: str = ""
    provider: str = ""
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = ZERO
    cost_input_usd: Decimal = ZERO
    cost_cached_input_usd: Decimal = ZERO
    cost_cache_write_usd: Decimal = ZERO
    cost_output_usd: Decimal = ZERO
    cost_source: str = ""
    usage_estimated: bool = False
    cache_hit: bool = False
    cache_saved_usd: Decimal = ZERO
    retry_count: int = 0
    fallback_from: str = ""
    fallback_to: str = ""
    budget_exceeded: bool = False
    ttfc_s: float = 0.0
    # LangGraph's superstep of a node (flowscope.node.superstep), -1 elsewhere. Not in the
    # collector's RunRecord: the collector reads it from the node spans' attributes
    # (Store.node_supersteps) for the one view that shows it, the node sequence.
    superstep: int = -1
    # The span's run attributes (user.id, flowscope.run.attr.*...) by key. Not in RunRecord
    # either: the collector reads a run's from flowscope_run_attributes (migration 011).
    run_attributes: dict[str, str] = field(default_factory=dict)

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ns

    @property
    def is_llm(self) -> bool:
        return self.kind == semconv.KIND_LLM

    @property
    def is_error(self) -> bool:
        return self.status == "Error"


@dataclass
class StateEvent:
    seq: int
    op: str
    path: str
    value: Any  # decoded JSON (None for delete)
    node_step: int = -1
    node_name: str = ""
    truncated: bool = False
    ts_ns: int = 0  # when it happened, where known (ordering of live stream events)


def _int(v: Any, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _dec(v: Any) -> Decimal:
    if v is None or v == "":
        return ZERO
    try:
        return Decimal(str(v))
    except Exception:
        return ZERO


def _bool(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.lower() == "true")


def record_from_attributes(
    *,
    trace_id: str,
    span_id: str,
    parent_span_id: str,
    name: str,
    start_ns: int,
    duration_ns: int,
    status: str,
    status_message: str,
    attributes: Mapping[str, Any],
    service: str = "",
    project: str = "default",
) -> SpanRecord:
    """Typed record from a span's (already normalised) attributes.

    The SQL materialized view that fills ``flowscope_spans`` reads the same
    keys; keep the two in step (tests compare them).
    """
    a = attributes
    provider = a.get(semconv.GEN_AI_PROVIDER_NAME) or a.get(semconv.GEN_AI_SYSTEM) or ""
    return SpanRecord(
        run_id=str(a.get(semconv.RUN_ID) or trace_id),
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_span_id,
        name=name,
        start_ns=start_ns,
        duration_ns=duration_ns,
        service=service,
        project=project,
        kind=str(a.get(semconv.SPAN_KIND, "")),
        flow=str(a.get(semconv.GEN_AI_WORKFLOW_NAME, "")),
        node_name=str(a.get(semconv.NODE_NAME, "")),
        node_type=str(a.get(semconv.NODE_TYPE, "")),
        node_step=_int(a.get(semconv.NODE_STEP), -1),
        node_attempt=_int(a.get(semconv.NODE_ATTEMPT)),
        branch=str(a.get(semconv.ROUTER_BRANCH, "")),
        status=status,
        status_message=status_message,
        error_type=str(a.get(semconv.ERROR_TYPE, "")),
        provider=str(provider),
        model=str(a.get(semconv.GEN_AI_RESPONSE_MODEL) or a.get(semconv.GEN_AI_REQUEST_MODEL) or ""),
        input_tokens=_int(a.get(semconv.GEN_AI_USAGE_INPUT_TOKENS)),
        output_tokens=_int(a.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS)),
        cached_input_tokens=_int(a.get(semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)),
        cache_write_tokens=_int(a.get(semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS)),
        reasoning_tokens=_int(a.get(semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS)),
        cost_usd=_dec(a.get(semconv.COST_USD)),
        cost_input_usd=_dec(a.get(semconv.COST_INPUT_USD)),
        cost_cached_input_usd=_dec(a.get(semconv.COST_CACHED_INPUT_USD)),
        cost_cache_write_usd=_dec(a.get(semconv.COST_CACHE_WRITE_USD)),
        cost_output_usd=_dec(a.get(semconv.COST_OUTPUT_USD)),
        cost_source=str(a.get(semconv.COST_SOURCE, "")),
        usage_estimated=_bool(a.get(semconv.USAGE_ESTIMATED)),
        cache_hit=_bool(a.get(semconv.CACHE_HIT)),
        cache_saved_usd=_dec(a.get(semconv.CACHE_SAVED_USD)),
        retry_count=_int(a.get(semconv.RETRY_COUNT)),
        fallback_from=str(a.get(semconv.FALLBACK_FROM, "")),
        fallback_to=str(a.get(semconv.FALLBACK_TO, "")),
        budget_exceeded=_bool(a.get(semconv.BUDGET_EXCEEDED)),
        ttfc_s=float(a.get(semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK) or 0.0),
        superstep=_int(a.get(semconv.NODE_SUPERSTEP), -1),
        run_attributes={k: str(v) for k, v in a.items() if is_run_attribute_key(k)},
    )


def state_event_from_attributes(attrs: Mapping[str, Any], node_name: str = "") -> StateEvent:
    raw = attrs.get(semconv.STATE_VALUE)
    try:
        value = json.loads(raw) if isinstance(raw, str) and raw != "" else raw
    except ValueError:
        value = raw
    return StateEvent(
        seq=_int(attrs.get(semconv.STATE_SEQ)),
        op=str(attrs.get(semconv.STATE_OP, "set")),
        path=str(attrs.get(semconv.STATE_PATH, "")),
        value=value,
        node_step=_int(attrs.get(semconv.NODE_STEP), -1),
        node_name=node_name,
        truncated=_bool(attrs.get(semconv.STATE_TRUNCATED)),
    )


def dedupe(spans: Iterable[SpanRecord]) -> list[SpanRecord]:
    """One record per span id: an exporter retry that slipped through counts once."""
    seen: dict[tuple[str, str], SpanRecord] = {}
    for s in spans:
        seen.setdefault((s.trace_id, s.span_id), s)
    return sorted(seen.values(), key=lambda s: (s.start_ns, s.span_id))


# --- formatting helpers ---------------------------------------------------------


def usd(value: Decimal) -> str:
    """Money as a plain decimal string: no exponent, no trailing zeros ("0.00066")."""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def iso(ns: int) -> str:
    dt = datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ns % 1_000_000_000) // 1000:06d}Z"


def ms(ns: int) -> float:
    return round(ns / 1e6, 3)
