"""Normalise span attributes from any producer into flowscope's canonical keys.

Runs in the collector at ingest, once per span, on the flat string map that is
stored in ``otel_traces.SpanAttributes`` (and in the test kit). Producers
differ in names, in whether ``input_tokens`` includes cached input, and in
how they mark workflows and steps; after this function every LLM span says
the same thing the same way and carries a cost with its source, and foreign
workflow/step spans are flowscope run and node spans. ``docs/conventions.md``
is the user-facing version of the rules below.

Why at ingest: the typed ``flowscope_spans`` columns (filled by a SQL
materialized view) read canonical keys only, so a span normalised once is
priced, listed and summed everywhere without per-query translation. The
function sees one span's attributes, never its neighbours: rules that need
the whole run (foreign node order, nested duplicate nodes) live in
:mod:`flowscope.core.views`.

Cost for every span is paid here, so the common case (an HTTP or DB span
that is not about LLMs at all) leaves after one set-disjointness check.

Token rules (canonical = OTel GenAI v1.41: input INCLUDES cached input,
output INCLUDES reasoning):

* each canonical slot takes the first name present, newest convention first
  (``gen_ai.usage.cache_read.input_tokens`` before the legacy
  ``gen_ai.usage.cache_read_input_tokens`` before OpenInference's
  ``llm.token_count.prompt_details.cache_read`` ...);
* inclusive producers (OTel semconv, OpenLLMetry, OpenInference,
  pydantic-ai/Logfire, OpenLIT for OpenAI-style providers) are taken as they
  are. Exclusive input (Anthropic's raw ``input_tokens``) is recognised when
  the producer is known to copy it raw (OpenLIT for Anthropic; see
  ``_exclusive_input``) or when cache reads plus writes exceed the input
  (impossible for an inclusive count): cached tokens are then added back,
  once. The producer's original number is kept in
  ``flowscope.usage.reported_input_tokens``;
* reasoning larger than output means output excluded it (Gemini's
  ``candidates_token_count``): it is added back, likewise.

Cost rules: a span that already has ``flowscope.cost.source`` is left alone.
A producer-reported cost (``llm.cost.total``, ``gen_ai.usage.cost``,
``operation.cost``) is kept and marked ``provider``, except a reported 0 for
a call that used tokens, which is how producers without a price say "unknown"
(OpenLIT offline): that one is computed instead. Otherwise the shared pricing
engine computes it (``computed``) or says ``unpriced``, never a silent 0.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, MutableMapping
from datetime import datetime
from decimal import Decimal, InvalidOperation

from . import hazeljs, semconv
from .pricing import Cost, PricingCatalog, PricingFileError, Usage, format_usd, get_catalog, price

logger = logging.getLogger("flowscope")

_LLM_OPERATIONS = {"chat", "text_completion", "generate_content", "embeddings", "completion", "embedding"}

# Foreign markers.
TRACELOOP_SPAN_KIND = "traceloop.span.kind"
TRACELOOP_WORKFLOW_NAME = "traceloop.workflow.name"
TRACELOOP_ENTITY_NAME = "traceloop.entity.name"
TRACELOOP_LANGGRAPH_NODE = "traceloop.association.properties.langgraph_node"
TRACELOOP_LANGGRAPH_STEP = "traceloop.association.properties.langgraph_step"
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
OI_METADATA = "metadata"
OI_GRAPH_NODE_ID = "graph.node.id"
OI_GRAPH_NODE_NAME = "graph.node.name"
OI_TOOL_NAME = "tool.name"
OI_SESSION_ID = "session.id"
LANGGRAPH_NODE = "langgraph_node"
LANGGRAPH_STEP = "langgraph_step"
LLM_REQUEST_TYPE = "llm.request.type"  # OpenLLMetry: chat | completion | embedding | rerank

REPORTED_INPUT_TOKENS = "flowscope.usage.reported_input_tokens"
REPORTED_OUTPUT_TOKENS = "flowscope.usage.reported_output_tokens"

# Canonical slot <- producer names, newest convention first.
_INPUT_KEYS = (
    semconv.GEN_AI_USAGE_INPUT_TOKENS,
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "llm.usage.prompt_tokens",
)
_OUTPUT_KEYS = (
    semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "llm.usage.completion_tokens",
)
_CACHE_READ_KEYS = (
    semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
    "gen_ai.usage.details.cache_read_tokens",
    "gen_ai.usage.details.cached_tokens",
    "gen_ai.usage.cached_tokens",
)
OPENAI_RESPONSE_SERVICE_TIER = "openai.response.service_tier"  # OTel's OpenAI conventions
_CACHE_WRITE_KEYS = (
    semconv.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,  # the current OTel name
    semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,  # its former name, which storage reads
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
    "gen_ai.usage.details.cache_write_tokens",
    "gen_ai.usage.details.cache_creation_input_tokens",
)
_REASONING_KEYS = (
    semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    "gen_ai.usage.reasoning_tokens",
    "llm.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
    "gen_ai.usage.details.reasoning_tokens",
    "gen_ai.usage.completion_tokens_details.reasoning_tokens",
)
_PROVIDER_KEYS = (semconv.GEN_AI_PROVIDER_NAME, semconv.GEN_AI_SYSTEM, "llm.provider", "llm.system")
_MODEL_KEYS = (semconv.GEN_AI_RESPONSE_MODEL, semconv.GEN_AI_REQUEST_MODEL, "llm.model_name",
               "llm.response.model", "llm.request.model")
# Producer-reported cost in USD; the first present wins.
_COST_KEYS = ("llm.cost.total", "gen_ai.usage.cost", "operation.cost", "gen_ai.cost.total")

# Any of these keys makes a span worth a closer look; everything else returns
# after one isdisjoint() (a handful of hash lookups).
_TRIGGERS = frozenset(
    {
        semconv.SPAN_KIND,
        semconv.GEN_AI_OPERATION_NAME,
        semconv.GEN_AI_SYSTEM,
        semconv.GEN_AI_PROVIDER_NAME,
        TRACELOOP_SPAN_KIND,
        OPENINFERENCE_SPAN_KIND,
        OI_GRAPH_NODE_ID,
        TRACELOOP_LANGGRAPH_NODE,
        LANGGRAPH_NODE,
        LLM_REQUEST_TYPE,
        "llm.model_name",
        *_INPUT_KEYS,
        *_OUTPUT_KEYS,
        *hazeljs.TRIGGERS,
    }
)

_USAGE_KEYS = _INPUT_KEYS + _OUTPUT_KEYS

# For ingest paths that pre-filter spans on their serialised bytes (the
# collector's fast path): a span containing none of these substrings (nor the
# gen_ai.* / llm.* hints it already has) is one this module leaves unchanged.
INGEST_HINTS: tuple[bytes, ...] = (
    b"gen_ai.", b"llm.", TRACELOOP_SPAN_KIND.encode(), OPENINFERENCE_SPAN_KIND.encode(),
    OI_GRAPH_NODE_ID.encode(), LANGGRAPH_NODE.encode(), hazeljs.INGEST_HINT,
)

# Providers whose raw API usage excludes cached input from input_tokens.
_EXCLUSIVE_PROVIDERS = frozenset({"anthropic", "aws.bedrock", "bedrock", "gcp.vertex_ai", "vertex_ai"})
# OpenLIT copies Anthropic's raw (exclusive) input_tokens into the canonical
# gen_ai.usage.input_tokens next to the canonical cache names; its spans say who
# made them with telemetry.sdk.name=openlit (older versions: gen_ai.sdk.version).
_OPENLIT_MARKERS = ("gen_ai.sdk.version", "gen_ai.application_name")


def _int(value: str | None) -> int:
    if not value:
        return 0
    try:
        return int(float(value))
    except ValueError:
        return 0


def _first(attrs: MutableMapping[str, str], keys: tuple[str, ...]) -> tuple[str | None, str | None]:
    for key in keys:
        value = attrs.get(key)
        if value not in (None, ""):
            return key, value
    return None, None


def is_llm_span(attrs: MutableMapping[str, str]) -> bool:
    kind = attrs.get(semconv.SPAN_KIND)
    if kind:
        return kind == semconv.KIND_LLM
    oi = attrs.get(OPENINFERENCE_SPAN_KIND)
    if oi:
        return oi.upper() in ("LLM", "EMBEDDING")
    tl = attrs.get(TRACELOOP_SPAN_KIND)
    if tl:  # workflow/task/agent/tool spans may carry roll-up usage: not a call
        return False
    op = attrs.get(semconv.GEN_AI_OPERATION_NAME, "")
    if op:
        return op in _LLM_OPERATIONS
    if attrs.get(LLM_REQUEST_TYPE):
        return True
    return any(k in attrs for k in _USAGE_KEYS)


def normalize_attributes(
    attrs: MutableMapping[str, str], *, parent_span_id: bytes | str | None = None, span_name: str | None = None
) -> MutableMapping[str, str]:
    """Fill canonical keys in place and return the map. Never raises.

    ``parent_span_id`` (optional) lets a parentless foreign CHAIN/AGENT span
    become its trace's run root; without it only explicit workflow markers
    make runs. ``span_name`` (optional) tells HazelJS's spans apart (they
    differ by name, not by attributes: :mod:`flowscope.core.hazeljs`).
    """
    try:
        if attrs.keys().isdisjoint(_TRIGGERS):
            return attrs
        if hazeljs.is_hazeljs(attrs):
            hazeljs.apply(attrs, span_name, has_usage=any(k in attrs for k in _USAGE_KEYS))
        kind = attrs.get(semconv.SPAN_KIND)
        if kind:
            if kind == semconv.KIND_LLM:
                _normalize_llm(attrs)
            return attrs
        if is_llm_span(attrs):
            attrs[semconv.SPAN_KIND] = semconv.KIND_LLM
            _normalize_llm(attrs)
        else:
            _normalize_structure(attrs, parent_span_id)
    except Exception:
        logger.debug("flowscope: normalisation failed", exc_info=True)
    return attrs


# --- LLM calls --------------------------------------------------------------------


def _normalize_llm(attrs: MutableMapping[str, str]) -> None:
    if semconv.GEN_AI_PROVIDER_NAME not in attrs:
        _, provider = _first(attrs, _PROVIDER_KEYS)
        if provider:
            attrs[semconv.GEN_AI_PROVIDER_NAME] = provider.strip().lower()
    if semconv.GEN_AI_RESPONSE_MODEL not in attrs and semconv.GEN_AI_REQUEST_MODEL not in attrs:
        _, model = _first(attrs, _MODEL_KEYS)
        if model:
            attrs[semconv.GEN_AI_RESPONSE_MODEL] = model
    if semconv.GEN_AI_OPERATION_NAME not in attrs:
        attrs[semconv.GEN_AI_OPERATION_NAME] = _operation(attrs)
    if semconv.COST_SOURCE in attrs:  # ours, already canonical and priced
        return
    _canonical_usage(attrs)
    if attrs.get(semconv.CACHE_HIT) == "true":
        return
    if not _provider_cost(attrs):
        _price_span(attrs)
    else:
        _computed_beside(attrs)


def _operation(attrs: MutableMapping[str, str]) -> str:
    req = attrs.get(LLM_REQUEST_TYPE, "")
    if req == "embedding" or attrs.get(OPENINFERENCE_SPAN_KIND, "").upper() == "EMBEDDING":
        return semconv.OP_EMBEDDINGS
    if req == "completion":
        return semconv.OP_TEXT_COMPLETION
    return semconv.OP_CHAT


def _exclusive_input(attrs: MutableMapping[str, str], input_key: str | None) -> bool:
    """Whether the reported input excludes cached input (Anthropic-style raw usage).

    Only producers that copy the provider's raw numbers do that (OpenLIT, for
    Anthropic-style providers); OTel semconv, OpenLLMetry and OpenInference
    already add cache back. Anyone else who got it wrong is still caught when
    cache exceeds input (see ``_canonical_usage``).
    """
    provider = (attrs.get(semconv.GEN_AI_PROVIDER_NAME) or "").lower()
    if provider not in _EXCLUSIVE_PROVIDERS:
        return False
    if input_key != semconv.GEN_AI_USAGE_INPUT_TOKENS:
        return False
    return attrs.get("telemetry.sdk.name") == "openlit" or any(m in attrs for m in _OPENLIT_MARKERS)


def _canonical_usage(attrs: MutableMapping[str, str]) -> None:
    in_key, in_raw = _first(attrs, _INPUT_KEYS)
    out_key, out_raw = _first(attrs, _OUTPUT_KEYS)
    _, cr_raw = _first(attrs, _CACHE_READ_KEYS)
    _, cw_raw = _first(attrs, _CACHE_WRITE_KEYS)
    _, rs_raw = _first(attrs, _REASONING_KEYS)
    inp, out = _int(in_raw), _int(out_raw)
    cache_read, cache_write, reasoning = _int(cr_raw), _int(cw_raw), _int(rs_raw)
    if in_key is not None:
        if _exclusive_input(attrs, in_key) or cache_read + cache_write > inp:
            attrs[REPORTED_INPUT_TOKENS] = str(inp)
            inp += cache_read + cache_write
        attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] = str(inp)
    if out_key is not None:
        if reasoning > out:
            attrs[REPORTED_OUTPUT_TOKENS] = str(out)
            out += reasoning
        attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] = str(out)
    if cr_raw is not None:
        attrs[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = str(cache_read)
    if cw_raw is not None:
        attrs[semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = str(cache_write)
        attrs[semconv.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS] = str(cache_write)
    if rs_raw is not None:
        attrs[semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = str(reasoning)


def _provider_cost(attrs: MutableMapping[str, str]) -> bool:
    key, raw = _first(attrs, _COST_KEYS)
    if key is None:
        return False
    total = decimal_or_none(raw)
    if total is None or not total.is_finite() or total < 0:
        return False
    if total == 0 and (_int(attrs.get(semconv.GEN_AI_USAGE_INPUT_TOKENS))
                       or _int(attrs.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS))):
        return False  # "no price known" spelt as 0: price it ourselves
    attrs[semconv.COST_USD] = format_usd(total) or "0"
    if key == "llm.cost.total":  # OpenInference also reports the parts
        cached = decimal_or_none(attrs.get("llm.cost.prompt_details.cache_read"))
        write = decimal_or_none(attrs.get("llm.cost.prompt_details.cache_write"))
        prompt = decimal_or_none(attrs.get("llm.cost.prompt"))
        plain = decimal_or_none(attrs.get("llm.cost.prompt_details.input"))
        if plain is None and prompt is not None:
            plain = prompt - (cached or 0) - (write or 0)
        for out_key, value in (
            (semconv.COST_INPUT_USD, plain),
            (semconv.COST_CACHED_INPUT_USD, cached),
            (semconv.COST_CACHE_WRITE_USD, write),
            (semconv.COST_OUTPUT_USD, decimal_or_none(attrs.get("llm.cost.completion"))),
        ):
            text = format_usd(value) if value is not None else None
            if text is not None:
                attrs[out_key] = text
    attrs[semconv.COST_SOURCE] = semconv.COST_SOURCE_PROVIDER
    attrs[semconv.PRICING_VERSION] = "provider"
    return True


def usage_of(attrs: Mapping[str, str]) -> Usage:
    return Usage(
        input_tokens=_int(attrs.get(semconv.GEN_AI_USAGE_INPUT_TOKENS)),
        output_tokens=_int(attrs.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS)),
        cache_read_tokens=_int(attrs.get(semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)),
        cache_write_tokens=_int(attrs.get(semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS)),
        reasoning_tokens=_int(attrs.get(semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS)),
        cache_write_1h_tokens=_int(attrs.get(semconv.USAGE_CACHE_WRITE_1H_INPUT_TOKENS)),
        input_audio_tokens=_int(attrs.get(semconv.USAGE_AUDIO_INPUT_TOKENS)),
        input_image_tokens=_int(attrs.get(semconv.USAGE_IMAGE_INPUT_TOKENS)),
        output_audio_tokens=_int(attrs.get(semconv.USAGE_AUDIO_OUTPUT_TOKENS)),
        output_image_tokens=_int(attrs.get(semconv.USAGE_IMAGE_OUTPUT_TOKENS)),
        web_search_requests=_int(attrs.get(semconv.USAGE_WEB_SEARCH_REQUESTS)),
        web_fetch_requests=_int(attrs.get(semconv.USAGE_WEB_FETCH_REQUESTS)),
        file_search_requests=_int(attrs.get(semconv.USAGE_FILE_SEARCH_REQUESTS)),
    )


def _computed_beside(attrs: MutableMapping[str, str]) -> None:
    """Beside a provider-reported cost, the catalog's figure (``flowscope.cost.computed_usd``)."""
    model = attrs.get(semconv.GEN_AI_RESPONSE_MODEL) or attrs.get(semconv.GEN_AI_REQUEST_MODEL)
    if not model:
        return
    try:
        cost = price(model, attrs.get(semconv.GEN_AI_PROVIDER_NAME), usage_of(attrs))
    except ValueError:  # a bad pricing file or self-contradicting usage: the provider's bill stands alone
        return
    text = format_usd(cost.total_usd)
    if text is not None:
        attrs[semconv.COST_COMPUTED_USD] = text


