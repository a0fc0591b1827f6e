"""Numbered, idempotent schema migrations, applied at start-up.

Each ``migrations/NNN_name.sql`` file is a list of statements with
placeholders for the database, the cluster clause, engines and TTLs, so the
same files create a single-node schema or a replicated one. Applied versions
are recorded in ``flowscope_migrations``; every statement is also written
``IF NOT EXISTS`` so a half-applied migration can simply be run again.

On a cluster the schema is sharded by run unless ``sharded=False``: each
MergeTree-family table ``T`` becomes ``T_local`` (Replicated, on every node) plus
a Distributed ``T`` over it, so queries and inserts keep using the plain names.
Materialized views fed by a sharded table read ``T_local`` and write the local
target, so per-shard aggregates (runs, trace bounds) see whole runs; views fed
by a non-sharded entry table (a Null ingest table) write the Distributed table,
which routes each row to its run's shard. :func:`shard_statements` does this
rewrite on the same migration files, so files added later get it too.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver.client import Client

logger = logging.getLogger("flowscope.collector")

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SchemaOptions:
    database: str = "default"
    cluster: str | None = None  # ON CLUSTER name: Replicated engines
    ttl_days: int | None = None  # None keeps data forever
    # With a cluster: T_local + Distributed T sharded by run. None reads
    # FLOWSCOPE_CLICKHOUSE_SHARDED (default on); False keeps replicated-only tables.
    sharded: bool | None = None

    def __post_init__(self) -> None:
        for name in (self.database, self.cluster):
            if name is not None and not _IDENT.match(name):
                raise ValueError(f"invalid ClickHouse identifier {name!r}")
        if self.ttl_days is not None and self.ttl_days <= 0:
            raise ValueError("ttl_days must be positive")

    @property
    def distributed(self) -> bool:
        """Whether tables are created as ``T_local`` + Distributed ``T`` (cluster only)."""
        if not self.cluster:
            return False
        if self.sharded is not None:
            return self.sharded
        raw = os.environ.get("FLOWSCOPE_CLICKHOUSE_SHARDED", "").strip().lower()
        return raw not in ("0", "false", "no", "off")

    def placeholders(self) -> dict[str, str]:
        cluster = f"ON CLUSTER {self.cluster}" if self.cluster else ""
        if self.cluster:
            mt = "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')"
            amt = "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')"
        else:
            mt, amt = "MergeTree()", "AggregatingMergeTree()"
        ttl = self.ttl_days
        return {
            "db": self.database,
            "on_cluster": cluster,
            "engine_mergetree": mt,
            "engine_aggregatingmergetree": amt,
            "ttl_timestamp": f"TTL toDateTime(Timestamp) + toIntervalDay({ttl})" if ttl else "",
            "ttl_start": f"TTL toDateTime(Start) + toIntervalDay({ttl})" if ttl else "",
            "ttl_start64": f"TTL toDateTime(Start) + toIntervalDay({ttl})" if ttl else "",
        }


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def load_migrations(options: SchemaOptions) -> list[Migration]:
    out = []
    values = options.placeholders()
    for entry in sorted(resources.files("flowscope_collector.store.migrations").iterdir(), key=lambda p: p.name):
        m = re.match(r"^(\d{3})_(\w+)\.sql$", entry.name)
        if not m:
            continue
        text = entry.read_text(encoding="utf-8")
        text = re.sub(r"--[^\n]*", "", text)
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        stmts = tuple(s.strip() for s in text.split(";") if s.strip())
        out.append(Migration(int(m.group(1)), m.group(2), stmts))
    if options.distributed:
        sharded = sharded_tables(out)
        out = [Migration(mig.version, mig.name, shard_statements(mig.statements, sharded, options)) for mig in out]
    return out


_CREATE_TABLE = re.compile(r"^CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\.(\w+)", re.I)
_CREATE_MV = re.compile(r"^CREATE\s+MATERIALIZED\s+VIEW\b", re.I)
_MV_SOURCE = re.compile(r"\bFROM\s+(\w+)\.(\w+)", re.I)
_ALTER_OR_DROP = re.compile(r"^(ALTER\s+TABLE|DROP\s+TABLE)\s+(?:IF\s+EXISTS\s+)?(\w+)\.(\w+)", re.I)
_MODIFY_QUERY = re.compile(r"^ALTER\s+TABLE\s+\w+\.\w+\s.*?\bMODIFY\s+QUERY\b", re.I | re.S)
_COLUMN_ALTER = re.compile(r"\b(ADD|DROP|MODIFY|RENAME|COMMENT|CLEAR)\s+COLUMN\b", re.I)
_MERGETREE_ENGINE = re.compile(r"\bENGINE\s*=\s*(Replicated)?\w*MergeTree\b", re.I)


def sharded_tables(migrations: list[Migration]) -> set[str]:
    """Names of the MergeTree-family tables the migrations create: the ones to shard."""
    names = set()
    for mig in migrations:
        for stmt in mig.statements:
            m = _CREATE_TABLE.match(stmt)
            if m and _MERGETREE_ENGINE.search(stmt):
                names.add(m.group(2))
    return names


def shard_key(create_stmt: str) -> str:
    """How rows of a table are spread over shards: by run, so one run is one shard.

    ``otel_traces`` has no RunId column; its key derives the run the way the
    flowscope_spans view does, so a span and its typed copy land together.
    """
    if re.search(r"^\s*RunId\s", create_stmt, re.M):
        return "cityHash64(RunId)"
    if re.search(r"^\s*SpanAttributes\s", create_stmt, re.M):
        return "cityHash64(if(SpanAttributes['flowscope.run.id'] = '', TraceId, SpanAttributes['flowscope.run.id']))"
    if re.search(r"^\s*TraceId\s", create_stmt, re.M):
        return "cityHash64(TraceId)"
    return "rand()"


def _local(stmt: str, db: str, names: set[str]) -> str:
    for name in sorted(names, key=len, reverse=True):
        stmt = re.sub(rf"\b{re.escape(db)}\.{re.escape(name)}\b", f"{db}.{name}_local", stmt)
    return stmt


def shard_statements(stmts: tuple[str, ...], sharded: set[str], options: SchemaOptions) -> tuple[str, ...]:
    """Rewrite single-table DDL into the ``T_local`` + Distributed ``T`` layout."""
    db, cluster = options.database, options.cluster
    out: list[str] = []
    for stmt in stmts:
        table = _CREATE_TABLE.match(stmt)
        alter = _ALTER_OR_DROP.match(stmt)
        if table and table.group(1) == db and table.group(2) in sharded:
            name = table.group(2)
            out.append(_local(stmt, db, {name}))
            out.append(
                f"CREATE TABLE IF NOT EXISTS {db}.{name} ON CLUSTER {cluster} AS {db}.{name}_local "
                f"ENGINE = Distributed({cluster}, {db}, {name}_local, {shard_key(stmt)})"
            )
        elif _CREATE_MV.match(stmt) or _MODIFY_QUERY.match(stmt):
            source = _MV_SOURCE.search(stmt)
            fed_by_shard = source is not None and source.group(1) == db and source.group(2) in sharded
            out.append(_local(stmt, db, sharded) if fed_by_shard else stmt)
        elif alter and alter.group(2) == db and alter.group(3) in sharded:
            name = alter.group(3)
            out.append(_local(stmt, db, {name}))
            if alter.group(1).upper().startswith("DROP") or _COLUMN_ALTER.search(stmt):
                out.append(stmt)  # the Distributed table mirrors the columns
        else:
            out.append(stmt)
    return tuple(out)


def latest_version() -> int:
    return max(m.version for m in load_migrations(SchemaOptions()))


def applied_versions(client: Client, options: SchemaOptions) -> set[int]:
    rows = client.query(f"SELECT version FROM {options.database}.flowscope_migrations").result_rows
    return {int(r[0]) for r in rows}


def migrate(client: Client, options: SchemaOptions) -> list[int]:
    """Apply every migration not yet recorded; returns the versions applied now."""
    db = options.database
    cluster = f"ON CLUSTER {options.cluster}" if options.cluster else ""
    client.command(f"CREATE DATABASE IF NOT EXISTS {db} {cluster}")
    engine = (
        "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')"
        if options.cluster
        else "MergeTree()"
    )
    if options.distributed:
        # One copy of the applied versions on every node of every shard, so any
        # node a collector reaches answers readiness the same way.
        engine = "ReplicatedMergeTree('/clickhouse/tables/cluster/{database}/{table}', '{shard}-{replica}')"
    client.command(
        f"CREATE TABLE IF NOT EXISTS {db}.flowscope_migrations {cluster} "
        f"(version UInt32, name String, applied_at DateTime64(3) DEFAULT now64(3)) "
        f"ENGINE = {engine} ORDER BY version"
    )
    done = applied_versions(client, options)
    applied = []
    for mig in load_migrations(options):
        if mig.version in done:
            continue
        logger.info("applying migration %03d_%s", mig.version, mig.name)
        for stmt in mig.statements:
            client.command(stmt)
        client.insert(f"{db}.flowscope_migrations", [[mig.version, mig.name]], column_names=["version", "name"])
        applied.append(mig.version)
    return applied
