"""The pure contracts the SDK and the collector share.

Semantic-convention names (:mod:`.semconv`), run ids (:mod:`.ids`), run
attribute names (:mod:`.run_attributes`), state encoding and folding
(:mod:`.state`), normalisation of spans from any producer
(:mod:`.normalize`), pricing (:mod:`.pricing`) and the run views every
answer is computed with (:mod:`.views`).

Nothing here imports the OpenTelemetry SDK, httpx or the run context: the
collector imports only this package from ``flowscope``, so the two can never
disagree on a name or a number, and the collector never loads the tracer.
``tests/sdk/test_structure.py`` fails if that changes.
"""
