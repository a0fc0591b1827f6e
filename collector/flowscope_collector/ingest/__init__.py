"""Stage 1, ingest: an OTLP body becomes framed ``otel_traces`` rows.

Decode and check the request (``otlp``), cut it to the per-span limits
(``limits``), build one ClickHouse ``Protobuf`` row per span (``rows``, with
attribute values stringified by ``values``) into a ``batch.Batch`` of rows
laid out as ``framing`` says, and turn it into the record the write-ahead log
keeps (``records``). Nothing here does I/O: this stage is pure CPU, the
collector's hot path.
"""
