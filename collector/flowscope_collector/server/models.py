"""Response models of the REST API: the field names are the contract in DESIGN.md §4.

Money is a decimal string (``"0.00066"``), never a float, so that what a
client adds up is what the collector added up.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

Money = str

_COMPLETE = (
    "False when an LLM call included in this cost has no price, or lacks the price of a part "
    "(unpriced_calls, partially_priced_calls): the figure is then a lower bound, never a silent $0"
)


class _Completeness(BaseModel):
    """``cost_complete`` next to every cost that sums LLM calls, derived from the counts beside it."""

    unpriced_calls: int = 0
    partially_priced_calls: int = Field(
        0, description="LLM calls priced except for a part the catalog has no price for "
                       "(flowscope.cost.source=partial): the cost is then a lower bound")

    @computed_field(description=_COMPLETE)  # type: ignore[prop-decorator]
    @property
    def cost_complete(self) -> bool:
        return self.unpriced_calls == 0 and self.partially_priced_calls == 0


class ErrorBody(BaseModel):
    """Every error the collector answers, unknown routes included: a message a person can act on."""

    error: str = Field(description="What went wrong, and what to do about it")
    status: int = Field(description="The HTTP status, repeated for clients that only keep the body")


_ERRORS = {
    400: "The body is not valid OTLP; the message says what is wrong. Not worth retrying",
    401: "No API key, or an unknown one (only when the collector has API keys: FLOWSCOPE_API_KEYS)",
    403: "The API key lacks the scope this route needs (read, ingest, or operator for /metrics)",
    404: "No such run in the API key's project",
    408: "The body did not arrive in time (FLOWSCOPE_BODY_TIMEOUT_S overall, or idle too long); "
         "nothing of it was stored. Retry",
    413: "The body is larger than the collector takes (FLOWSCOPE_MAX_BODY_BYTES), before or after gzip",
    415: "A content type or encoding other than OTLP protobuf/JSON, gzip or none",
    422: "A parameter is invalid: the message names it and what it accepts",
    429: "Too much is waiting to be stored; retry after Retry-After seconds",
    503: "The collector is starting or stopping, cannot reach ClickHouse, or is above its memory limit "
         "(the message says which); "
         "retry after Retry-After",
}


def errors(*codes: int, plain_route: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each answered as :class:`ErrorBody`.

    ``plain_route``: the route answers text on success (graph, /metrics); FastAPI would
    document its errors as text too, but they are JSON like every other error.
    """
    if plain_route:
        ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        return {code: {"description": _ERRORS[code], "content": ref} for code in codes}
    return {code: {"model": ErrorBody, "description": _ERRORS[code]} for code in codes}


# what every read route may answer, and a per-run route besides
READ_ERRORS = errors(401, 403, 422, 503)
RUN_ERRORS = errors(404)


class ModelCost(_Completeness):
    provider: str
    model: str
    llm_calls: int
    input_tokens: int
    cached_input_tokens: int = 0
    output_tokens: int
    reasoning_tokens: int = 0
    cost_usd: Money


class NodeCost(BaseModel):
    step: int
    name: str
    llm_calls: int
    cost_usd: Money
    duration_ms: float
    error: str | None = Field(None, description="The node's error type (error.type) if it failed")
    error_message: str | None = Field(None, description="What went wrong, in the words of its status message")


class CostBreakdown(BaseModel):
    input_usd: Money
    cached_input_usd: Money
    cache_write_usd: Money
    output_usd: Money


class RunListItem(_Completeness):
    run_id: str
    flow: str
    service: str
    # who the run was for: its run attributes (set_run_attributes, runtime metadata), migration 011
    user_id: str | None = Field(None, description="The run attribute user_id (span attribute user.id)")
    session_id: str | None = Field(
        None, description="The run attribute session_id (span attribute gen_ai.conversation.id)")
    tenant: str | None = Field(None, description="The run attribute tenant (flowscope.run.attr.tenant)")
    attributes: dict[str, str] = Field(
        default_factory=dict, description="Every run attribute by the name it was set by (user_id, tenant, plan...); "
                                          "filter the list by them with attr=NAME:VALUE")
    status: Literal["ok", "error", "running"]
    start: str
    end: str | None
    duration_ms: float
    spans: int
    llm_calls: int
    errors: int
    retries: int
    fallbacks: int
    cache_hits: int
    input_tokens: int
    cached_input_tokens: int
    cache_write_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: Money
    cache_saved_usd: Money
    forked_from: str | None = Field(None, description="A replay's fork: the run it was forked from")
    forked_at_step: int | None = Field(None, description="A replay's fork: the parent's step it restarted after")


class RunSummary(RunListItem):
    project: str = "default"
    estimated_calls: int = 0
    waiting_ms: float = Field(0.0, description="Time the run spent waiting (human in the loop), not model latency")
    budget_exceeded: bool = False
    cost_breakdown: CostBreakdown
    by_model: list[ModelCost]
    by_node: list[NodeCost]
    url: str | None = None


class RunList(BaseModel):
    runs: list[RunListItem]
    next_cursor: str | None = None


class NodeItem(BaseModel):
    step: int
    name: str
    type: str
    attempt: int
    start: str
    duration_ms: float
    status: Literal["ok", "error"]
    llm_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: Money
    retries: int = 0
    branch: str | None = None
    error: str | None = Field(None, description="The node's error type (error.type) if it failed")
    error_message: str | None = Field(None, description="What went wrong, in the words of its status message")
    superstep: int | None = Field(None, description="LangGraph's superstep (langgraph_step) the node ran in; "
                                                    "nodes of one superstep ran in parallel. null outside LangGraph")
    span_id: str


