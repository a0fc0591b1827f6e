-- Fast ingest: ClickHouse parses OTLP protobuf itself.
--
-- The collector inserts one row per span in Protobuf format (length-delimited
-- messages) using the wire-compatible schema flowscope_collector.store.insert.OTLP_SCHEMA:
-- message Row { Resource resource = 1; InstrumentationScope scope = 2; Span span = 3; }
-- where each part is the span's own OTLP bytes, so Python never touches an
-- ordinary attribute: it only stamps the project on the resource and rewrites
-- the few spans that need Python (LLM spans to price, oversized values) as
-- plain string attributes. Nothing is stored in this Null table; the view
-- writes otel_traces rows exactly as the Python row builder and the
-- OpenTelemetry Collector exporter do (values stringified like AsString;
-- a oneof member is set where its Nullable column is not NULL).
CREATE TABLE IF NOT EXISTS {db}.otlp_ingest {on_cluster} (
    resource Tuple(attributes Array(Tuple(key String, value Tuple(string_value Nullable(String), bool_value Nullable(Bool), int_value Nullable(Int64), double_value Nullable(Float64),
            array_value Nullable(Tuple(values Array(Tuple(string_value Nullable(String), bool_value Nullable(Bool),
                int_value Nullable(Int64), double_value Nullable(Float64), array_value Nullable(String), kvlist_value Nullable(String),
                bytes_value Nullable(String))))), kvlist_value Nullable(String), bytes_value Nullable(String))))),
    scope Tuple(name String, version String),
    span Tuple(
        trace_id String, span_id String, trace_state String, parent_span_id String, name String,
        kind Int32, start_time_unix_nano UInt64, end_time_unix_nano UInt64,
        attributes Array(Tuple(key String, value Tuple(string_value Nullable(String), bool_value Nullable(Bool), int_value Nullable(Int64), double_value Nullable(Float64),
            array_value Nullable(Tuple(values Array(Tuple(string_value Nullable(String), bool_value Nullable(Bool),
                int_value Nullable(Int64), double_value Nullable(Float64), array_value Nullable(String), kvlist_value Nullable(String),
                bytes_value Nullable(String))))), kvlist_value Nullable(String), bytes_value Nullable(String)))),
        events Array(Tuple(time_unix_nano UInt64, name String, attributes Array(Tuple(key String, value Tuple(string_value Nullable(String), bool_value Nullable(Bool), int_value Nullable(Int64), double_value Nullable(Float64),
            array_value Nullable(Tuple(values Array(Tuple(string_value Nullable(String), bool_value Nullable(Bool),
                int_value Nullable(Int64), double_value Nullable(Float64), array_value Nullable(String), kvlist_value Nullable(String),
                bytes_value Nullable(String))))), kvlist_value Nullable(String), bytes_value Nullable(String)))))),
        links Array(Tuple(trace_id String, span_id String, trace_state String, attributes Array(Tuple(key String, value Tuple(string_value Nullable(String), bool_value Nullable(Bool), int_value Nullable(Int64), double_value Nullable(Float64),
            array_value Nullable(Tuple(values Array(Tuple(string_value Nullable(String), bool_value Nullable(Bool),
                int_value Nullable(Int64), double_value Nullable(Float64), array_value Nullable(String), kvlist_value Nullable(String),
                bytes_value Nullable(String))))), kvlist_value Nullable(String), bytes_value Nullable(String)))))),
        status Tuple(message String, code Int32))
) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.otlp_ingest_mv {on_cluster}
TO {db}.otel_traces
AS SELECT
    fromUnixTimestamp64Nano(toInt64(span.start_time_unix_nano)) AS Timestamp,
    lower(hex(span.trace_id)) AS TraceId,
    lower(hex(span.span_id)) AS SpanId,
    lower(hex(span.parent_span_id)) AS ParentSpanId,
    span.trace_state AS TraceState,
    span.name AS SpanName,
    if(span.kind BETWEEN 0 AND 5,
       ['Unspecified', 'Internal', 'Server', 'Client', 'Producer', 'Consumer'][span.kind + 1], 'Unspecified') AS SpanKind,
    ResourceAttributes['service.name'] AS ServiceName,
    mapFromArrays(arrayMap(kv -> kv.key, resource.attributes),
        arrayMap(kv -> multiIf(isNotNull(kv.value.string_value), assumeNotNull(kv.value.string_value), isNotNull(kv.value.int_value), toString(assumeNotNull(kv.value.int_value)), isNotNull(kv.value.bool_value), if(assumeNotNull(kv.value.bool_value), 'true', 'false'), isNotNull(kv.value.double_value), if(assumeNotNull(kv.value.double_value) = floor(assumeNotNull(kv.value.double_value)) AND abs(assumeNotNull(kv.value.double_value)) < 1e16, toString(toInt64(assumeNotNull(kv.value.double_value))), toString(assumeNotNull(kv.value.double_value))), isNotNull(kv.value.bytes_value), base64Encode(assumeNotNull(kv.value.bytes_value)), isNotNull(kv.value.array_value), concat('[', arrayStringConcat(arrayMap(x -> multiIf(isNotNull(x.string_value), replaceAll(toJSONString(assumeNotNull(x.string_value)), '\\/', '/'), isNotNull(x.int_value), toString(assumeNotNull(x.int_value)), isNotNull(x.bool_value), if(assumeNotNull(x.bool_value), 'true', 'false'), isNotNull(x.double_value), multiIf(isNaN(assumeNotNull(x.double_value)), 'NaN', isInfinite(assumeNotNull(x.double_value)), if(assumeNotNull(x.double_value) > 0, 'Infinity', '-Infinity'), assumeNotNull(x.double_value) = floor(assumeNotNull(x.double_value)) AND abs(assumeNotNull(x.double_value)) < 1e16, concat(toString(toInt64(assumeNotNull(x.double_value))), '.0'), toString(assumeNotNull(x.double_value))), isNotNull(x.bytes_value), concat('"', base64Encode(assumeNotNull(x.bytes_value)), '"'), 'null'), assumeNotNull(kv.value.array_value).values), ','), ']'), ''), resource.attributes)) AS ResourceAttributes,
    scope.name AS ScopeName,
    scope.version AS ScopeVersion,
    mapFromArrays(arrayMap(kv -> kv.key, span.attributes),
        arrayMap(kv -> multiIf(isNotNull(kv.value.string_value), assumeNotNull(kv.value.string_value), isNotNull(kv.value.int_value), toString(assumeNotNull(kv.value.int_value)), isNotNull(kv.value.bool_value), if(assumeNotNull(kv.value.bool_value), 'true', 'false'), isNotNull(kv.value.double_value), if(assumeNotNull(kv.value.double_value) = floor(assumeNotNull(kv.value.double_value)) AND abs(assumeNotNull(kv.value.double_value)) < 1e16, toString(toInt64(assumeNotNull(kv.value.double_value))), toString(assumeNotNull(kv.value.double_value))), isNotNull(kv.value.bytes_value), base64Encode(assumeNotNull(kv.value.bytes_value)), isNotNull(kv.value.array_value), concat('[', arrayStringConcat(arrayMap(x -> multiIf(isNotNull(x.string_value), replaceAll(toJSONString(assumeNotNull(x.string_value)), '\\/', '/'), isNotNull(x.int_value), toString(assumeNotNull(x.int_value)), isNotNull(x.bool_value), if(assumeNotNull(x.bool_value), 'true', 'false'), isNotNull(x.double_value), multiIf(isNaN(assumeNotNull(x.double_value)), 'NaN', isInfinite(assumeNotNull(x.double_value)), if(assumeNotNull(x.double_value) > 0, 'Infinity', '-Infinity'), assumeNotNull(x.double_value) = floor(assumeNotNull(x.double_value)) AND abs(assumeNotNull(x.double_value)) < 1e16, concat(toString(toInt64(assumeNotNull(x.double_value))), '.0'), toString(assumeNotNull(x.double_value))), isNotNull(x.bytes_value), concat('"', base64Encode(assumeNotNull(x.bytes_value)), '"'), 'null'), assumeNotNull(kv.value.array_value).values), ','), ']'), ''), span.attributes)) AS SpanAttributes,
    if(span.end_time_unix_nano > span.start_time_unix_nano,
       span.end_time_unix_nano - span.start_time_unix_nano, 0) AS Duration,
    if(span.status.code BETWEEN 0 AND 2, ['Unset', 'Ok', 'Error'][span.status.code + 1], 'Unset') AS StatusCode,
    span.status.message AS StatusMessage,
    arrayMap(e -> fromUnixTimestamp64Nano(toInt64(e.time_unix_nano)), span.events) AS `Events.Timestamp`,
    arrayMap(e -> e.name, span.events) AS `Events.Name`,
    arrayMap(e -> mapFromArrays(arrayMap(kv -> kv.key, e.attributes),
        arrayMap(kv -> multiIf(isNotNull(kv.value.string_value), assumeNotNull(kv.value.string_value), isNotNull(kv.value.int_value), toString(assumeNotNull(kv.value.int_value)), isNotNull(kv.value.bool_value), if(assumeNotNull(kv.value.bool_value), 'true', 'false'), isNotNull(kv.value.double_value), if(assumeNotNull(kv.value.double_value) = floor(assumeNotNull(kv.value.double_value)) AND abs(assumeNotNull(kv.value.double_value)) < 1e16, toString(toInt64(assumeNotNull(kv.value.double_value))), toString(assumeNotNull(kv.value.double_value))), isNotNull(kv.value.bytes_value), base64Encode(assumeNotNull(kv.value.bytes_value)), isNotNull(kv.value.array_value), concat('[', arrayStringConcat(arrayMap(x -> multiIf(isNotNull(x.string_value), replaceAll(toJSONString(assumeNotNull(x.string_value)), '\\/', '/'), isNotNull(x.int_value), toString(assumeNotNull(x.int_value)), isNotNull(x.bool_value), if(assumeNotNull(x.bool_value), 'true', 'false'), isNotNull(x.double_value), multiIf(isNaN(assumeNotNull(x.double_value)), 'NaN', isInfinite(assumeNotNull(x.double_value)), if(assumeNotNull(x.double_value) > 0, 'Infinity', '-Infinity'), assumeNotNull(x.double_value) = floor(assumeNotNull(x.double_value)) AND abs(assumeNotNull(x.double_value)) < 1e16, concat(toString(toInt64(assumeNotNull(x.double_value))), '.0'), toString(assumeNotNull(x.double_value))), isNotNull(x.bytes_value), concat('"', base64Encode(assumeNotNull(x.bytes_value)), '"'), 'null'), assumeNotNull(kv.value.array_value).values), ','), ']'), ''), e.attributes)), span.events) AS `Events.Attributes`,
    arrayMap(l -> lower(hex(l.trace_id)), span.links) AS `Links.TraceId`,
    arrayMap(l -> lower(hex(l.span_id)), span.links) AS `Links.SpanId`,
    arrayMap(l -> l.trace_state, span.links) AS `Links.TraceState`,
    arrayMap(l -> mapFromArrays(arrayMap(kv -> kv.key, l.attributes),
        arrayMap(kv -> multiIf(isNotNull(kv.value.string_value), assumeNotNull(kv.value.string_value), isNotNull(kv.value.int_value), toString(assumeNotNull(kv.value.int_value)), isNotNull(kv.value.bool_value), if(assumeNotNull(kv.value.bool_value), 'true', 'false'), isNotNull(kv.value.double_value), if(assumeNotNull(kv.value.double_value) = floor(assumeNotNull(kv.value.double_value)) AND abs(assumeNotNull(kv.value.double_value)) < 1e16, toString(toInt64(assumeNotNull(kv.value.double_value))), toString(assumeNotNull(kv.value.double_value))), isNotNull(kv.value.bytes_value), base64Encode(assumeNotNull(kv.value.bytes_value)), isNotNull(kv.value.array_value), concat('[', arrayStringConcat(arrayMap(x -> multiIf(isNotNull(x.string_value), replaceAll(toJSONString(assumeNotNull(x.string_value)), '\\/', '/'), isNotNull(x.int_value), toString(assumeNotNull(x.int_value)), isNotNull(x.bool_value), if(assumeNotNull(x.bool_value), 'true', 'false'), isNotNull(x.double_value), multiIf(isNaN(assumeNotNull(x.double_value)), 'NaN', isInfinite(assumeNotNull(x.double_value)), if(assumeNotNull(x.double_value) > 0, 'Infinity', '-Infinity'), assumeNotNull(x.double_value) = floor(assumeNotNull(x.double_value)) AND abs(assumeNotNull(x.double_value)) < 1e16, concat(toString(toInt64(assumeNotNull(x.double_value))), '.0'), toString(assumeNotNull(x.double_value))), isNotNull(x.bytes_value), concat('"', base64Encode(assumeNotNull(x.bytes_value)), '"'), 'null'), assumeNotNull(kv.value.array_value).values), ','), ']'), ''), l.attributes)), span.links) AS `Links.Attributes`
FROM {db}.otlp_ingest;
