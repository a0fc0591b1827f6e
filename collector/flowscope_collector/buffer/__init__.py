"""Stage 2, buffer: accepted rows wait on local disk until ClickHouse has them.

The write-ahead log (``wal``) makes a request durable before it is
acknowledged (``acks``: what a receiver waits on, and recent requests by
digest, so a retried one is not written twice); the writer (``writer``)
drains the log into ClickHouse in large inserts, whatever ClickHouse is doing
at the moment.
"""