class NodeList(BaseModel):
    run_id: str
    nodes: list[NodeItem]


class SpanEvent(BaseModel):
    name: str
    timestamp: str
    attributes: dict[str, str]


class SpanNode(BaseModel):
    span_id: str
    parent_span_id: str | None
    trace_id: str
    name: str
    kind: str
    start: str
    duration_ms: float
    status: str
    status_message: str = ""
    service: str
    attributes: dict[str, str]
    events: list[SpanEvent] = []
    children: list[SpanNode] = []


class SpanTree(BaseModel):
    run_id: str
    spans: int
    roots: list[SpanNode]


class StateAt(BaseModel):
    run_id: str
    at: int
    node: str | None
    state: Any
    steps: list[int]


class StateDiff(BaseModel):
    run_id: str
    from_: int = Field(alias="from")
    to: int
    added: dict[str, Any]
    removed: dict[str, Any]
    changed: dict[str, Any]

    model_config = {"populate_by_name": True}


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: Literal["ready", "not ready"]
    clickhouse: str
    schema_version: int | None
    expected_schema_version: int
    detail: str | None = None
    quarantined_requests: int = 0
    quarantined_spans: int = 0
    wal_lost_requests: int = 0


class Version(BaseModel):
    version: str
    pricing_version: str
    schema_version: int
    clickhouse: str


class CostGroup(_Completeness):
    key: str = Field(description="The group's value: a model, provider, service, flow, node, day or attribute value")
    provider: str | None = Field(None, description="The model's provider (group_by=model only)")
    llm_calls: int
    input_tokens: int
    cached_input_tokens: int
    cache_write_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: Money


class CostReport(_Completeness):
    group_by: str
    since: str | None
    until: str | None
    pricing_version: str | None = Field(
        None, description="The catalog every call was priced again under (pricing=current, /costs/preview); "
                          "null: the figures as stored, each call priced by the catalog its span names")
    total_usd: Money
    llm_calls: int
    groups: list[CostGroup]


class CostPreviewRequest(BaseModel):
    """``POST /api/v1/costs/preview``: the ``/costs`` query, and the prices to compute it under."""

    group_by: str = Field("model", pattern=r"^(model|provider|service|flow|node|day|attr:[A-Za-z0-9_.\-]{1,200})$",
                          description="as GET /costs")
    since: str | None = Field(None, description="ISO 8601, or 90m / 24h / 7d ago")
    until: str | None = Field(None, description="ISO 8601, or 90m / 24h / 7d ago")
    limit: int = Field(1000, ge=1, le=10_000)
    pricing: dict[str, Any] | None = Field(
        None, description="A pricing document in the pricing-file format ({\"models\": [...], \"aliases\": {...}}), "
                          "added to the bundled catalog; null or {} prices under the bundled catalog alone")


class RepriceRequest(BaseModel):
    """``POST /api/v1/reprice``: what ``flowscope-collector reprice`` takes as flags."""

    since: str = Field(description="ISO 8601, or 90m / 24h / 7d ago: calls that started from then")
    until: str | None = Field(None, description="ISO 8601, or 90m / 24h / 7d ago; default now")
    model: str | None = Field(None, max_length=200, description="one model, or a glob such as gpt-4o*")
    project: str | None = Field(None, max_length=200, description="one project; default every project")
    dry_run: bool = Field(False, description="only report what would change")
    pricing: dict[str, Any] | None = Field(
        None, description="a pricing document (the pricing-file format) added to the bundled catalog; "
                          "default the collector's catalog (with its FLOWSCOPE_PRICING_FILE)")


class RepriceResult(BaseModel):
    """What a reprice examined and changed."""

    pricing_version: str
    examined: int = Field(description="LLM calls in the window (cache hits and provider-reported costs excluded)")
    repriced: int = Field(description="calls whose cost changed")
    newly_priced: int = Field(description="of those, calls that were unpriced")
    unchanged: int
    unpriced: int = Field(description="calls this catalog cannot price either: left as they were")
    invalid_usage: int = Field(description="calls with self-contradicting usage: left as they were")
    cost_before_usd: Money
    cost_after_usd: Money
    models: dict[str, int] = Field(description="repriced calls per model")


class CompareNode(BaseModel):
    step: int
    name: str
    status: str
    cost_usd: Money
    duration_ms: float


class CompareSide(BaseModel):
    run_id: str
    flow: str
    status: str
    start: str
    duration_ms: float
    cost_usd: Money
    llm_calls: int
    input_tokens: int
    output_tokens: int
    errors: int
    path: list[str]
    nodes: list[CompareNode]


class StateDivergence(BaseModel):
    step: int = Field(description="First step (-1 = input) after which the two states differ")
    node_a: str | None
    node_b: str | None
    added: dict[str, Any]
    removed: dict[str, Any]
    changed: dict[str, Any]


class ForkComparison(BaseModel):
    parent: str
    child: str
    at_step: int = Field(description="The parent's step the fork restarted after (steps up to it are shared)")
    diverged_at_step: int | None = Field(
        description="First step after at_step where the two runs ran another node, or their states differ; "
        "None if they did the same")


class RunComparison(BaseModel):
    a: CompareSide
    b: CompareSide
    same_path: bool
    first_path_difference: int | None = Field(description="Index in the paths where they first differ")
    cost_delta_usd: Money = Field(description="b minus a")
    duration_delta_ms: float = Field(description="b minus a")
    first_state_divergence: StateDivergence | None
    fork: ForkComparison | None = Field(None, description="Set when one run is a replay's fork of the other")
