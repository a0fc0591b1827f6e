"""``flowscope``: the command line for people (tables) and scripts (``--json``).

    flowscope runs list --flow checkout-flow --since 24h
    flowscope runs show RUN_ID
    flowscope runs state RUN_ID --at 3
    flowscope runs tail RUN_ID
    flowscope costs --by model --since 7d

The collector is ``--url`` (or ``FLOWSCOPE_URL``, default http://127.0.0.1:4318);
``--api-key`` (or ``FLOWSCOPE_API_KEY``) where it wants one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, TextIO

from .core.pricing.usage import format_usd


def _print_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, indent=2, default=_json_default, ensure_ascii=False) + "\n")


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return _plain(value)
    return str(value)


def _plain(value: Any) -> str:
    """Money as plain decimal text ("0.00000004", never "4E-8")."""
    if not isinstance(value, Decimal):
        try:
            value = Decimal(str(value))
        except ArithmeticError:
            return str(value)
    return format_usd(value) or "0"


def _usd(value: Any, unpriced: int = 0, calls: int | None = None) -> str:
    """A cost for people: ``unpriced`` when nothing in it has a price, never ``$0``; a sum that
    leaves unpriced calls out says so (``$0.0012 + 2 unpriced``)."""
    if value is None or (unpriced and calls is not None and unpriced >= calls):
        return "unpriced"
    text = f"${_plain(value)}"
    return f"{text} + {unpriced} unpriced" if unpriced else text


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], out: TextIO) -> None:
    """A plain aligned table: numbers right, text left, money with a dollar sign."""
    if not rows:
        out.write("(none)\n")
        return
    cells = [[_row_cell(r, key) for key, _ in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(columns)]
    numeric = [all(_is_num(r.get(key)) for r in rows) for key, _ in columns]
    out.write("  ".join(h.rjust(w) if n else h.ljust(w) for (_, h), w, n in zip(columns, widths, numeric)).rstrip()
              + "\n")
    for row in cells:
        out.write("  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(row, widths, numeric)).rstrip()
                  + "\n")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


def _row_cell(row: dict[str, Any], key: str) -> str:
    if key == "cost_usd" and "unpriced_calls" in row:
        return _usd(row.get(key), int(row.get("unpriced_calls") or 0), row.get("llm_calls"))
    return _cell(row.get(key), key)


def _cell(v: Any, key: str) -> str:
    if key.endswith("_usd"):
        return _usd(v)
    if v is None:
        return "-"
    if key == "start" and isinstance(v, str):
        return v.replace("T", " ")[:23]
    if isinstance(v, float):
        return f"{v:,.1f}"
    return str(v)


RUN_COLUMNS = (("run_id", "RUN"), ("flow", "FLOW"), ("service", "SERVICE"), ("status", "STATUS"),
               ("start", "START (UTC)"), ("duration_ms", "MS"), ("llm_calls", "LLM"), ("input_tokens", "IN"),
               ("output_tokens", "OUT"), ("cost_usd", "COST"))
NODE_COLUMNS = (("step", "STEP"), ("name", "NODE"), ("type", "TYPE"), ("attempt", "TRY"), ("status", "STATUS"),
                ("duration_ms", "MS"), ("llm_calls", "LLM"), ("input_tokens", "IN"), ("output_tokens", "OUT"),
                ("cost_usd", "COST"), ("branch", "BRANCH"), ("error", "ERROR"))
COST_COLUMNS = (("key", "GROUP"), ("provider", "PROVIDER"), ("llm_calls", "CALLS"), ("input_tokens", "IN"),
                ("cached_input_tokens", "CACHED"), ("output_tokens", "OUT"), ("unpriced_calls", "UNPRICED"),
                ("cost_usd", "COST"))


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="collector URL (env FLOWSCOPE_URL; default http://127.0.0.1:4318)")
    common.add_argument("--api-key", help="API key (env FLOWSCOPE_API_KEY)")
    common.add_argument("--json", action="store_true", help="print JSON instead of tables")

    parser = argparse.ArgumentParser(prog="flowscope", description="Tracing and cost for LLM and agent flows.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a demo flow through an embedded collector and print its summary")
    demo.add_argument("--dsn", help="ClickHouse DSN (default chdb:///./flowscope-data)")
    demo.add_argument("--port", type=int, help="collector port (default 4318, or a free one)")
    demo.add_argument("--serve", action="store_true", help="keep the collector running afterwards")

    runs = sub.add_parser("runs", help="list and inspect runs").add_subparsers(dest="runs_command", required=True)
    ls = runs.add_parser("list", parents=[common], help="runs, newest first")
    ls.add_argument("--service")
    ls.add_argument("--flow")
    ls.add_argument("--status", choices=("ok", "error", "running"))
    ls.add_argument("--since", help="ISO 8601 time or a span back from now: 90m, 24h, 7d")
    ls.add_argument("--until", help="ISO 8601 time or a span back from now")
    ls.add_argument("--min-cost", help="only runs that cost at least this many USD")
    ls.add_argument("--sort", choices=("start", "cost", "duration"), default="start")
    ls.add_argument("--asc", action="store_true", help="ascending order")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--cursor", help="next page (printed after a full page)")
    show = runs.add_parser("show", parents=[common], help="a run's summary and its nodes")
    show.add_argument("run_id")
    state = runs.add_parser("state", parents=[common], help="a run's state after a step (time travel)")
    state.add_argument("run_id")
    state.add_argument("--at", type=int, required=True, help="step (-1: the run's input)")
    state.add_argument("--diff-from", type=int, help="show what changed since this step instead")
    tail = runs.add_parser("tail", parents=[common], help="follow a run live (history first)")
    tail.add_argument("run_id")
    tail.add_argument("--wait", type=float, default=30, help="seconds to wait for the run to appear")
    graph = runs.add_parser("graph", parents=[common], help="the run's path as Mermaid or DOT")
    graph.add_argument("run_id")
    graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    cmp_ = runs.add_parser("compare", parents=[common], help="two runs side by side")
    cmp_.add_argument("a")
    cmp_.add_argument("b")

    costs = sub.add_parser("costs", parents=[common], help="cost and tokens, grouped")
    costs.add_argument("--by", default="model",
                       help="model, provider, service, flow, node, day or attr:KEY (default model)")
    costs.add_argument("--since", help="ISO 8601 time or a span back from now: 90m, 24h, 7d")
    costs.add_argument("--until")
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    if args.command == "demo":
        from .demo import main as demo_main

        return demo_main(dsn=args.dsn, port=args.port, serve=args.serve)

    from .client import Client, FlowscopeError

    try:
        with Client(args.url, args.api_key) as client:
            return _run(args, client, out)
    except FlowscopeError as exc:
        sys.stderr.write(f"flowscope: {exc.message}\n")
        return 1
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace, client: Any, out: TextIO) -> int:
    if args.command == "costs":
        rows = client.costs(args.by, since=args.since, until=args.until)
        if args.json:
            _print_json({**rows.meta, "groups": list(rows)}, out)
            return 0
        table(rows, COST_COLUMNS if args.by == "model" else [c for c in COST_COLUMNS if c[0] != "provider"], out)
        unpriced = int(rows.meta.get("unpriced_calls", sum(int(r.get("unpriced_calls") or 0) for r in rows)))
        note = f" ({unpriced} unpriced, not in the total)" if unpriced else ""
        out.write(f"\ntotal {_usd(rows.total_usd)} over {rows.llm_calls} LLM calls{note}\n")
        return 0
    cmd = args.runs_command
    if cmd == "list":
        page = client.runs(service=args.service, flow=args.flow, status=args.status, since=args.since,
                           until=args.until, min_cost=args.min_cost, sort=args.sort,
                           order="asc" if args.asc else "desc", limit=args.limit, cursor=args.cursor)
        if args.json:
            _print_json({"runs": list(page), "next_cursor": page.next_cursor}, out)
            return 0
        table(page, RUN_COLUMNS, out)
        if page.next_cursor:
            out.write(f"\nmore: flowscope runs list --cursor {page.next_cursor} (same filters)\n")
        return 0
    if cmd == "show":
        summary = client.run(args.run_id)
        nodes = client.nodes(args.run_id)
        if args.json:
            _print_json({**summary, "nodes": list(nodes)}, out)
            return 0
        s = summary
        out.write(f"run {s['run_id']}  {s['flow']} ({s['service']})  {s['status'].upper()}\n")
        out.write(f"  started {s['start']}, {s['duration_ms']:,.1f} ms, {s['spans']} spans\n")
        out.write(f"  {s['llm_calls']} LLM calls, {s['input_tokens']} in ({s['cached_input_tokens']} cached) / "
                  f"{s['output_tokens']} out ({s['reasoning_tokens']} reasoning) tokens\n")
        partial = int(s.get("partially_priced_calls") or 0)
        out.write(f"  cost {_usd(s['cost_usd'], s['unpriced_calls'], s['llm_calls'] or None)}"
                  f"{f' ({partial} partially priced: a lower bound)' if partial else ''}  "
                  f"(cache saved {_usd(s['cache_saved_usd'])}; {s['unpriced_calls']} unpriced, "
                  f"{s['errors']} errors, {s['retries']} retries, {s['fallbacks']} fallbacks)\n\n")
        table(nodes, NODE_COLUMNS, out)
        if s.get("by_model"):
            out.write("\n")
            table(s["by_model"], (("provider", "PROVIDER"), ("model", "MODEL"), ("llm_calls", "CALLS"),
                                  ("input_tokens", "IN"), ("output_tokens", "OUT"), ("cost_usd", "COST")), out)
        return 0
    if cmd == "state":
        if args.diff_from is not None:
            _print_json(client.state_diff(args.run_id, args.diff_from, args.at), out)
        else:
            _print_json(client.state(args.run_id, args.at), out)
        return 0
    if cmd == "graph":
        out.write(client.graph(args.run_id, args.format))
        return 0
    if cmd == "compare":
        c = client.compare(args.a, args.b)
        if args.json:
            _print_json(c, out)
            return 0
        for side in ("a", "b"):
            r = c[side]
            out.write(f"{side}: {r['run_id']}  {r['status']}  {_usd(r['cost_usd'])}  {r['duration_ms']:,.1f} ms  "
                      f"{' > '.join(r['path'])}\n")
        out.write(f"cost b-a: {_usd(c['cost_delta_usd'])}   latency b-a: {c['duration_delta_ms']:,.1f} ms   "
                  f"same path: {'yes' if c['same_path'] else 'no'}\n")
        div = c["first_state_divergence"]
        if div is None:
            out.write("states never diverge\n")
        else:
            out.write(f"states diverge after step {div['step']} ({div['node_a']} / {div['node_b']}):\n")
            _print_json({k: div[k] for k in ("added", "removed", "changed")}, out)
        return 0
    if cmd == "tail":
        for ev in client.stream(args.run_id, wait=args.wait):
            if args.json:
                out.write(json.dumps(ev, default=str) + "\n")
            else:
                out.write(_event_line(ev) + "\n")
            out.flush()
        return 0
    return 2


def _event_line(ev: dict[str, Any]) -> str:
    kind = ev["event"]
    if kind == "node_start":
        return f"▶ {ev['step']:>3} {ev['name']}"
    if kind == "node_end":
        mark = "✗" if ev["status"] == "error" else "✓"
        extra = f"  → {ev['branch']}" if ev.get("branch") else ""
        err = f"  {ev['error']}" if ev.get("error") else ""
        return f"{mark} {ev['step']:>3} {ev['name']}  {ev['duration_ms']:,.1f} ms{extra}{err}"
    if kind == "llm_call":
        return (f"    llm {ev['model']}  {ev['input_tokens']} in / {ev['output_tokens']} out  {_usd(ev['cost_usd'])}  "
                f"{ev['duration_ms']:,.1f} ms")
    if kind == "tool_call":
        return f"    tool {ev['name']}  {ev['duration_ms']:,.1f} ms"
    if kind == "state":
        value = json.dumps(ev.get("value"), default=str)
        return f"    state {ev['op']} {ev['path'] or '(all)'} = {value[:80]}"
    if kind == "summary":
        return (f"■ {ev['status'].upper()}  {ev['duration_ms']:,.1f} ms  {ev['llm_calls']} LLM calls  "
                f"{_usd(ev['cost_usd'], ev.get('unpriced_calls') or 0)}")
    return f"  {kind}: {ev.get('message', '')}"


if __name__ == "__main__":
    sys.exit(main())
