"""``flowscope``: the command line for people (tables) and scripts (``--json``)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowscope", description="Tracing and cost for LLM and agent flows.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a demo flow through an embedded collector and print its summary")
    demo.add_argument("--dsn", help="ClickHouse DSN (default chdb:///./flowscope-data)")
    demo.add_argument("--port", type=int, help="collector port (default 4318, or a free one)")
    demo.add_argument("--serve", action="store_true", help="keep the collector running afterwards")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo_main

        return demo_main(dsn=args.dsn, port=args.port, serve=args.serve)
    return 2


if __name__ == "__main__":
    sys.exit(main())
