-- Forks (flowscope.replay): a replayed run names the run it was forked from and the
-- step it restarted after (flowscope.run.forked_from / flowscope.run.forked_at_step,
-- on its run span), and the runs list says so for every run without reading spans.
--
-- The two columns are filled by a view of their own, over otel_traces and only
-- for the spans that carry the attribute (the run span of a fork), instead of by
-- changing flowscope_spans and the views that feed the run totals: a row from
-- this view holds the fork columns, the run span's start and end and zeros for
-- every count and sum, so the per-run merge (max, min, sum) is unchanged for the
-- totals, and a span received twice is harmless (max and min are idempotent).
-- Runs recorded before this migration, and runs that are not forks, read
-- ForkedFrom = '' and ForkedAtStep = -1.
ALTER TABLE {db}.flowscope_runs {on_cluster}
    ADD COLUMN IF NOT EXISTS ForkedFrom SimpleAggregateFunction(max, String),
    ADD COLUMN IF NOT EXISTS ForkedAtStep SimpleAggregateFunction(max, Int32) DEFAULT -1;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flowscope_runs_fork_mv {on_cluster}
TO {db}.flowscope_runs
AS SELECT
    if(ResourceAttributes['flowscope.project'] = '', 'default', ResourceAttributes['flowscope.project']) AS Project,
    if(SpanAttributes['flowscope.run.id'] = '', TraceId, SpanAttributes['flowscope.run.id']) AS RunId,
    Timestamp AS Start,
    fromUnixTimestamp64Nano(toUnixTimestamp64Nano(Timestamp) + toInt64(Duration)) AS End,
    ServiceName,
    SpanAttributes['flowscope.run.forked_from'] AS ForkedFrom,
    ifNull(toInt32OrNull(SpanAttributes['flowscope.run.forked_at_step']), -1) AS ForkedAtStep
FROM {db}.otel_traces
WHERE SpanAttributes['flowscope.run.forked_from'] != '';
