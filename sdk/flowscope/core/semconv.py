"""Attribute, span and event names shared by the SDK and the collector.

The collector imports this module, so the producer and the consumer of an
attribute can never spell it differently. Standard names come first
(OpenTelemetry GenAI semantic conventions v1.41); ours live under
``flowscope.`` and are never invented under ``gen_ai.``.
"""

from __future__ import annotations

# --- OpenTelemetry GenAI semantic conventions -------------------------------
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_SYSTEM = "gen_ai.system"  # deprecated name, still emitted by older producers
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"  # not in semconv; kept under flowscope below
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
# The current OTel name of cache writes (semconv renamed ``cache_creation``): both are recorded,
# the collector's storage reads ``cache_creation`` and ingest fills either from the other.
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS = "gen_ai.usage.cache_write.input_tokens"
# Cache writes by lifetime (Anthropic ``cache_creation.ephemeral_5m/1h_input_tokens``), parts of
# the cache writes above: 5 min at the cache-write price (1.25x input), 1 h at its own (2x input).
USAGE_CACHE_WRITE_5M_INPUT_TOKENS = "flowscope.usage.cache_write_5m.input_tokens"
USAGE_CACHE_WRITE_1H_INPUT_TOKENS = "flowscope.usage.cache_write_1h.input_tokens"
# Modalities: audio / image tokens, parts of gen_ai.usage.input_tokens / output_tokens.
USAGE_AUDIO_INPUT_TOKENS = "flowscope.usage.audio.input_tokens"
USAGE_IMAGE_INPUT_TOKENS = "flowscope.usage.image.input_tokens"
USAGE_AUDIO_OUTPUT_TOKENS = "flowscope.usage.audio.output_tokens"
USAGE_IMAGE_OUTPUT_TOKENS = "flowscope.usage.image.output_tokens"
# Server-side tool requests, billed per request (Anthropic usage.server_tool_use; OpenAI
# Responses web_search_call / file_search_call output items).
USAGE_WEB_SEARCH_REQUESTS = "flowscope.usage.web_search.requests"
USAGE_WEB_FETCH_REQUESTS = "flowscope.usage.web_fetch.requests"
USAGE_FILE_SEARCH_REQUESTS = "flowscope.usage.file_search.requests"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_WORKFLOW_NAME = "gen_ai.workflow.name"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
SERVICE_NAME = "service.name"

# gen_ai.operation.name values
OP_CHAT = "chat"
OP_EMBEDDINGS = "embeddings"
OP_EXECUTE_TOOL = "execute_tool"
OP_INVOKE_WORKFLOW = "invoke_workflow"
OP_TEXT_COMPLETION = "text_completion"

# --- flowscope names --------------------------------------------------------
RUN_ID = "flowscope.run.id"
RUN_STATUS = "flowscope.run.status"
PROJECT = "flowscope.project"  # resource attribute, set by the collector from the API key
SPAN_KIND = "flowscope.span.kind"  # run | node | llm | tool
NODE_NAME = "flowscope.node.name"
NODE_TYPE = "flowscope.node.type"
NODE_STEP = "flowscope.node.step"
NODE_ATTEMPT = "flowscope.node.attempt"
NODE_SUPERSTEP = "flowscope.node.superstep"
ROUTER_BRANCH = "flowscope.router.branch"

COST_USD = "flowscope.cost.usd"
COST_INPUT_USD = "flowscope.cost.input_usd"
COST_CACHED_INPUT_USD = "flowscope.cost.cached_input_usd"
COST_CACHE_WRITE_USD = "flowscope.cost.cache_write_usd"
COST_OUTPUT_USD = "flowscope.cost.output_usd"
COST_SOURCE = "flowscope.cost.source"
PRICING_VERSION = "flowscope.pricing.version"
# why a call is unpriced when the pricing file itself is unusable (the file and the reason)
PRICING_ERROR = "flowscope.pricing.error"
USAGE_ESTIMATED = "flowscope.usage.estimated"
REQUEST_STREAM = "flowscope.request.stream"

