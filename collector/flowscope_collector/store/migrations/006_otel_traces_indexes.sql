-- Ingest cost: the OpenTelemetry Collector exporter's schema puts bloom filters
-- on the keys and values of both attribute maps. Measured with
-- benchmarks/bench_ingest.py --level clickhouse (docs/performance.md), the
-- four of them cost ~8% of the ClickHouse-side CPU per span, and nothing here
-- reads through them: the API reads the typed flowscope tables, the shipped
-- dashboards filter otel_traces only by TraceId and time. A granule holds
-- spans of many kinds, so a map bloom filter rarely rules one out anyway
-- except for rare values. Dropped; the column set is unchanged, so a stock
-- OTel Collector still writes here and Grafana attribute searches still work
-- (by scanning the time range instead of skipping granules).
-- Kept: idx_trace_id (Grafana's trace view and GET /runs/{id}/spans look
-- traces up by TraceId) and idx_duration (minmax, nearly free).
-- To restore one: ALTER TABLE otel_traces ADD INDEX idx_span_attr_value
-- mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1, then
-- MATERIALIZE INDEX idx_span_attr_value.
ALTER TABLE {db}.otel_traces {on_cluster} DROP INDEX IF EXISTS idx_res_attr_key;
ALTER TABLE {db}.otel_traces {on_cluster} DROP INDEX IF EXISTS idx_res_attr_value;
ALTER TABLE {db}.otel_traces {on_cluster} DROP INDEX IF EXISTS idx_span_attr_key;
ALTER TABLE {db}.otel_traces {on_cluster} DROP INDEX IF EXISTS idx_span_attr_value;
