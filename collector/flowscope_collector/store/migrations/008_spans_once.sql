-- Counted once: the same span (trace id, span id) sent twice, in one request or
-- re-batched by an OTel Collector or a retrying exporter into another request
-- (different bytes, so neither the request digest nor ClickHouse's insert
-- deduplication token recognises it), was stored twice in flowscope_spans and
-- so summed twice by every aggregate fed from it: the runs list
-- (flowscope_runs), the cost roll-ups (flowscope_costs_hourly) and the
-- dashboards, which read flowscope_spans. The run summary alone deduplicated.
--
-- The view that writes flowscope_spans now keeps a span only once: within the
-- inserted block (LIMIT 1 BY) and against what is stored already (NOT IN). In a
-- view, a subquery over the source table reads the inserted block, so the
-- lookup is bounded by the block: only the runs of the block's spans are read,
-- through the primary key (Project, RunId, ...) of flowscope_spans; a span's
-- copies carry the same run id, so they meet there. (A lookup by time range and
-- the TraceId bloom filter cost ~0.5 s per small insert: not used.) The writer is the only
-- inserter, one insert at a time, so two copies cannot race past each other;
-- on a cluster a run (and so a span) always lands on the same shard, and the
-- view reads that shard's flowscope_spans_local. otel_traces keeps every copy
-- as received: it is the OTel exporter's table, read by trace id.
-- Spans doubled before this migration stay doubled in the aggregates.
-- MODIFY QUERY is idempotent: running this again sets the same query.
ALTER TABLE {db}.flowscope_spans_mv {on_cluster} MODIFY QUERY
SELECT
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
FROM {db}.otel_traces
WHERE (Project, TraceId, SpanId) NOT IN (
    SELECT Project, TraceId, SpanId FROM {db}.flowscope_spans
    WHERE (Project, RunId) IN (
        SELECT if(ResourceAttributes['flowscope.project'] = '', 'default', ResourceAttributes['flowscope.project']),
               if(SpanAttributes['flowscope.run.id'] = '', TraceId, SpanAttributes['flowscope.run.id'])
        FROM {db}.otel_traces))
LIMIT 1 BY Project, TraceId, SpanId;