def span_cost(
    attrs: Mapping[str, str], catalog: PricingCatalog | None = None, *, at: datetime | None = None
) -> Cost | None:
    """The cost of an LLM span from its stored attributes (model, provider, service tier, every usage part).

    One rule for pricing at ingest and repricing stored spans later
    (``flowscope-collector reprice``), so a span repriced under the catalog that
    priced it gets the same figure. ``None`` when the span names no model.
    Raises ``ValueError`` for self-contradicting usage (and ``PricingFileError``
    for an unusable pricing file, when the shared catalog is built here).
    """
    model = attrs.get(semconv.GEN_AI_RESPONSE_MODEL) or attrs.get(semconv.GEN_AI_REQUEST_MODEL)
    if not model:
        return None
    provider = attrs.get(semconv.GEN_AI_PROVIDER_NAME)
    tier = attrs.get(semconv.RESPONSE_SERVICE_TIER) or attrs.get(OPENAI_RESPONSE_SERVICE_TIER)
    cat = catalog if catalog is not None else get_catalog()
    if tier:
        return cat.price_tier(model, provider, usage_of(attrs), tier, at=at)
    if at is None and catalog is None:
        return price(model, provider, usage_of(attrs))
    return cat.price(model, provider, usage_of(attrs), at=at)


def _price_span(attrs: MutableMapping[str, str]) -> None:
    try:
        cost = span_cost(attrs)
        if cost is None:
            attrs[semconv.COST_SOURCE] = semconv.COST_SOURCE_UNPRICED
            return
    except PricingFileError as exc:  # the pricing file is bad (the collector refuses to start on one)
        logger.error("flowscope: span unpriced, the pricing file is unusable: %s", exc)
        attrs[semconv.COST_SOURCE] = semconv.COST_SOURCE_UNPRICED
        attrs[semconv.PRICING_ERROR] = str(exc)
        return
    except ValueError:  # self-contradicting usage (cache > input): unpriced, not guessed
        attrs[semconv.COST_SOURCE] = semconv.COST_SOURCE_UNPRICED
        return
    for key, value in cost.as_attributes().items():
        attrs[key] = value


