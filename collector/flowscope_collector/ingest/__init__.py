"""Stage 1, ingest: an OTLP body becomes framed ``otel_traces`` rows.

Decode and check the request (``otlp``), cut it to the per-span limits
(``limits``), build one ClickHouse ``Protobuf`` row per span (``rows``) in a
:class:`~.batch.Batch`, and frame those rows as the write-ahead log keeps them.
Nothing here does I/O: the stage is pure CPU, the hot path of the collector.
"""
