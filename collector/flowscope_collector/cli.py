"""``flowscope-collector``: serve, apply the schema, reprice stored spans, or replay the quarantine."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.request

import uvicorn

from flowscope.core.pricing import PricingCatalog, PricingFileError, format_usd, get_catalog

from .buffer import quarantine
from .server.app import create_app
from .server.auth import KeyConfigError, KeyStore, check_bind
from .service import Collector, default_wal_dir
from .settings import CollectorSettings
from .store.connection import DEFAULT_DSN, DirectoryInUse, check_embedded_free, parse_dsn
from .store.queries import parse_when
from .store.reprice import reprice


def _settings(args: argparse.Namespace) -> CollectorSettings:
    serve = args.command == "serve"  # migrate has none of the serving flags
    return CollectorSettings.from_env(
        host=args.host if serve else None, port=args.port if serve else None, dsn=args.dsn,
        cluster=args.cluster, ttl_days=args.retention_days, sharded=False if args.no_sharding else None,
        wal_dir=args.wal_dir if serve else None, api_keys_file=args.api_keys_file if serve else None,
        insecure=(args.insecure or None) if serve else None,
        max_pending_spans=args.max_pending_spans if serve else None,
        grpc_port=_grpc_port(args),
    )


def _grpc_port(args: argparse.Namespace) -> int | None:
    """``serve`` listens for OTLP/gRPC on 4317 unless told otherwise (0 or env "off" disables)."""
    if args.command != "serve":
        return None
    if args.grpc_port is not None:
        return int(args.grpc_port)
    if args.command == "serve" and not os.environ.get("FLOWSCOPE_GRPC_PORT", "").strip():
        return 4317
    return None


def _quarantine(args: argparse.Namespace) -> int:
    """List the quarantine, or send each entry to a running collector and move it aside once acknowledged.

    Replaying goes through a live collector (not straight into ClickHouse) so
    the request meets today's checks and limits, and the collector, which owns
    an embedded chDB, stays the only writer.
    """
    wal_dir = args.wal_dir or os.environ.get("FLOWSCOPE_WAL_DIR") or default_wal_dir(
        parse_dsn(args.dsn or os.environ.get("FLOWSCOPE_CLICKHOUSE_DSN") or DEFAULT_DSN))
    found = quarantine.entries(wal_dir)
    if args.action == "list":
        for e in found:
            print(f"{e.seq}\tproject={e.project}\tspans={e.spans}\t{e.path}\t{e.error}")
        print(f"{len(found)} requests, {sum(max(e.spans, 0) for e in found)} spans in {quarantine.directory(wal_dir)}",
              file=sys.stderr)
        return 0
    failed = 0
    headers = {"content-type": "application/x-protobuf"}
    if args.api_key:
        headers["authorization"] = f"Bearer {args.api_key}"
    for e in found:
        req = urllib.request.Request(args.url.rstrip("/") + "/v1/traces", data=e.path.read_bytes(),
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                r.read()
        except urllib.error.HTTPError as exc:
            print(f"{e.seq}: {exc.code} {exc.read()[:300]!r}; left in quarantine", file=sys.stderr)
            failed += 1
            continue
        except (urllib.error.URLError, OSError) as exc:
            print(f"{e.seq}: not sent ({exc}); left in quarantine", file=sys.stderr)
            failed += 1
            continue
        quarantine.mark_replayed(e)
        print(f"{e.seq}: replayed ({e.spans} spans)")
    return 1 if failed else 0


def _reprice(args: argparse.Namespace, settings: CollectorSettings) -> int:
    """Price stored spans again, straight in ClickHouse (an embedded chDB directory: with its collector stopped,
    or through the running collector's POST /api/v1/reprice)."""
    try:
        since = parse_when(args.since, "--since")
        until = parse_when(args.until, "--until") if args.until else None
        catalog = PricingCatalog(args.pricing) if args.pricing else get_catalog()
    except (PricingFileError, ValueError) as exc:
        print(f"flowscope-collector: {exc}", file=sys.stderr)
        return 2
    col = Collector(settings)
    col.migrate()
    assert col.client is not None
    report = reprice(col.client, col.schema, catalog, since=since, until=until, model=args.model,
                     project=args.project, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    verb = "would reprice" if args.dry_run else "repriced"
    print(f"{verb} {report.repriced} of {report.examined} LLM spans under {report.pricing_version} "
          f"({report.newly_priced} were unpriced); {report.unchanged} unchanged")
    if report.repriced:
        print(f"cost of those spans: ${format_usd(report.cost_before_usd)} -> ${format_usd(report.cost_after_usd)}")
        for model, n in sorted(report.models.items()):
            print(f"  {model or '(no model)'}: {n}")
    if report.unpriced:
        print(f"{report.unpriced} spans still unpriced (no price for their model in this catalog): left as they were")
    if report.invalid_usage:
        print(f"{report.invalid_usage} spans with self-contradicting usage: left as they were")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowscope-collector", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    # the flags both commands take; the serving ones are serve's alone, so `migrate --help`
    # lists only what migrate reads
    schema = argparse.ArgumentParser(add_help=False)
    schema.add_argument("--dsn", help="ClickHouse DSN (env FLOWSCOPE_CLICKHOUSE_DSN; default chdb:///./flowscope-data)")
    schema.add_argument("--cluster", help="ClickHouse cluster name for ON CLUSTER / Replicated tables")
    schema.add_argument("--no-sharding", action="store_true",
                        help="with --cluster: replicated tables only, no Distributed tables sharded by run")
    schema.add_argument("--retention-days", type=int, help="drop spans older than this (TTL)")
    schema.add_argument("--log-level", default="info")
    sub.add_parser("migrate", parents=[schema], help="apply the schema and exit")
    for p in (sub.add_parser("serve", parents=[schema], help="run the collector (OTLP/HTTP + API)"),):
        p.add_argument("--host", help="bind address (default 127.0.0.1)")
        p.add_argument("--port", type=int, help="port (default 4318)")
        p.add_argument("--wal-dir", help="write-ahead log directory (env FLOWSCOPE_WAL_DIR; default "
                                         "<chdb dir>/flowscope-wal or ./flowscope-wal)")
        p.add_argument("--api-keys-file", help="API keys file (env FLOWSCOPE_API_KEYS_FILE; keys also in "
                                               "FLOWSCOPE_API_KEYS)")
        p.add_argument("--insecure", action="store_true",
                       help="allow listening beyond loopback without API keys")
        p.add_argument("--grpc-port", type=int,
                       help="OTLP/gRPC port (env FLOWSCOPE_GRPC_PORT; default 4317 for serve; 0 disables)")
        p.add_argument("--max-pending-spans", type=int,
                       help="spans buffered for ClickHouse before answering 429 (env FLOWSCOPE_MAX_PENDING_SPANS)")
    r = sub.add_parser("reprice", parents=[schema],
                       help="price stored LLM spans again (a price added or corrected later fixes history)")
    r.add_argument("--since", required=True, help="spans that started from this time: ISO 8601 or 90m, 24h, 7d")
    r.add_argument("--until", help="and before this time (default: now)")
    r.add_argument("--model", help="only this model, as stored (a * glob allowed: 'gpt-4o*')")
    r.add_argument("--project", help="only this project (default: all)")
    r.add_argument("--pricing", help="override file to price with (default: env FLOWSCOPE_PRICING_FILE, "
                                     "else the catalog alone)")
    r.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    q = sub.add_parser("quarantine", help="list or replay acknowledged requests ClickHouse refused")
    q.add_argument("action", choices=("list", "replay"))
    q.add_argument("--wal-dir", help="write-ahead log directory (as for serve)")
    q.add_argument("--dsn", help="ClickHouse DSN, to find the default write-ahead log directory")
    q.add_argument("--url", default="http://127.0.0.1:4318", help="replay: the running collector to send to")
    q.add_argument("--api-key", default=os.environ.get("FLOWSCOPE_API_KEY"),
                   help="replay: an ingest key of the entry's project (env FLOWSCOPE_API_KEY); the key decides "
                        "the project, as for any export")
    args = parser.parse_args(argv)
    if args.command == "quarantine":
        return _quarantine(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings(args)
    try:
        # A DSN it cannot use, or a chDB directory another process holds: say so in one
        # line before anything starts, not in a traceback (or two) after.
        check_embedded_free(parse_dsn(settings.dsn))
    except ValueError as exc:
        print(f"flowscope-collector: {exc}", file=sys.stderr)
        return 2
    except DirectoryInUse as exc:
        hint = ("\n  to reprice without stopping it: POST /api/v1/reprice to it with an operator key "
                "(docs/usage.md)") if args.command == "reprice" else ""
        print(f"flowscope-collector: {exc}{hint}", file=sys.stderr)
        return 1
    if args.command == "reprice":
        return _reprice(args, settings)
    if args.command == "migrate":
        col = Collector(settings)
        col.migrate()  # schema only: leaves a running collector's write-ahead log alone
        print(f"schema at version {col.schema_version} in {col.target.redacted()}")
        return 0

    try:
        # The pricing file (FLOWSCOPE_PRICING_FILE) read now: a bad one stops the start, named, with the
        # reason, instead of pricing nothing.
        get_catalog()
    except PricingFileError as exc:
        print(f"flowscope-collector: {exc}", file=sys.stderr)
        return 2
    try:
        keys = KeyStore.load(settings.api_keys, settings.api_keys_file)
        print(check_bind(settings.host, keys, settings.insecure), file=sys.stderr)
    except KeyConfigError as exc:
        print(f"flowscope-collector: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings)
    print(f"flowscope collector on {settings.url}  (OTLP: {settings.url}/v1/traces, API: {settings.url}/docs)",
          file=sys.stderr)
    # An idle keep-alive connection is closed after idle_timeout_s; a body that trickles is cut off by
    # the OTLP route itself (body_timeout_s, body_idle_timeout_s: server/otlp_http.py).
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level.lower(),
                timeout_graceful_shutdown=10, timeout_keep_alive=max(1, round(settings.idle_timeout_s)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
