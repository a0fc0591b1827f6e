"""``flowscope-collector``: serve, or just apply the schema."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import uvicorn

from flowscope.core.pricing import PricingFileError, get_catalog

from .server.app import create_app
from .server.auth import KeyConfigError, KeyStore, check_bind
from .service import Collector
from .settings import CollectorSettings


def _settings(args: argparse.Namespace) -> CollectorSettings:
    return CollectorSettings.from_env(
        host=args.host, port=args.port, dsn=args.dsn, cluster=args.cluster, ttl_days=args.retention_days,
        sharded=False if args.no_sharding else None,
        wal_dir=args.wal_dir, api_keys_file=args.api_keys_file, insecure=args.insecure or None,
        max_pending_spans=args.max_pending_spans,
        grpc_port=_grpc_port(args),
    )


def _grpc_port(args: argparse.Namespace) -> int | None:
    """``serve`` listens for OTLP/gRPC on 4317 unless told otherwise (0 or env "off" disables)."""
    if args.grpc_port is not None:
        return int(args.grpc_port)
    if args.command == "serve" and not os.environ.get("FLOWSCOPE_GRPC_PORT", "").strip():
        return 4317
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowscope-collector", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (("serve", "run the collector (OTLP/HTTP + API)"), ("migrate", "apply the schema and exit")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--dsn", help="ClickHouse DSN (env FLOWSCOPE_CLICKHOUSE_DSN; default chdb:///./flowscope-data)")
        p.add_argument("--cluster", help="ClickHouse cluster name for ON CLUSTER / Replicated tables")
        p.add_argument("--no-sharding", action="store_true",
                       help="with --cluster: replicated tables only, no Distributed tables sharded by run")
        p.add_argument("--retention-days", type=int, help="drop spans older than this (TTL)")
        p.add_argument("--host", help="bind address (default 127.0.0.1)")
        p.add_argument("--port", type=int, help="port (default 4318)")
        p.add_argument("--log-level", default="info")
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings(args)
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
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level.lower(),
                timeout_graceful_shutdown=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
