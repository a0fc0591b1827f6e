"""API keys: who may send spans, who may read them, and which project they belong to.

Keys come from ``FLOWSCOPE_API_KEYS`` and/or a keys file, one entry each::

    KEY=PROJECT                 # ingest and read
    KEY=PROJECT:ingest          # an exporter's key: can write, cannot read
    sha256:HEX=PROJECT:read     # the key's SHA-256 instead of the key itself
    KEY=ops:operator            # a scraper's key: /metrics only (never given by default)

(comma- or newline-separated; ``#`` starts a comment), or, in a ``.json``
file, ``[{"key" | "sha256": …, "project": …, "scopes": ["ingest", "read"]}]``.

Only SHA-256 digests of keys are held in memory, a presented key is compared
with every digest in constant time, and no key or header is ever logged or
echoed: a log line or an error page must not leak one. The project is taken
from the key, never from the request, so a client cannot write into or read
from a project by naming it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

logger = logging.getLogger("flowscope.collector")

INGEST = "ingest"
READ = "read"
# /metrics holds the whole collector's counters (every project's spans, refusals, queue), and
# /api/v1/reprice rewrites every project's stored costs, so no project's key reaches them: only a
# key given this scope explicitly.
OPERATOR = "operator"
SCOPES = frozenset({INGEST, READ})  # what a key without explicit scopes may do
KNOWN_SCOPES = SCOPES | {OPERATOR}
OPERATOR_PATHS = frozenset({"/metrics", "/api/v1/reprice"})
OPEN_PATHS = frozenset({"/healthz"})
# Probes cannot send secrets (a Kubernetes httpGet probe has only static headers), so
# /readyz answers without a key too, but then says only "ready" or "not ready".
STATUS_ONLY_PATHS = frozenset({"/readyz"})
_PROJECT = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class KeyConfigError(ValueError):
    """The key configuration cannot be used; the message never contains a key."""


@dataclass(frozen=True)
class Principal:
    project: str
    scopes: frozenset[str]
    key_id: str  # first hex digits of the key's digest: safe to log, useless to an attacker

    def may(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    principal: Principal


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _entry(key: str | None, sha256: str | None, project: str, scopes: Iterable[str], where: str) -> _Entry:
    if not _PROJECT.match(project or ""):
        raise KeyConfigError(f"{where}: project {project!r} must be 1-64 of A-Z a-z 0-9 _ . -")
    scope_set = frozenset(s.strip().lower() for s in scopes if s.strip()) or SCOPES
    unknown = scope_set - KNOWN_SCOPES
    if unknown:
        raise KeyConfigError(f"{where}: unknown scopes {sorted(unknown)}; use ingest, read, operator")
    if sha256 is not None:
        try:
            digest = bytes.fromhex(sha256)
        except ValueError:
            raise KeyConfigError(f"{where}: sha256 digest must be 64 hex digits") from None
        if len(digest) != 32:
            raise KeyConfigError(f"{where}: sha256 digest must be 64 hex digits")
    else:
        if not key or len(key) < 8 or any(c.isspace() for c in key):
            raise KeyConfigError(f"{where}: a key must be at least 8 characters without spaces")
        digest = _digest(key)
    return _Entry(digest, Principal(project, scope_set, digest.hex()[:8]))


def parse_lines(text: str, source: str) -> list[_Entry]:
    """Parse ``KEY=PROJECT[:scope+scope]`` entries separated by commas or newlines."""
    out = []
    n = 0
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        for item in line.split(","):
            item = item.strip()
            if not item:
                continue
            n += 1
            where = f"{source} entry {n}"
            key, sep, rest = item.rpartition("=")
            if not sep or not key:
                raise KeyConfigError(f"{where}: expected KEY=PROJECT or KEY=PROJECT:ingest+read")
            project, _, scopes = rest.partition(":")
            sha = key[len("sha256:"):] if key.startswith("sha256:") else None
            out.append(_entry(None if sha else key, sha, project.strip(), re.split(r"[+|; ]", scopes), where))
    return out


def parse_json(text: str, source: str) -> list[_Entry]:
    try:
        doc: Any = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise KeyConfigError(f"{source}: not valid JSON ({exc.msg})") from None
    if isinstance(doc, dict):
        doc = doc.get("keys", [])
    if not isinstance(doc, list):
        raise KeyConfigError(f"{source}: expected a list of keys or {{\"keys\": [...]}}")
    out = []
    for i, item in enumerate(doc, 1):
        where = f"{source} entry {i}"
        if not isinstance(item, dict):
            raise KeyConfigError(f"{where}: expected an object")
        scopes = item.get("scopes") or list(SCOPES)
        if isinstance(scopes, str):
            scopes = re.split(r"[+|,; ]", scopes)
        out.append(_entry(item.get("key"), item.get("sha256"), str(item.get("project", "")), scopes, where))
    return out


class KeyStore:
    """The configured keys. Empty means auth is off (and the collector binds to loopback)."""

    def __init__(self, entries: Iterable[_Entry] = ()) -> None:
        self._entries = tuple(entries)
        if len({e.digest for e in self._entries}) != len(self._entries):
            raise KeyConfigError("the same API key is configured twice")

    @classmethod
    def load(cls, env_value: str | None = None, file: str | None = None) -> KeyStore:
        entries: list[_Entry] = []
        if env_value and env_value.strip():
            entries += parse_lines(env_value, "FLOWSCOPE_API_KEYS")
        if file:
            path = Path(file)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise KeyConfigError(f"cannot read keys file {file}: {exc.strerror}") from None
            entries += parse_json(text, str(path)) if path.suffix == ".json" else parse_lines(text, str(path))
        return cls(entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def ingest_projects(self) -> frozenset[str]:
        """The projects keys may send spans to (an operator key's project is only a label)."""
        return frozenset(e.principal.project for e in self._entries if e.principal.may(INGEST))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"KeyStore({len(self._entries)} keys, projects={sorted(self.projects())})"

    def projects(self) -> set[str]:
        return {e.principal.project for e in self._entries}

    def authenticate(self, presented: str | None) -> Principal | None:
        """The principal for a key, or None. Every configured key is compared, in constant time."""
        if not presented:
            return None
        digest = _digest(presented)
        found: Principal | None = None
        for e in self._entries:
            if hmac.compare_digest(digest, e.digest):
                found = e.principal
        return found


def key_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """``Authorization: Bearer KEY`` (as OTLP exporters send it) or ``x-api-key: KEY``."""
    bearer = api_key = None
    for name, value in headers:
        lname = name.lower()
        if lname == b"authorization":
            scheme, _, cred = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and cred.strip():
                bearer = cred.strip()
        elif lname == b"x-api-key":
            api_key = value.decode("latin-1").strip() or None
    return bearer or api_key


def scope_for(method: str, path: str) -> str:
    if path.rstrip("/") in ("/v1/traces", "/v1/metrics") or path.startswith("/opentelemetry.proto.collector."):
        return INGEST
    if path.rstrip("/") in OPERATOR_PATHS:
        return OPERATOR
    return READ


class AuthMiddleware:
    """ASGI middleware: with keys configured, every route but /healthz needs one.

    It sets ``request.state.project`` (read by :func:`deps.project_of`), so every
    query below is scoped to the caller's project without the routes knowing
    about keys.
    """

    def __init__(self, app: Any, keys: KeyStore) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or not self.keys or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        principal = self.keys.authenticate(key_from_headers(scope.get("headers", ())))
        needed = scope_for(scope.get("method", "GET"), scope["path"])
        if principal is None and scope["path"] in STATUS_ONLY_PATHS:
            await self.app(scope, receive, _status_only(send))
            return
        if principal is None:
            await _deny(send, 401, "missing or unknown API key: send 'Authorization: Bearer <key>' or "
                                   "'x-api-key: <key>'", {"www-authenticate": 'Bearer realm="flowscope"'})
            return
        if not principal.may(needed):
            await _deny(send, 403, f"this API key (id {principal.key_id}) has no {needed!r} scope for "
                                   f"{scope['path']}; use a key with scope {needed}")
            return
        state = scope.setdefault("state", {})
        state["project"] = principal.project
        state["principal"] = principal
        await self.app(scope, receive, send)


def _status_only(send: Any) -> Any:
    """Forward a JSON response as just its status code and ``{"status": …}``."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        try:
            status = json.loads(b"".join(chunks)).get("status")
        except (ValueError, AttributeError):
            status = None
        body = json.dumps({"status": status if isinstance(status, str) else "unknown"}).encode()
        await send({"type": "http.response.start", "status": start.get("status", 200),
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return wrapped


async def _deny(send: Any, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": message, "status": status}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: KeyStore, insecure: bool) -> str:
    """Refuse to serve an open collector beyond this machine; say what is being served.

    Returns the start-up line to print; raises KeyConfigError when binding
    ``host`` without keys would expose every project's data.
    """
    if keys:
        return f"API keys required: {len(keys)} keys for projects {', '.join(sorted(keys.projects()))}"
    if is_loopback(host):
        return (f"no API keys configured: listening on {host} only, and anyone on this machine can send and "
                "read spans (set FLOWSCOPE_API_KEYS to require keys)")
    if insecure:
        logger.warning("no API keys configured and --insecure given: anyone who can reach %s can read and "
                       "write every span", host)
        return f"INSECURE: no API keys and listening on {host}; anyone who reaches it can read and write"
    raise KeyConfigError(
        f"refusing to listen on {host} without API keys: set FLOWSCOPE_API_KEYS (or --api-keys-file), "
        "or pass --insecure if something else in front of the collector authenticates"
    )
