-- Partially priced calls counted next to every total that includes them (issue 15): a call
-- priced except for a part the catalog has no rate for (flowscope.cost.source = 'partial':
-- an audio part, a service tier, a tool fee) makes its cost a lower bound. The run summary
-- counted them from the spans; the runs list and the cost roll-ups, which read the sum
-- tables, could not, so a list entry or a /costs total including one said cost_complete
-- while it was not. Both sum tables get the count, fed by their views as the unpriced count is.
ALTER TABLE {db}.flowscope_runs {on_cluster}
    ADD COLUMN IF NOT EXISTS PartialCalls SimpleAggregateFunction(sum, UInt64) AFTER UnpricedCalls;

ALTER TABLE {db}.flowscope_costs_hourly {on_cluster}
    ADD COLUMN IF NOT EXISTS PartialCalls SimpleAggregateFunction(sum, UInt64) AFTER UnpricedCalls;

-- Dropped and made again, not changed with MODIFY QUERY (see 007: a view changed in place
-- no longer deduplicated a replayed insert). The collector migrates before it writes, so no
-- span passes while a view is missing.
DROP VIEW IF EXISTS {db}.flowscope_runs_mv {on_cluster};

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flowscope_runs_mv {on_cluster}
TO {db}.flowscope_runs
AS SELECT
    Project,
    RunId,
    min(Timestamp) AS Start,
    max(fromUnixTimestamp64Nano(toUnixTimestamp64Nano(Timestamp) + toInt64(Duration))) AS End,
    max(if(Kind = 'run' OR (ParentSpanId = '' AND RunId = TraceId),
           if(FlowName != '', FlowName, SpanName), '')) AS FlowName,
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
    countIf(Kind = 'llm' AND CostSource = 'partial') AS PartialCalls,
    sumIf(InputTokens, Kind = 'llm') AS InputTokens,
    sumIf(CachedInputTokens, Kind = 'llm') AS CachedInputTokens,
    sumIf(CacheWriteTokens, Kind = 'llm') AS CacheWriteTokens,
    sumIf(OutputTokens, Kind = 'llm') AS OutputTokens,
    sumIf(ReasoningTokens, Kind = 'llm') AS ReasoningTokens,
    sumIf(CostUsd, Kind = 'llm') AS CostUsd,
    sumIf(CacheSavedUsd, Kind = 'llm') AS CacheSavedUsd
FROM {db}.flowscope_spans
GROUP BY Project, RunId;

DROP VIEW IF EXISTS {db}.flowscope_costs_hourly_mv {on_cluster};

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flowscope_costs_hourly_mv {on_cluster}
TO {db}.flowscope_costs_hourly
AS SELECT Project, toStartOfHour(Timestamp) AS Timestamp, ServiceName, Provider, Model, NodeName,
    count() AS LlmCalls, sum(InputTokens) AS InputTokens, sum(CachedInputTokens) AS CachedInputTokens,
    sum(CacheWriteTokens) AS CacheWriteTokens, sum(OutputTokens) AS OutputTokens,
    sum(ReasoningTokens) AS ReasoningTokens, countIf(CostSource = 'unpriced') AS UnpricedCalls,
    countIf(CostSource = 'partial') AS PartialCalls,
    sum(CostUsd) AS CostUsd, countIf(CacheHit) AS CacheHits, sum(CacheSavedUsd) AS CacheSavedUsd
FROM {db}.flowscope_spans
WHERE Kind = 'llm'
GROUP BY Project, Timestamp, ServiceName, Provider, Model, NodeName;

-- The partially priced calls already stored, counted once: a row of the count alone per run
-- (carrying the run's own start, end and names, so a filter on them keeps it with the run) and
-- per hour. The fixed deduplication tokens and the deterministic order make a re-run after an
-- interruption drop the blocks that had landed (as in 005).
INSERT INTO {db}.flowscope_runs (Project, RunId, Start, End, FlowName, ServiceName, RootSeen, RootError,
    Spans, LlmCalls, Errors, Retries, Fallbacks, CacheHits, UnpricedCalls, PartialCalls, InputTokens,
    CachedInputTokens, CacheWriteTokens, OutputTokens, ReasoningTokens, CostUsd, CacheSavedUsd)
SELECT p.Project, p.RunId, r.s, r.e, r.f, r.sv, 0, 0, 0, 0, 0, 0, 0, 0, 0, p.n, 0, 0, 0, 0, 0, 0, 0
FROM (SELECT Project, RunId, count() AS n FROM {db}.flowscope_spans
      WHERE Kind = 'llm' AND CostSource = 'partial' GROUP BY Project, RunId) AS p
INNER JOIN (SELECT Project, RunId, min(Start) AS s, max(End) AS e, max(FlowName) AS f, max(ServiceName) AS sv
            FROM {db}.flowscope_runs GROUP BY Project, RunId) AS r
ON p.Project = r.Project AND p.RunId = r.RunId
ORDER BY p.Project, p.RunId
SETTINGS insert_deduplication_token = 'flowscope-migration-009-runs', max_threads = 1, max_insert_threads = 1;

INSERT INTO {db}.flowscope_costs_hourly (Project, Timestamp, ServiceName, Provider, Model, NodeName, LlmCalls,
    InputTokens, CachedInputTokens, CacheWriteTokens, OutputTokens, ReasoningTokens, UnpricedCalls, PartialCalls,
    CostUsd, CacheHits, CacheSavedUsd)
SELECT Project, toStartOfHour(Timestamp) AS Hour, ServiceName, Provider, Model, NodeName, 0, 0, 0, 0, 0, 0, 0,
    count(), 0, 0, 0
FROM {db}.flowscope_spans
WHERE Kind = 'llm' AND CostSource = 'partial'
GROUP BY Project, Hour, ServiceName, Provider, Model, NodeName
ORDER BY Project, Hour, ServiceName, Provider, Model, NodeName
SETTINGS insert_deduplication_token = 'flowscope-migration-009-hourly', max_threads = 1, max_insert_threads = 1;
