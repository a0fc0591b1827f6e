"""``flowscope-collector``: serve, or just apply the schema."""

from __future__ import annotations

import argparse
import logging
import sys

from .settings import CollectorSettings


def _settings(args: argparse.Namespace) -> CollectorSettings:
    return CollectorSettings.from_env(
        host=args.host, port=args.port, dsn=args.dsn, cluster=args.cluster, ttl_days=args.retention_days
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowscope-collector", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (("serve", "run the collector (OTLP/HTTP + API)"), ("migrate", "apply the schema and exit")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--dsn", help="ClickHouse DSN (env FLOWSCOPE_CLICKHOUSE_DSN; default chdb:///./flowscope-data)")
        p.add_argument("--cluster", help="ClickHouse cluster name for ON CLUSTER / Replicated tables")
        p.add_argument("--retention-days", type=int, help="drop spans older than this (TTL)")
        p.add_argument("--host", help="bind address (default 127.0.0.1)")
        p.add_argument("--port", type=int, help="port (default 4318)")
        p.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings(args)
    if args.command == "migrate":
        from .service import Collector

        col = Collector(settings)
        col.start()
        col.stop()
        print(f"schema at version {col.schema_version} in {col.target.redacted()}")
        return 0

    import uvicorn

    from .api import create_app

    app = create_app(settings)
    print(f"flowscope collector on {settings.url}  (OTLP: {settings.url}/v1/traces, API: {settings.url}/docs)",
          file=sys.stderr)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level.lower(),
                timeout_graceful_shutdown=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
