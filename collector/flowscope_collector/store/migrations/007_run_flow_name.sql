-- A run's flow name follows the same rule as its root (RootSeen) and as the run
-- summary (flowscope.core.views.summary.flow_name): the run span's workflow name
-- or span name; for a run without a run span (a trace from another producer, a
-- zero-code LLM call outside any flow), the name of its parentless span. Before,
-- only run spans named a flow, so the list said "" where the summary named the
-- root, and ?flow= could not find what the summary showed. Rows already stored
-- keep the name they had; new spans get this rule.
-- The view is dropped and made again, not changed with MODIFY QUERY: a view changed in
-- place no longer deduplicated a replayed insert (tests/collector/test_faults.py
-- test_kill_between_insert_and_commit_is_deduplicated), so run totals doubled.
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
    sumIf(InputTokens, Kind = 'llm') AS InputTokens,
    sumIf(CachedInputTokens, Kind = 'llm') AS CachedInputTokens,
    sumIf(CacheWriteTokens, Kind = 'llm') AS CacheWriteTokens,
    sumIf(OutputTokens, Kind = 'llm') AS OutputTokens,
    sumIf(ReasoningTokens, Kind = 'llm') AS ReasoningTokens,
    sumIf(CostUsd, Kind = 'llm') AS CostUsd,
    sumIf(CacheSavedUsd, Kind = 'llm') AS CacheSavedUsd
FROM {db}.flowscope_spans
GROUP BY Project, RunId;
