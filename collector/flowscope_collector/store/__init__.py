"""Stage 3, store: ClickHouse (a server or embedded chDB) and everything said to it.

Connecting (``connection``), the schema and its numbered migrations
(``schema``, ``migrations/``), inserting framed rows (``insert``) and the
read queries behind the API (``queries``).
"""