# --- runs, nodes and tools from foreign markers ----------------------------------------


def _normalize_structure(attrs: MutableMapping[str, str], parent_span_id: bytes | str | None) -> None:
    if semconv.RUN_ID in attrs:
        # Inside a flowscope SDK run its own run and node spans say the
        # structure; a foreign chain there is detail, a foreign tool a tool.
        if attrs.get(TRACELOOP_SPAN_KIND) == "tool" or attrs.get(OPENINFERENCE_SPAN_KIND, "").upper() == "TOOL" \
                or attrs.get(semconv.GEN_AI_OPERATION_NAME) == semconv.OP_EXECUTE_TOOL:
            attrs[semconv.SPAN_KIND] = semconv.KIND_TOOL
        return
    tl = attrs.get(TRACELOOP_SPAN_KIND)
    if tl:
        _from_traceloop(attrs, tl)
        return
    oi = attrs.get(OPENINFERENCE_SPAN_KIND)
    if oi:
        _from_openinference(attrs, oi.upper(), parent_span_id)
        return
    if attrs.get(semconv.GEN_AI_OPERATION_NAME) == semconv.OP_EXECUTE_TOOL:
        attrs[semconv.SPAN_KIND] = semconv.KIND_TOOL
        return
    if attrs.get(semconv.GEN_AI_OPERATION_NAME) == semconv.OP_INVOKE_WORKFLOW:
        attrs[semconv.SPAN_KIND] = semconv.KIND_RUN
        return
    if attrs.get(semconv.GEN_AI_OPERATION_NAME) == "invoke_agent":  # semconv agent spans (Logfire, ...)
        agent = attrs.get("gen_ai.agent.name", "")
        if parent_span_id is not None and not parent_span_id:
            attrs[semconv.SPAN_KIND] = semconv.KIND_RUN
            if agent:
                attrs.setdefault(semconv.GEN_AI_WORKFLOW_NAME, agent)
        else:
            _mark_node(attrs, agent, "agent", None)
        return
    node, step = _langgraph(attrs)
    if node:
        _mark_node(attrs, node, "task", step)


