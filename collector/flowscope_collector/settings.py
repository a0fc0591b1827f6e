"""Collector settings: env vars first, CLI flags override, one dataclass for both."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from .clickhouse import DEFAULT_DSN


def _env_int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


@dataclass
class CollectorSettings:
    host: str = "127.0.0.1"
    port: int = 4318
    dsn: str = DEFAULT_DSN
    cluster: str | None = None
    ttl_days: int | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    max_decompressed_bytes: int = 64 * 1024 * 1024
    max_spans_per_request: int = 100_000
    max_pending_spans: int = 500_000
    max_batch_spans: int = 20_000
    public_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

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
