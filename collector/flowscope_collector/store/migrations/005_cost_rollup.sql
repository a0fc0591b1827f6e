-- Cost roll-ups (GET /api/v1/costs) from an hourly aggregate instead of every LLM span.
--
-- Grouping 2.5M LLM spans of a 10M-span week took ~0.8 s; this table has one
-- row per hour x service x provider x model x node (a few tens of thousands a
-- week), so the same answer is a few ms. Timestamp is the start of the hour
-- (server time zone, like toDate in the queries). The query layer reads whole
-- hours inside [since, until) here and the partial hours at the edges from
-- flowscope_spans, so results are exactly those of the span table.
-- Flow is a property of the run (LLM spans do not carry it): group_by=flow
-- keeps reading flowscope_runs.
CREATE TABLE IF NOT EXISTS {db}.flowscope_costs_hourly {on_cluster} (
    Project LowCardinality(String),
    Timestamp DateTime,
    ServiceName LowCardinality(String),
    Provider LowCardinality(String),
    Model LowCardinality(String),
    NodeName LowCardinality(String),
    LlmCalls SimpleAggregateFunction(sum, UInt64),
    InputTokens SimpleAggregateFunction(sum, UInt64),
    CachedInputTokens SimpleAggregateFunction(sum, UInt64),
    CacheWriteTokens SimpleAggregateFunction(sum, UInt64),
    OutputTokens SimpleAggregateFunction(sum, UInt64),
    ReasoningTokens SimpleAggregateFunction(sum, UInt64),
    UnpricedCalls SimpleAggregateFunction(sum, UInt64),
    CostUsd SimpleAggregateFunction(sum, Decimal(38, 18)),
    CacheHits SimpleAggregateFunction(sum, UInt64),
    CacheSavedUsd SimpleAggregateFunction(sum, Decimal(38, 18))
) ENGINE = {engine_aggregatingmergetree}
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (Project, Timestamp, ServiceName, Provider, Model, NodeName)
{ttl_timestamp}
SETTINGS index_granularity = 1024, non_replicated_deduplication_window = 10000;

-- What the spans already stored contribute, once. The fixed deduplication
-- token and the deterministic order make a re-run after an interruption drop
-- the blocks that had landed instead of counting them twice.
INSERT INTO {db}.flowscope_costs_hourly
SELECT Project, toStartOfHour(Timestamp) AS Timestamp, ServiceName, Provider, Model, NodeName,
    count() AS LlmCalls, sum(InputTokens) AS InputTokens, sum(CachedInputTokens) AS CachedInputTokens,
    sum(CacheWriteTokens) AS CacheWriteTokens, sum(OutputTokens) AS OutputTokens,
    sum(ReasoningTokens) AS ReasoningTokens, countIf(CostSource = 'unpriced') AS UnpricedCalls,
    sum(CostUsd) AS CostUsd, countIf(CacheHit) AS CacheHits, sum(CacheSavedUsd) AS CacheSavedUsd
FROM {db}.flowscope_spans
WHERE Kind = 'llm'
GROUP BY Project, Timestamp, ServiceName, Provider, Model, NodeName
ORDER BY Project, Timestamp, ServiceName, Provider, Model, NodeName
SETTINGS insert_deduplication_token = 'flowscope-migration-005', max_threads = 1, max_insert_threads = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flowscope_costs_hourly_mv {on_cluster}
TO {db}.flowscope_costs_hourly
AS SELECT Project, toStartOfHour(Timestamp) AS Timestamp, ServiceName, Provider, Model, NodeName,
    count() AS LlmCalls, sum(InputTokens) AS InputTokens, sum(CachedInputTokens) AS CachedInputTokens,
    sum(CacheWriteTokens) AS CacheWriteTokens, sum(OutputTokens) AS OutputTokens,
    sum(ReasoningTokens) AS ReasoningTokens, countIf(CostSource = 'unpriced') AS UnpricedCalls,
    sum(CostUsd) AS CostUsd, countIf(CacheHit) AS CacheHits, sum(CacheSavedUsd) AS CacheSavedUsd
FROM {db}.flowscope_spans
WHERE Kind = 'llm'
GROUP BY Project, Timestamp, ServiceName, Provider, Model, NodeName;
