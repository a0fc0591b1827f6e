"""Connecting to ClickHouse. The one module that knows chDB exists.

Everything else talks to a clickhouse-connect ``Client`` and cannot tell an
embedded chDB directory (``chdb:///path``) from a server
(``http(s)://user:pass@host:8123/db``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

DEFAULT_DSN = "chdb:///./flowscope-data"


@dataclass(frozen=True)
class Target:
    dsn: str
    embedded: bool
    database: str
    path: str | None  # on-disk directory for chDB

    def redacted(self) -> str:
        """The DSN without its password, for logs and /readyz."""
        parsed = urlparse(self.dsn)
        if parsed.password:
            netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
            return parsed._replace(netloc=netloc).geturl()
        return self.dsn


def _without_password(dsn: str) -> str:
    try:
        parsed = urlparse(dsn)
        if parsed.password:
            return parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@")).geturl()
    except ValueError:
        pass
    return dsn


def parse_dsn(dsn: str | None) -> Target:
    dsn = dsn or os.environ.get("FLOWSCOPE_CLICKHOUSE_DSN") or DEFAULT_DSN
    parsed = urlparse(dsn)
    if parsed.scheme == "chdb":
        # chdb:///./rel, chdb:///abs/path and chdb://./rel all mean a directory
        raw = unquote((parsed.netloc or "") + parsed.path)
        if raw.startswith("/./") or raw.startswith("/../"):
            raw = raw[1:]
        path = os.path.abspath(raw or "./flowscope-data")
        return Target(dsn=dsn, embedded=True, database="default", path=path)
    if parsed.scheme in ("http", "https", "clickhouse", "clickhouses"):
        database = parsed.path.strip("/") or "default"
        return Target(dsn=dsn, embedded=False, database=database, path=None)
    raise ValueError(
        f"unsupported ClickHouse DSN {_without_password(dsn)!r}: use chdb:///path/to/dir for the embedded engine "
        "or http(s)://user:password@host:8123/database for a server"
    )


class DirectoryInUse(RuntimeError):
    """Another process runs chDB on this directory (chDB allows one process per directory)."""


def embedded_holder(path: str) -> str | None:
    """Who holds the chDB directory ``path``: ``"pid N"`` (or ``"another process"``), or None if free.

    ClickHouse locks ``<dir>/status`` (``flock``) for as long as an engine runs there and
    writes its pid into it. Trying the same lock, without blocking, and letting it go at
    once tells whether opening the directory would fail, and why, before chDB fails with
    "Error initializing EmbeddedServer: . (BAD_ARGUMENTS)" and two tracebacks.
    """
    status = os.path.join(path, "status")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: let chDB say it
        return None
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return None  # no status file: no engine has run here, or none runs now
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with open(status, encoding="utf-8", errors="replace") as f:
                text = f.read()
            for line in text.splitlines():
                if line.startswith("PID:"):
                    return f"pid {line[4:].strip()}"
            return "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def check_embedded_free(target: Target) -> None:
    """Raise :class:`DirectoryInUse`, in one line that names the holder, if another process has the directory."""
    if not target.embedded or target.path is None or target.path in _embedded:
        return
    holder = embedded_holder(target.path)
    if holder is not None:
        raise DirectoryInUse(
            f"another collector ({holder}) holds the chDB directory {target.path}; stop it, talk to it "
            f"over HTTP instead, or use another directory (--dsn chdb:///other/dir)"
        )


_embedded_lock = threading.Lock()
_embedded: dict[str, Client] = {}


def connect(target: Target, **settings: Any) -> Client:
    """A clickhouse-connect client for the target.

    chDB allows one engine per process, so embedded clients are shared per
    directory; asking for a second directory in the same process is an error
    that says so, rather than a crash inside the engine.
    """
    if target.embedded:
        assert target.path is not None
        with _embedded_lock:
            client = _embedded.get(target.path)
            if client is None:
                if _embedded:
                    other = next(iter(_embedded))
                    raise RuntimeError(
                        f"chDB already runs on {other} in this process; one embedded database per process"
                    )
                check_embedded_free(target)
                os.makedirs(target.path, exist_ok=True)
                client = clickhouse_connect.get_client(dsn=f"chdb://{target.path}", settings=settings or None)
                _embedded[target.path] = client
            return client
    return clickhouse_connect.get_client(dsn=_http_dsn(target.dsn), settings=settings or None)


def _http_dsn(dsn: str) -> str:
    parsed = urlparse(dsn)
    scheme = {"clickhouse": "http", "clickhouses": "https"}.get(parsed.scheme, parsed.scheme)
    return parsed._replace(scheme=scheme).geturl()


_schema_settings: dict[tuple[int, str], dict[str, str]] = {}


def protobuf_schema_settings(client: Client, schema: str, message: str) -> dict[str, str]:
    """Insert settings that let ClickHouse parse a Protobuf payload with ``schema``.

    A server caches a schema passed as a string under its own format_schema_path.
    Embedded chDB runs ClickHouse in local mode, which would cache it in the
    process's working directory (``./__cache__``), littering the user's project;
    so for chDB the schema is written once into the data directory and named by
    its absolute path.
    """
    digest = hashlib.sha256(schema.encode()).hexdigest()[:16]
    key = (id(client), digest)
    cached = _schema_settings.get(key)
    if cached is not None:
        return cached
    path = next((p for p, c in _embedded.items() if c is client), None)
    if path is None:
        settings = {"format_schema_source": "string", "format_schema": schema, "format_schema_message_name": message}
    else:
        file = os.path.join(path, "format_schemas", f"flowscope-{digest}.proto")
        if not os.path.exists(file):
            os.makedirs(os.path.dirname(file), exist_ok=True)
            tmp = f"{file}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(schema)
            os.replace(tmp, file)
        settings = {"format_schema": f"{file}:{message}"}
    _schema_settings[key] = settings
    return settings