CACHE_HIT = "flowscope.cache.hit"
CACHE_SAVED_USD = "flowscope.cache.saved_usd"
RETRY_COUNT = "flowscope.retry.count"
FALLBACK_FROM = "flowscope.fallback.from"
FALLBACK_TO = "flowscope.fallback.to"
FALLBACK_REASON = "flowscope.fallback.reason"
BUDGET_USD = "flowscope.budget.usd"
BUDGET_EXCEEDED = "flowscope.budget.exceeded"

# flowscope.cost.source values
COST_SOURCE_PROVIDER = "provider"
COST_SOURCE_COMPUTED = "computed"
COST_SOURCE_UNPRICED = "unpriced"
# computed, but a part of the bill had no price (named in COST_UNPRICED_PARTS): a lower bound
COST_SOURCE_PARTIAL = "partial"
COST_UNPRICED_PARTS = "flowscope.cost.unpriced_parts"
# Where the provider reported what it billed (source=provider), the catalog's figure beside it.
COST_COMPUTED_USD = "flowscope.cost.computed_usd"
# the per-request fees of server-side tools (in flowscope.cost.usd, beside the token parts)
COST_TOOL_USD = "flowscope.cost.tool_usd"
# The service tier the provider says it served (OpenAI ``service_tier``: default, flex,
# priority, scale; Anthropic ``usage.service_tier``: standard, priority, batch); it selects the price.
RESPONSE_SERVICE_TIER = "flowscope.response.service_tier"

# flowscope.span.kind values
KIND_RUN = "run"
KIND_NODE = "node"
KIND_LLM = "llm"
KIND_TOOL = "tool"
KIND_WAIT = "wait"  # time a run spent waiting (human in the loop, interrupts): never model latency
KIND_HTTP = "http"  # a client library's own span inside an llm span: never counted or priced again
WAIT_REASON = "flowscope.wait.reason"

# run attributes that follow the work (set_run_attributes; W3C baggage across services)
USER_ID = "user.id"
RUN_ATTR_PREFIX = "flowscope.run.attr."
RUN_PARENT_ID = "flowscope.run.parent_id"
# Forks (flowscope.replay): the run this one was replayed from, and the step it restarted after.
RUN_FORKED_FROM = "flowscope.run.forked_from"
RUN_FORKED_AT_STEP = "flowscope.run.forked_at_step"
# On a replayed run's node spans standing for the parent's steps 0..k (they did not run again).
REPLAY_COPIED = "flowscope.replay.copied"
# On LLM spans of a replay: answered from the parent run's recorded response (cost 0) ...
REPLAY_RECORDED = "flowscope.replay.recorded"
# ... or sent to the provider because no recorded request matched it (why, in REPLAY_LIVE_REASON).
REPLAY_LIVE = "flowscope.replay.live"
REPLAY_LIVE_REASON = "flowscope.replay.live_reason"
# On LLM spans recorded with content capture: a digest of the request (provider, method, model,
# messages, tools, parameters; the response cache's key), which a replay matches requests by.
REPLAY_REQUEST_KEY = "flowscope.replay.request_key"
BUDGET_SPENT_USD = "flowscope.budget.spent_usd"
EVENT_BUDGET_EXCEEDED = "flowscope.budget.exceeded"
EVENT_STREAM_ABANDONED = "flowscope.stream.abandoned"

NODE_TYPES = ("task", "llm", "tool", "router", "agent", "subflow")

# --- events -----------------------------------------------------------------
EVENT_RETRY = "flowscope.retry"
RETRY_ATTEMPT = "flowscope.retry.attempt"
RETRY_STATUS = "flowscope.retry.status"
RETRY_BACKOFF_S = "flowscope.retry.backoff_s"

EVENT_STATE = "flowscope.state"
STATE_SEQ = "flowscope.state.seq"
STATE_OP = "flowscope.state.op"
STATE_PATH = "flowscope.state.path"
STATE_VALUE = "flowscope.state.value"
STATE_TRUNCATED = "flowscope.state.truncated"
STATE_OPS = ("snapshot", "set", "delete", "patch")

# span names follow the GenAI conventions: "{operation} {target}"
def run_span_name(flow: str) -> str:
    return f"{OP_INVOKE_WORKFLOW} {flow}"


def llm_span_name(operation: str, model: str | None) -> str:
    return f"{operation} {model}" if model else operation


def tool_span_name(tool: str) -> str:
    return f"{OP_EXECUTE_TOOL} {tool}"
