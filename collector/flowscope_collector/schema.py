"""Numbered, idempotent schema migrations, applied at start-up.

Each ``migrations/NNN_name.sql`` file is a list of statements with
placeholders for the database, the cluster clause, engines and TTLs, so the
same files create a single-node schema or a replicated one. Applied versions
are recorded in ``flowscope_migrations``; every statement is also written
``IF NOT EXISTS`` so a half-applied migration can simply be run again.
"""

from __future__ import annotations

import logging
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

    def __post_init__(self) -> None:
        for name in (self.database, self.cluster):
            if name is not None and not _IDENT.match(name):
                raise ValueError(f"invalid ClickHouse identifier {name!r}")
        if self.ttl_days is not None and self.ttl_days <= 0:
            raise ValueError("ttl_days must be positive")

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
    for entry in sorted(resources.files("flowscope_collector.migrations").iterdir(), key=lambda p: p.name):
        m = re.match(r"^(\d{3})_(\w+)\.sql$", entry.name)
        if not m:
            continue
        text = entry.read_text(encoding="utf-8")
        text = re.sub(r"--[^\n]*", "", text)
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        stmts = tuple(s.strip() for s in text.split(";") if s.strip())
        out.append(Migration(int(m.group(1)), m.group(2), stmts))
    return out


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
