"""Collector settings: env vars first, CLI flags override, one dataclass for both."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from .store.connection import DEFAULT_DSN


def _env_int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


@dataclass
class CollectorSettings:
    host: str = "127.0.0.1"
    port: int = 4318
    dsn: str = DEFAULT_DSN
    cluster: str | None = None
    sharded: bool | None = None  # with a cluster: Distributed tables sharded by run (env FLOWSCOPE_CLICKHOUSE_SHARDED)
    ttl_days: int | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    max_decompressed_bytes: int = 64 * 1024 * 1024
    max_spans_per_request: int = 100_000
    max_pending_spans: int = 500_000
    max_batch_spans: int = 50_000  # per insert; large inserts cost ClickHouse far less per span
    max_batch_bytes: int = 64 * 1024 * 1024  # and at most this much log data per insert
    public_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Durable buffer, admission, limits and API keys (buffer/, admission.py, ingest/limits.py, server/auth.py).
    wal_dir: str | None = None  # default: <chdb dir>/flowscope-wal, or ./flowscope-wal for a server
    wal_fsync: bool = True
    wal_segment_bytes: int = 64 * 1024 * 1024
    max_pending_bytes: int = 1024 * 1024 * 1024  # log bytes not yet in ClickHouse before 429
    max_cache_bytes: int = 256 * 1024 * 1024  # built rows kept in memory for the writer
    ack_wait_s: float = 1.0  # while ClickHouse is healthy, answer once stored (read-your-writes)
    drain_timeout_s: float = 10.0
    max_attributes: int = 256
    max_events: int = 256
    max_value_chars: int = 64 * 1024
    api_keys: str | None = field(default=None, repr=False)
    api_keys_file: str | None = None
    insecure: bool = False
    max_inflight_bytes: int = 256 * 1024 * 1024  # request bytes received (not declared) and not yet decoded
    max_concurrent_decodes: int = 4
    # No client can starve the others (admission.py, server/otlp_http.py, ingest/otlp.py):
    # one project's share of the buffer, the in-flight bytes and the decode slots (None: half of each).
    max_pending_spans_per_project: int | None = None
    max_pending_bytes_per_project: int | None = None
    max_inflight_bytes_per_project: int | None = None
    max_concurrent_decodes_per_project: int | None = None
    decode_wait_s: float = 10.0  # a request waiting longer for a decode slot gets 503 + Retry-After
    body_timeout_s: float = 30.0  # a request body not fully received by then gets 408
    body_idle_timeout_s: float = 10.0  # ... or one that sends nothing for this long
    idle_timeout_s: float = 5.0  # an idle keep-alive connection is closed after this long
    max_inflation_ratio: int = 100  # gzip/deflate output past 1 MiB may be at most this many times the body
    # Refuse ingest with 503 + Retry-After while the process's resident memory is above this (the OTel
    # Collector's memory_limiter). None: 80% of the cgroup memory limit if there is one, else off; 0: off.
    max_memory_bytes: int | None = None
    # Costs under another catalog (GET /api/v1/costs?pricing=current, POST /api/v1/costs/preview) price
    # every call of the range in Python: a range holding more LLM calls than this gets 422.
    max_preview_calls: int = 200_000
    # OTLP/gRPC (server/otlp_grpc.py): None or 0 = off. `serve` defaults it to 4317.
    grpc_port: int | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> CollectorSettings:
        s = cls(
            host=os.environ.get("FLOWSCOPE_HOST", cls.host),
            port=_env_int("FLOWSCOPE_PORT", cls.port) or cls.port,
            dsn=os.environ.get("FLOWSCOPE_CLICKHOUSE_DSN", DEFAULT_DSN),
            cluster=os.environ.get("FLOWSCOPE_CLICKHOUSE_CLUSTER") or None,
            ttl_days=_env_int("FLOWSCOPE_RETENTION_DAYS", None),
            max_body_bytes=_env_int("FLOWSCOPE_MAX_BODY_BYTES", cls.max_body_bytes) or cls.max_body_bytes,
            public_url=os.environ.get("FLOWSCOPE_PUBLIC_URL") or None,
        )
        _reliability_from_env(s)
        names = {f.name for f in fields(cls)}
        for key, value in overrides.items():
            if value is None:
                continue
            if key not in names:
                raise TypeError(f"unknown collector setting {key!r}")
            setattr(s, key, value)
        return s

    @property
    def url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


def _reliability_from_env(s: CollectorSettings) -> None:
    """Buffer, limit and key settings from ``FLOWSCOPE_*`` variables (CLI flags override)."""
    env = os.environ
    s.wal_dir = env.get("FLOWSCOPE_WAL_DIR") or s.wal_dir
    if env.get("FLOWSCOPE_WAL_FSYNC", "").strip().lower() in ("0", "false", "no", "off"):
        s.wal_fsync = False
    for name in ("max_pending_spans", "max_pending_bytes", "max_cache_bytes", "max_spans_per_request",
                 "max_decompressed_bytes", "max_attributes", "max_events", "max_value_chars", "max_batch_spans",
                 "max_batch_bytes",
                 "max_inflight_bytes", "wal_segment_bytes", "max_concurrent_decodes", "max_pending_spans_per_project",
                 "max_pending_bytes_per_project", "max_inflight_bytes_per_project",
                 "max_concurrent_decodes_per_project", "max_inflation_ratio", "max_memory_bytes",
                 "max_preview_calls"):
        setattr(s, name, _env_int("FLOWSCOPE_" + name.upper(), getattr(s, name)))
    for name in ("decode_wait_s", "body_timeout_s", "body_idle_timeout_s", "idle_timeout_s"):
        if env.get("FLOWSCOPE_" + name.upper()):
            setattr(s, name, float(env["FLOWSCOPE_" + name.upper()]))
    if env.get("FLOWSCOPE_ACK_WAIT_S"):
        s.ack_wait_s = float(env["FLOWSCOPE_ACK_WAIT_S"])
    s.api_keys = env.get("FLOWSCOPE_API_KEYS") or s.api_keys
    s.api_keys_file = env.get("FLOWSCOPE_API_KEYS_FILE") or s.api_keys_file
    s.insecure = s.insecure or env.get("FLOWSCOPE_INSECURE", "").strip().lower() in ("1", "true", "yes", "on")
    if env.get("FLOWSCOPE_GRPC_PORT", "").strip().lower() in ("off", "none", "false", "no"):
        s.grpc_port = 0
    elif env.get("FLOWSCOPE_GRPC_PORT", "").strip():
        s.grpc_port = int(env["FLOWSCOPE_GRPC_PORT"])
