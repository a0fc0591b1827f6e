"""Inserting framed rows: ClickHouse parses them itself, into ``otel_traces``.

The rows (:mod:`flowscope_collector.ingest.framing`) go to the ``otlp_ingest``
Null table in ClickHouse's ``Protobuf`` format with :data:`OTLP_SCHEMA`; the
table's materialized view writes ``otel_traces`` (migration 003). Parsing in
ClickHouse instead of building columns in Python is what keeps an ordinary
span's attributes out of Python entirely.
"""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client

from .connection import protobuf_schema_settings

INGEST_TABLE = "otlp_ingest"

# OTLP trace messages with the field numbers of opentelemetry-proto, reduced to
# what otel_traces stores, plus ``Row``: one span with its resource and scope,
# which Python assembles by concatenating the parts' own bytes (one ClickHouse
# row per span parses far faster than nested repeated messages). AnyValue's
# kvlist (and values nested inside arrays) are declared ``bytes``: same wire
# type, so any OTLP data parses, and spans that carry them are rewritten in
# Python first.
OTLP_SCHEMA = """syntax = "proto3";
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
message Resource { repeated KeyValue attributes = 1; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }
message InstrumentationScope { string name = 1; string version = 2; }
message Span {
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4;
  string name = 5; int32 kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9; repeated Event events = 11; repeated Link links = 13; Status status = 15;
}
message Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; }
message Link { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; repeated KeyValue attributes = 4; }
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue { oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3;
  double double_value = 4; ArrayValue array_value = 5; bytes kvlist_value = 6; bytes bytes_value = 7; } }
message ArrayValue { repeated ScalarValue values = 1; }
message ScalarValue { oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3;
  double double_value = 4; bytes array_value = 5; bytes kvlist_value = 6; bytes bytes_value = 7; } }
message Row { Resource resource = 1; InstrumentationScope scope = 2; Span span = 3; }
"""


def insert_rows(client: Client, database: str, body: bytes, settings: dict[str, Any] | None = None) -> None:
    """Insert ``body`` (framed rows) through ClickHouse's own OTLP parsing.

    ``settings`` (deduplication token etc.) apply to the insert as usual.
    """
    if not body:
        return
    client.raw_insert(f"{database}.{INGEST_TABLE}", insert_block=body, fmt="Protobuf",
                      settings={**protobuf_schema_settings(client, OTLP_SCHEMA, "Row"), **(settings or {})})
