-- Per-run reads (summary, nodes, state, graph, stream) at millions of spans.
-- Measured in benchmarks/bench_queries.py and docs/performance.md:
--
-- * A run lives in one part of one day, but the primary key alone cannot rule
--   out the other parts (it only knows where each granule starts), so every
--   part of every day was read. A bloom filter on RunId per granule rules them
--   out at planning time (the query layer asks for skip indexes to be applied
--   then: use_skip_indexes_on_data_read = 0).
-- * Reading ~40 typed columns costs far more than their bytes: ClickHouse pays
--   per column per part. RunRecord is the same span as one TSV line, written
--   once at insert (MATERIALIZED), so a run is read from one column;
--   flowscope_collector.store.queries parses it back. The leading 1 is the format
--   version: change the field list only together with a new version number.
--   Parts written before this migration compute it on read until the
--   MATERIALIZE below has rewritten them, so answers are the same meanwhile.
--   Storage: +~33 bytes per span (ZSTD), about doubling flowscope_spans.
ALTER TABLE {db}.flowscope_spans {on_cluster}
    ADD INDEX IF NOT EXISTS idx_run_id RunId TYPE bloom_filter(0.01) GRANULARITY 1;

ALTER TABLE {db}.flowscope_spans {on_cluster} MATERIALIZE INDEX idx_run_id;

ALTER TABLE {db}.flowscope_spans {on_cluster}
    ADD COLUMN IF NOT EXISTS RunRecord String MATERIALIZED formatRowNoNewline('TSV',
        1, TraceId, SpanId, ParentSpanId, SpanName, toUnixTimestamp64Nano(Timestamp), Duration, ServiceName, Kind,
        FlowName, NodeName, NodeType, NodeStep, NodeAttempt, Branch, StatusCode, StatusMessage, ErrorType, Provider,
        Model, InputTokens, OutputTokens, CachedInputTokens, CacheWriteTokens, ReasoningTokens, toString(CostUsd),
        toString(CostInputUsd), toString(CostCachedInputUsd), toString(CostCacheWriteUsd), toString(CostOutputUsd),
        CostSource, toUInt8(UsageEstimated), toUInt8(CacheHit), toString(CacheSavedUsd), RetryCount, FallbackFrom,
        FallbackTo, toUInt8(BudgetExceeded), toString(TimeToFirstChunk)) CODEC(ZSTD(1));

ALTER TABLE {db}.flowscope_spans {on_cluster} MATERIALIZE COLUMN RunRecord;

ALTER TABLE {db}.flowscope_state_events {on_cluster}
    ADD INDEX IF NOT EXISTS idx_run_id RunId TYPE bloom_filter(0.01) GRANULARITY 1;

ALTER TABLE {db}.flowscope_state_events {on_cluster} MATERIALIZE INDEX idx_run_id;

-- The same one-column read for a run's state history (format 1 as above).
ALTER TABLE {db}.flowscope_state_events {on_cluster}
    ADD COLUMN IF NOT EXISTS StateRecord String MATERIALIZED formatRowNoNewline('TSV',
        1, Seq, Op, Path, Value, NodeStep, NodeName, toUInt8(Truncated), toUnixTimestamp64Nano(Timestamp))
        CODEC(ZSTD(1));

ALTER TABLE {db}.flowscope_state_events {on_cluster} MATERIALIZE COLUMN StateRecord;