def _from_traceloop(attrs: MutableMapping[str, str], tl: str) -> None:
    """OpenLLMetry: ``@workflow`` is a run, ``@task``/``@agent`` a node, ``@tool`` a tool."""
    entity = attrs.get(TRACELOOP_ENTITY_NAME, "")
    if tl == "workflow":
        attrs[semconv.SPAN_KIND] = semconv.KIND_RUN
        flow = attrs.get(TRACELOOP_WORKFLOW_NAME) or entity
        if flow:
            attrs.setdefault(semconv.GEN_AI_WORKFLOW_NAME, flow)
    elif tl in ("task", "agent"):
        node, step = _langgraph(attrs)
        _mark_node(attrs, node or entity, "agent" if tl == "agent" else "task", step)
    elif tl == "tool":
        attrs[semconv.SPAN_KIND] = semconv.KIND_TOOL
        if entity:
            attrs.setdefault(semconv.GEN_AI_TOOL_NAME, entity)


def _from_openinference(attrs: MutableMapping[str, str], oi: str, parent_span_id: bytes | str | None) -> None:
    """OpenInference: a parentless CHAIN/AGENT is the run; LangGraph nodes,
    ``graph.node.*`` spans and nested agents/chains are nodes; TOOL is a tool."""
    if attrs.get(OI_SESSION_ID) and semconv.GEN_AI_CONVERSATION_ID not in attrs:
        attrs[semconv.GEN_AI_CONVERSATION_ID] = attrs[OI_SESSION_ID]
    if oi == "TOOL":
        attrs[semconv.SPAN_KIND] = semconv.KIND_TOOL
        if attrs.get(OI_TOOL_NAME):
            attrs.setdefault(semconv.GEN_AI_TOOL_NAME, attrs[OI_TOOL_NAME])
        return
    if oi not in ("CHAIN", "AGENT"):
        return
    node_type = "agent" if oi == "AGENT" else "task"
    node, step = _langgraph(attrs)
    if node:
        _mark_node(attrs, node, node_type, step)
        return
    if parent_span_id is not None and not parent_span_id:
        attrs[semconv.SPAN_KIND] = semconv.KIND_RUN  # known root; flow name = span name
        return
    # Parent unknown or present: a node. When the caller could not say whether
    # the span is a root, views treats a parentless node as the run's root.
    _mark_node(attrs, attrs.get(OI_GRAPH_NODE_NAME) or attrs.get(OI_GRAPH_NODE_ID) or "", node_type, None)


