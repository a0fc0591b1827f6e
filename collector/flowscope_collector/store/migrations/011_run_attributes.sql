-- Who a run was for: its run attributes (flowscope.core.run_attributes: user.id,
-- gen_ai.conversation.id, flowscope.run.attr.*, so user, session, tenant and the
-- rest), one row per run, key and value, for the run summary and the runs list.
--
-- Run attributes ride on the spans' attribute maps, which the typed tables do not
-- keep, so a page of runs could only find them by scanning otel_traces. This table
-- is fed by its own view from otel_traces (grouped per inserted block), ordered by
-- run: a page of 50 runs reads 50 contiguous ranges. It is a set of (key, value)
-- pairs, so a span sent twice adds nothing, and it is apart from flowscope_runs so
-- that the runs view (which other migrations redefine) is left alone. Start is when
-- the pair was first seen: where a run changed a value, the first one is shown.
-- Runs stored before this migration are not back-filled (that would scan every
-- stored span's attributes at start-up); to fill them, run the view's SELECT once
-- as INSERT INTO flowscope_run_attributes SELECT ... FROM otel_traces.
CREATE TABLE IF NOT EXISTS {db}.flowscope_run_attributes {on_cluster} (
    Project LowCardinality(String),
    RunId String CODEC(ZSTD(1)),
    Key LowCardinality(String),
    Value String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime64(9))
) ENGINE = {engine_aggregatingmergetree}
PARTITION BY toYYYYMM(Start)
ORDER BY (Project, RunId, Key, Value)
{ttl_start}
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flowscope_run_attributes_mv {on_cluster}
TO {db}.flowscope_run_attributes
AS SELECT
    if(ResourceAttributes['flowscope.project'] = '', 'default', ResourceAttributes['flowscope.project']) AS Project,
    if(SpanAttributes['flowscope.run.id'] = '', TraceId, SpanAttributes['flowscope.run.id']) AS RunId,
    kv.1 AS Key,
    kv.2 AS Value,
    min(Timestamp) AS Start
FROM {db}.otel_traces
ARRAY JOIN arrayFilter(p -> p.1 IN ('user.id', 'gen_ai.conversation.id') OR startsWith(p.1, 'flowscope.run.attr.'),
                       arrayZip(mapKeys(SpanAttributes), mapValues(SpanAttributes))) AS kv
GROUP BY Project, RunId, Key, Value;
