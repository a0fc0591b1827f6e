-- Typed copy of every span, ordered by run: one run's spans are one contiguous
-- range, so per-run questions never scan the attribute maps. Filled by a
-- materialized view from otel_traces, so spans written by a stock OTel
-- Collector get the same columns (keys as in flowscope.views.record_from_attributes).
CREATE TABLE IF NOT EXISTS {db}.flowscope_spans {on_cluster} (
    Project LowCardinality(String),
    RunId String CODEC(ZSTD(1)),
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    Duration UInt64 CODEC(T64, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    SpanName LowCardinality(String),
    ServiceName LowCardinality(String),
    Kind LowCardinality(String),
    FlowName LowCardinality(String),
    NodeName LowCardinality(String),
    NodeType LowCardinality(String),
    NodeStep Int32,
    NodeAttempt UInt16,
    Branch LowCardinality(String),
    StatusCode LowCardinality(String),
    StatusMessage String CODEC(ZSTD(1)),
    ErrorType LowCardinality(String),
    Provider LowCardinality(String),
    Model LowCardinality(String),
    InputTokens UInt64,
    OutputTokens UInt64,
    CachedInputTokens UInt64,
    CacheWriteTokens UInt64,
    ReasoningTokens UInt64,
    CostUsd Decimal(38, 18),
    CostInputUsd Decimal(38, 18),
    CostCachedInputUsd Decimal(38, 18),
    CostCacheWriteUsd Decimal(38, 18),
    CostOutputUsd Decimal(38, 18),
    CostSource LowCardinality(String),
    PricingVersion LowCardinality(String),
    UsageEstimated Bool,
    CacheHit Bool,
    CacheSavedUsd Decimal(38, 18),
    RetryCount UInt16,
    FallbackFrom LowCardinality(String),
    FallbackTo LowCardinality(String),
    BudgetExceeded Bool,
    TimeToFirstChunk Float64,
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = {engine_mergetree}
PARTITION BY toDate(Timestamp)
ORDER BY (Project, RunId, Timestamp, SpanId)
{ttl_timestamp}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flowscope_spans_mv {on_cluster}
TO {db}.flowscope_spans
AS SELECT
    if(ResourceAttributes['flowscope.project'] = '', 'default', ResourceAttributes['flowscope.project']) AS Project,
    if(SpanAttributes['flowscope.run.id'] = '', TraceId, SpanAttributes['flowscope.run.id']) AS RunId,
    Timestamp,
    Duration,
    TraceId,
    SpanId,
    ParentSpanId,
    SpanName,
    ServiceName,
    SpanAttributes['flowscope.span.kind'] AS Kind,
    SpanAttributes['gen_ai.workflow.name'] AS FlowName,
    SpanAttributes['flowscope.node.name'] AS NodeName,
    SpanAttributes['flowscope.node.type'] AS NodeType,
    ifNull(toInt32OrNull(SpanAttributes['flowscope.node.step']), -1) AS NodeStep,
    toUInt16OrZero(SpanAttributes['flowscope.node.attempt']) AS NodeAttempt,
    SpanAttributes['flowscope.router.branch'] AS Branch,
    StatusCode,
    StatusMessage,
    SpanAttributes['error.type'] AS ErrorType,
    if(SpanAttributes['gen_ai.provider.name'] != '', SpanAttributes['gen_ai.provider.name'], SpanAttributes['gen_ai.system']) AS Provider,
    if(SpanAttributes['gen_ai.response.model'] != '', SpanAttributes['gen_ai.response.model'], SpanAttributes['gen_ai.request.model']) AS Model,
    toUInt64OrZero(SpanAttributes['gen_ai.usage.input_tokens']) AS InputTokens,
    toUInt64OrZero(SpanAttributes['gen_ai.usage.output_tokens']) AS OutputTokens,
    toUInt64OrZero(SpanAttributes['gen_ai.usage.cache_read.input_tokens']) AS CachedInputTokens,
    toUInt64OrZero(SpanAttributes['gen_ai.usage.cache_creation.input_tokens']) AS CacheWriteTokens,
    toUInt64OrZero(SpanAttributes['gen_ai.usage.reasoning.output_tokens']) AS ReasoningTokens,
    toDecimal128OrZero(SpanAttributes['flowscope.cost.usd'], 18) AS CostUsd,
    toDecimal128OrZero(SpanAttributes['flowscope.cost.input_usd'], 18) AS CostInputUsd,
    toDecimal128OrZero(SpanAttributes['flowscope.cost.cached_input_usd'], 18) AS CostCachedInputUsd,
    toDecimal128OrZero(SpanAttributes['flowscope.cost.cache_write_usd'], 18) AS CostCacheWriteUsd,
    toDecimal128OrZero(SpanAttributes['flowscope.cost.output_usd'], 18) AS CostOutputUsd,
    SpanAttributes['flowscope.cost.source'] AS CostSource,
    SpanAttributes['flowscope.pricing.version'] AS PricingVersion,
    SpanAttributes['flowscope.usage.estimated'] = 'true' AS UsageEstimated,
    SpanAttributes['flowscope.cache.hit'] = 'true' AS CacheHit,
    toDecimal128OrZero(SpanAttributes['flowscope.cache.saved_usd'], 18) AS CacheSavedUsd,
    toUInt16OrZero(SpanAttributes['flowscope.retry.count']) AS RetryCount,
    SpanAttributes['flowscope.fallback.from'] AS FallbackFrom,
    SpanAttributes['flowscope.fallback.to'] AS FallbackTo,
    SpanAttributes['flowscope.budget.exceeded'] = 'true' AS BudgetExceeded,
    toFloat64OrZero(SpanAttributes['gen_ai.response.time_to_first_chunk']) AS TimeToFirstChunk
FROM {db}.otel_traces;

-- State events for time travel, one row per flowscope.state event, in the
-- order they happened within the run: a run's history is one range read.
CREATE TABLE IF NOT EXISTS {db}.flowscope_state_events {on_cluster} (
    Project LowCardinality(String),
    RunId String CODEC(ZSTD(1)),
    Seq UInt64,
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    NodeStep Int32,
    NodeName LowCardinality(String),
    Op LowCardinality(String),
    Path String CODEC(ZSTD(1)),
    Value String CODEC(ZSTD(3)),
    Truncated Bool
) ENGINE = {engine_mergetree}
PARTITION BY toDate(Timestamp)
ORDER BY (Project, RunId, Seq)
{ttl_timestamp}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flowscope_state_events_mv {on_cluster}
TO {db}.flowscope_state_events
AS SELECT
    if(ResourceAttributes['flowscope.project'] = '', 'default', ResourceAttributes['flowscope.project']) AS Project,
    if(SpanAttributes['flowscope.run.id'] = '', TraceId, SpanAttributes['flowscope.run.id']) AS RunId,
    toUInt64OrZero(ev_attrs['flowscope.state.seq']) AS Seq,
    ev_ts AS Timestamp,
    TraceId,
    SpanId,
    ifNull(toInt32OrNull(ev_attrs['flowscope.node.step']), ifNull(toInt32OrNull(SpanAttributes['flowscope.node.step']), -1)) AS NodeStep,
    SpanAttributes['flowscope.node.name'] AS NodeName,
    ev_attrs['flowscope.state.op'] AS Op,
    ev_attrs['flowscope.state.path'] AS Path,
    ev_attrs['flowscope.state.value'] AS Value,
    ev_attrs['flowscope.state.truncated'] = 'true' AS Truncated
FROM {db}.otel_traces
ARRAY JOIN Events.Timestamp AS ev_ts, Events.Name AS ev_name, Events.Attributes AS ev_attrs
WHERE ev_name = 'flowscope.state';

-- Run summaries for listing and filtering: one row per run after merges.
-- Partial rows from separate inserts are combined with the SimpleAggregate
-- functions, so a run whose spans arrive in several batches still sums right.
CREATE TABLE IF NOT EXISTS {db}.flowscope_runs {on_cluster} (
    Project LowCardinality(String),
    RunId String,
    Start SimpleAggregateFunction(min, DateTime64(9)),
    End SimpleAggregateFunction(max, DateTime64(9)),
    FlowName SimpleAggregateFunction(max, String),
    ServiceName SimpleAggregateFunction(max, String),
    RootSeen SimpleAggregateFunction(max, UInt8),
    RootError SimpleAggregateFunction(max, UInt8),
    Spans SimpleAggregateFunction(sum, UInt64),
    LlmCalls SimpleAggregateFunction(sum, UInt64),
    Errors SimpleAggregateFunction(sum, UInt64),
    Retries SimpleAggregateFunction(sum, UInt64),
    Fallbacks SimpleAggregateFunction(sum, UInt64),
    CacheHits SimpleAggregateFunction(sum, UInt64),
    UnpricedCalls SimpleAggregateFunction(sum, UInt64),
    InputTokens SimpleAggregateFunction(sum, UInt64),
    CachedInputTokens SimpleAggregateFunction(sum, UInt64),
    CacheWriteTokens SimpleAggregateFunction(sum, UInt64),
    OutputTokens SimpleAggregateFunction(sum, UInt64),
    ReasoningTokens SimpleAggregateFunction(sum, UInt64),
    CostUsd SimpleAggregateFunction(sum, Decimal(38, 18)),
    CacheSavedUsd SimpleAggregateFunction(sum, Decimal(38, 18))
) ENGINE = {engine_aggregatingmergetree}
PARTITION BY toYYYYMM(Start)
ORDER BY (Project, RunId)
{ttl_start64}
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flowscope_runs_mv {on_cluster}
TO {db}.flowscope_runs
AS SELECT
    Project,
    RunId,
    min(Timestamp) AS Start,
    max(fromUnixTimestamp64Nano(toUnixTimestamp64Nano(Timestamp) + toInt64(Duration))) AS End,
    max(if(Kind = 'run', if(FlowName != '', FlowName, SpanName), '')) AS FlowName,
    max(ServiceName) AS ServiceName,
    max(toUInt8(Kind = 'run' OR (ParentSpanId = '' AND RunId = TraceId))) AS RootSeen,
    max(toUInt8((Kind = 'run' OR (ParentSpanId = '' AND RunId = TraceId)) AND StatusCode = 'Error')) AS RootError,
    count() AS Spans,
    countIf(Kind = 'llm') AS LlmCalls,
    countIf(StatusCode = 'Error') AS Errors,
    sumIf(RetryCount, Kind IN ('llm', 'node')) AS Retries,
    countIf(Kind = 'llm' AND FallbackTo != '') AS Fallbacks,
    countIf(Kind = 'llm' AND CacheHit) AS CacheHits,
    countIf(Kind = 'llm' AND CostSource = 'unpriced') AS UnpricedCalls,
    sumIf(InputTokens, Kind = 'llm') AS InputTokens,
    sumIf(CachedInputTokens, Kind = 'llm') AS CachedInputTokens,
    sumIf(CacheWriteTokens, Kind = 'llm') AS CacheWriteTokens,
    sumIf(OutputTokens, Kind = 'llm') AS OutputTokens,
    sumIf(ReasoningTokens, Kind = 'llm') AS ReasoningTokens,
    sumIf(CostUsd, Kind = 'llm') AS CostUsd,
    sumIf(CacheSavedUsd, Kind = 'llm') AS CacheSavedUsd
FROM {db}.flowscope_spans
GROUP BY Project, RunId;