def _langgraph(attrs: MutableMapping[str, str]) -> tuple[str, str | None]:
    """LangGraph's node name and superstep, wherever the producer put them."""
    node = attrs.get(TRACELOOP_LANGGRAPH_NODE) or attrs.get(LANGGRAPH_NODE)
    if node:
        return node, attrs.get(TRACELOOP_LANGGRAPH_STEP) or attrs.get(LANGGRAPH_STEP)
    meta = attrs.get(OI_METADATA)
    if meta and '"langgraph_node"' in meta:
        try:
            doc = json.loads(meta)
        except ValueError:
            return "", None
        if isinstance(doc, dict) and doc.get(LANGGRAPH_NODE):
            step = doc.get(LANGGRAPH_STEP)
            return str(doc[LANGGRAPH_NODE]), (str(step) if step is not None else None)
    return "", None


def _mark_node(attrs: MutableMapping[str, str], name: str, node_type: str, superstep: str | None) -> None:
    """A foreign node: no ``flowscope.node.step`` (order needs the whole run,
    so :mod:`flowscope.core.views` numbers foreign nodes by start time); LangGraph's
    superstep is kept as ``flowscope.node.superstep``."""
    attrs[semconv.SPAN_KIND] = semconv.KIND_NODE
    if name:
        attrs.setdefault(semconv.NODE_NAME, name)
    attrs.setdefault(semconv.NODE_TYPE, node_type)
    if superstep is not None and semconv.NODE_SUPERSTEP not in attrs:
        attrs[semconv.NODE_SUPERSTEP] = superstep


def decimal_or_none(value: str | None) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None
