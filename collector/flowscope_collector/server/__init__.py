"""Stage 4, server: the network face of the collector.

The FastAPI app (``app``) with its routes, one module per concern (OTLP/HTTP
ingest, runs, costs, live streams, operations), the OTLP/gRPC receiver, API-key
authentication and the response models. Every handler only translates between
its protocol and the :class:`~flowscope_collector.service.Collector`.
"""
