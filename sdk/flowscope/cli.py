"""``flowscope``: the command line for people (tables) and scripts (``--json``).

    flowscope runs list --flow checkout-flow --since 24h
    flowscope runs show RUN_ID
    flowscope runs state RUN_ID --at 3
    flowscope runs tail RUN_ID
    flowscope runs replay RUN_ID --from-step 3 --app myflows:graph [--llm recorded-only] [--set path=json]
    flowscope costs --by model --since 7d

The collector is ``--url`` (or ``FLOWSCOPE_URL``, default http://127.0.0.1:4318);
``--api-key`` (or ``FLOWSCOPE_API_KEY``) where it wants one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import unicodedata
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
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


def _usd(value: Any, unpriced: int = 0, calls: int | None = None, partial: int = 0) -> str:
    """A cost for people: ``unpriced`` when nothing in it has a price, never ``$0``; a sum that
    leaves unpriced calls out says so (``$0.0012 + 2 unpriced``), and one that includes calls
    priced but for a part (a lower bound) says that too (``$0.0012 (1 partial)``)."""
    if value is None or (unpriced and calls is not None and unpriced >= calls):
        return "unpriced"
    text = f"${_plain(value)}"
    if unpriced:
        text = f"{text} + {unpriced} unpriced"
    return f"{text} ({partial} partial)" if partial else text


def plural(n: int, singular: str, plural_: str | None = None) -> str:
    """``1 LLM call``, ``2 LLM calls``: counts read as a person would write them."""
    return f"{n} {singular if n == 1 else plural_ or singular + 's'}"


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: CJK and other wide characters take two, combining marks none.

    ``len()`` counts code points, so a table padded by it drifts one column per wide
    character (a node named 检索文档 pushed every later column of its row four to the right).
    """
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], out: TextIO) -> None:
    """A plain aligned table: numbers right, text left, money with a dollar sign."""
    if not rows:
        out.write("(none)\n")
        return
    cells = [[_row_cell(r, key) for key, _ in columns] for r in rows]
    widths = [max(display_width(h), *(display_width(c[i]) for c in cells)) for i, (_, h) in enumerate(columns)]
    numeric = [all(_is_num(r.get(key)) for r in rows) for key, _ in columns]
    out.write("  ".join(_pad(h, w, n) for (_, h), w, n in zip(columns, widths, numeric)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(_pad(c, w, n) for c, w, n in zip(row, widths, numeric)).rstrip() + "\n")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


def _row_cell(row: dict[str, Any], key: str) -> str:
    if key == "cost_usd" and "unpriced_calls" in row:
        return _usd(row.get(key), int(row.get("unpriced_calls") or 0), row.get("llm_calls"),
                    int(row.get("partially_priced_calls") or 0))
    return _cell(row.get(key), key)


def _cell(v: Any, key: str) -> str:
    if key.endswith("_usd"):
        return _usd(v)
    if v is None:
        return "-"
    if key == "error_message" and isinstance(v, str):
        return v if len(v) <= 100 else v[:99] + "…"  # the whole message is in --json
    if key == "start" and isinstance(v, str):
        return v.replace("T", " ")[:23]
    if isinstance(v, float):
        return f"{v:,.1f}"
    return printable(str(v))


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes: values from spans are data, and an
    escape sequence in a run attribute or a node name must not drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


RUN_COLUMNS = (("run_id", "RUN"), ("flow", "FLOW"), ("service", "SERVICE"), ("status", "STATUS"),
               ("start", "START (UTC)"), ("duration_ms", "MS"), ("llm_calls", "LLM"), ("input_tokens", "IN"),
               ("output_tokens", "OUT"), ("cost_usd", "COST"))
NODE_COLUMNS = (("step", "STEP"), ("name", "NODE"), ("type", "TYPE"), ("attempt", "TRY"), ("status", "STATUS"),
                ("duration_ms", "MS"), ("llm_calls", "LLM"), ("input_tokens", "IN"), ("output_tokens", "OUT"),
                ("cost_usd", "COST"), ("branch", "BRANCH"), ("error_message", "ERROR"))
COST_COLUMNS = (("key", "GROUP"), ("provider", "PROVIDER"), ("llm_calls", "CALLS"), ("input_tokens", "IN"),
                ("cached_input_tokens", "CACHED"), ("output_tokens", "OUT"), ("unpriced_calls", "UNPRICED"),
                ("cost_usd", "COST"))


WHO_COLUMNS = (("user_id", "USER"), ("session_id", "SESSION"), ("tenant", "TENANT"))


def _run_columns(runs: Sequence[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    """The runs table's columns: USER, SESSION and TENANT after SERVICE where any run on the page has one."""
    who = tuple(c for c in WHO_COLUMNS if any(r.get(c[0]) for r in runs))
    return RUN_COLUMNS[:3] + who + RUN_COLUMNS[3:]


def _node_columns(nodes: Sequence[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    """The node table's columns: LangGraph's SUPERSTEP after TYPE where a node has one."""
    if not any(n.get("superstep") is not None for n in nodes):
        return NODE_COLUMNS
    return (*NODE_COLUMNS[:3], ("superstep", "SUPERSTEP"), *NODE_COLUMNS[3:])


def _who_line(summary: dict[str, Any]) -> str:
    """``for user u-42, session s-1, tenant acme; plan=pro``: who the run was for, from its run attributes."""
    named = [f"{label} {summary[key]}" for key, label in (("user_id", "user"), ("session_id", "session"),
                                                            ("tenant", "tenant")) if summary.get(key)]
    rest = [f"{k}={v}" for k, v in (summary.get("attributes") or {}).items()
            if k not in ("user_id", "session_id", "tenant")]
    text = ", ".join(named)
    if rest:
        text = f"{text}; {' '.join(rest)}" if text else " ".join(rest)
    return printable(f"for {text}") if text else ""


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
    ls.add_argument("--attr", action="append", metavar="NAME:VALUE",
                    help="only runs with this run attribute (repeatable), e.g. --attr tenant:acme")
    ls.add_argument("--sort", choices=("start", "cost", "duration"), default="start")
    ls.add_argument("--asc", action="store_true", help="ascending order")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--cursor", help="next page (printed after a full page)")
    show = runs.add_parser("show", parents=[common], help="a run's summary and its nodes")
    show.add_argument("run_id")
    state = runs.add_parser("state", parents=[common],
                            help="a run's state after a step (time travel); without --at, its steps")
    state.add_argument("run_id")
    state.add_argument("--at", type=int, help="step (-1: the run's input); leave out to list the steps")
    state.add_argument("--diff-from", type=int, help="show what changed since this step instead")
    tail = runs.add_parser("tail", parents=[common], help="follow a run live (history first)")
    tail.add_argument("run_id")
    tail.add_argument("--wait", type=float, default=0,
                      help="seconds to wait for a run that has not started yet (default 0: an unknown run "
                           "fails at once)")
    graph = runs.add_parser("graph", parents=[common], help="the run's path as Mermaid or DOT")
    graph.add_argument("run_id")
    graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    cmp_ = runs.add_parser("compare", parents=[common], help="two runs side by side")
    cmp_.add_argument("a")
    cmp_.add_argument("b")

    rp = runs.add_parser("replay", parents=[common],
                         help="rerun a stored run from a step in your flow, with its state and LLM answers")
    rp.add_argument("run_id")
    rp.add_argument("--from-step", type=int, required=True, help="continue after this step (its state is restored)")
    rp.add_argument("--app", required=True, metavar="MODULE:ATTR",
                    help="your flow: a compiled LangGraph graph, a PocketFlow Flow, or a resume(state, step, "
                         "next_node) function, importable from the current directory")
    rp.add_argument("--llm", choices=("recorded", "live", "recorded-only"), default="recorded",
                    help="recorded (default): unchanged requests get the recorded answer at $0, others go live; "
                         "recorded-only: others fail; live: every request goes to the provider")
    rp.add_argument("--set", action="append", default=[], metavar="PATH=JSON",
                    help="put a value over the recorded state (repeatable), e.g. --set 'retries=0'")

    costs = sub.add_parser("costs", parents=[common], help="cost and tokens, grouped")
    costs.add_argument("--by", default="model",
                       help="model, provider, service, flow, node, day or attr:KEY (default model)")
    costs.add_argument("--since", help="ISO 8601 time or a span back from now: 90m, 24h, 7d")
    costs.add_argument("--until")
    costs.add_argument("--pricing", default="stored", metavar="stored|current|FILE",
                       help="stored (default): the costs as stored; current: every call priced again under the "
                            "collector's catalog now; FILE: under the bundled catalog plus this pricing file. "
                            "Writes nothing: shows what `flowscope-collector reprice` would store")
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
            code = _run(args, client, out)
            out.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
            return code
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as the Python docs advise, and
        # point stdout at devnull so the interpreter's final flush cannot fail again.
        if out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    except FlowscopeError as exc:
        sys.stderr.write(f"flowscope: {_cli_hint(exc, args)}\n")
        return 1
    except KeyboardInterrupt:
        return 130


def _attrs(raw: list[str] | None) -> dict[str, str] | None:
    if not raw:
        return None
    pairs = [a.partition(":") for a in raw]
    bad = [a for a, (_, sep, _v) in zip(raw, pairs) if not sep]
    if bad:
        raise SystemExit(f"flowscope: --attr {bad[0]!r}: use NAME:VALUE, e.g. --attr tenant:acme")
    return {k.strip(): v for k, _, v in pairs}


def _cli_hint(exc: Any, args: argparse.Namespace) -> str:
    """The collector's message, with the command to run instead of the HTTP route it names."""
    if exc.status == 404 and exc.message.startswith("no run"):
        run_id = getattr(args, "run_id", None) or exc.message.split()[2]
        return f"no run {run_id}; `flowscope runs list` shows the runs there are"
    return str(exc.message).replace("GET /api/v1/runs", "`flowscope runs list`")


def _run(args: argparse.Namespace, client: Any, out: TextIO) -> int:
    if args.command == "costs":
        pricing: Any = args.pricing
        if pricing not in ("stored", "current"):
            try:
                pricing = json.loads(Path(pricing).read_text())
            except (OSError, ValueError) as exc:
                sys.stderr.write(f"flowscope: pricing file {printable(args.pricing)}: {exc}\n")
                return 2
        rows = client.costs(args.by, since=args.since, until=args.until, pricing=pricing)
        if args.json:
            _print_json({**rows.meta, "groups": list(rows)}, out)
            return 0
        table(rows, COST_COLUMNS if args.by == "model" else [c for c in COST_COLUMNS if c[0] != "provider"], out)
        unpriced = int(rows.meta.get("unpriced_calls", sum(int(r.get("unpriced_calls") or 0) for r in rows)))
        partial = int(rows.meta.get("partially_priced_calls",
                                    sum(int(r.get("partially_priced_calls") or 0) for r in rows)))
        note = f" ({unpriced} unpriced, not in the total)" if unpriced else ""
        if partial:
            note += f" ({partial} partially priced: the total is a lower bound)"
        out.write(f"\ntotal {_usd(rows.total_usd)} over {plural(rows.llm_calls, 'LLM call')}{note}\n")
        if rows.meta.get("pricing_version"):
            out.write(f"priced again under {printable(str(rows.meta['pricing_version']))}; nothing was written\n")
        return 0
    cmd = args.runs_command
    if cmd == "list":
        page = client.runs(service=args.service, flow=args.flow, status=args.status, since=args.since,
                           until=args.until, min_cost=args.min_cost, sort=args.sort,
                           order="asc" if args.asc else "desc", limit=args.limit, cursor=args.cursor,
                           attrs=_attrs(args.attr))
        if args.json:
            _print_json({"runs": list(page), "next_cursor": page.next_cursor}, out)
            return 0
        table(page, _run_columns(page), out)
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
        if s.get("forked_from"):
            out.write(f"  forked from {s['forked_from']} at step {s['forked_at_step']}\n")
        out.write(f"  started {s['start']}, {s['duration_ms']:,.1f} ms, {plural(s['spans'], 'span')}\n")
        out.write(f"  {plural(s['llm_calls'], 'LLM call')}, {s['input_tokens']} in ({s['cached_input_tokens']} cached) / "
                  f"{s['output_tokens']} out ({s['reasoning_tokens']} reasoning) tokens\n")
        partial = int(s.get("partially_priced_calls") or 0)
        out.write(f"  cost {_usd(s['cost_usd'], s['unpriced_calls'], s['llm_calls'] or None)}"
                  f"{f' ({partial} partially priced: a lower bound)' if partial else ''}  "
                  f"(cache saved {_usd(s['cache_saved_usd'])}; {s['unpriced_calls']} unpriced, "
                  f"{plural(s['errors'], 'error')}, {plural(s['retries'], 'retry', 'retries')}, "
                  f"{plural(s['fallbacks'], 'fallback')})\n")
        who = _who_line(s)
        if who:
            out.write(f"  {who}\n")
        out.write("\n")
        table(nodes, _node_columns(nodes), out)
        if s.get("by_model"):
            out.write("\n")
            table(s["by_model"], (("provider", "PROVIDER"), ("model", "MODEL"), ("llm_calls", "CALLS"),
                                  ("input_tokens", "IN"), ("output_tokens", "OUT"), ("cost_usd", "COST")), out)
        return 0
    if cmd == "state":
        if args.at is None:
            # the steps to choose from: the input, then every node execution
            nodes = client.nodes(args.run_id)
            rows = [{"step": -1, "name": "(input)", "type": "", "status": ""},
                    *({"step": n["step"], "name": n["name"], "type": n["type"], "status": n["status"]}
                      for n in nodes)]
            if args.json:
                _print_json({"run_id": args.run_id, "steps": rows}, out)
                return 0
            table(rows, (("step", "STEP"), ("name", "NODE"), ("type", "TYPE"), ("status", "STATUS")), out)
            out.write(f"\nflowscope runs state {args.run_id} --at STEP\n")
            return 0
        if args.diff_from is not None:
            _print_json(client.state_diff(args.run_id, args.diff_from, args.at), out)
            return 0
        answer = client.state_at(args.run_id, args.at)
        if args.json:
            _print_json(answer, out)
            return 0
        # which node the state is after, on stderr: stdout stays the state alone, for jq
        sys.stderr.write(f"state after step {answer['at']}" + (f" ({answer['node']})" if answer.get("node") else
                                                               " (the input)" if answer["at"] == -1 else "") + "\n")
        _print_json(answer["state"], out)
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
        fork = c.get("fork")
        if fork:
            where = f"diverged at step {fork['diverged_at_step']}" if fork["diverged_at_step"] is not None \
                else "did the same after it"
            out.write(f"{fork['child']} is a fork of {fork['parent']} after step {fork['at_step']}: {where}\n")
        div = c["first_state_divergence"]
        if div is None:
            out.write("states never diverge\n")
        else:
            out.write(f"states diverge after step {div['step']} ({div['node_a']} / {div['node_b']}):\n")
            _print_json({k: div[k] for k in ("added", "removed", "changed")}, out)
        return 0
    if cmd == "replay":
        return _replay(args, client, out)
    if cmd == "tail":
        for ev in client.stream(args.run_id, wait=args.wait):
            if args.json:
                out.write(json.dumps(ev, default=str) + "\n")
            else:
                out.write(_event_line(ev) + "\n")
            out.flush()
        return 0
    return 2


def _load_app(spec: str) -> Any:
    """``module:attr`` (dots in attr walk attributes), imported with the current directory on the path."""
    import importlib

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"flowscope: --app {spec!r}: use MODULE:ATTR, e.g. --app myflows.support:graph")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"flowscope: --app {spec!r}: cannot import {module_name!r}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(value, part):
            raise SystemExit(f"flowscope: --app {spec!r}: {module_name!r} has no attribute {attr!r}")
        value = getattr(value, part)
    return value


def _replay(args: argparse.Namespace, client: Any, out: TextIO) -> int:
    """``runs replay``: trace to the same collector, continue the app after the step, say what happened."""
    from . import tracing
    from .replays import ReplayError, replay
    from .replays.fidelity import parse_assignment

    app = _load_app(args.app)
    try:
        overrides = dict(parse_assignment(a) for a in args.set)
        tracing.init(endpoint=client.url, api_key=args.api_key or os.environ.get("FLOWSCOPE_API_KEY"))
        try:
            result = replay(args.run_id, app, from_step=args.from_step, state=overrides, llm=args.llm, client=client)
        finally:
            tracing.force_flush()
    except ReplayError as exc:
        fork = getattr(exc, "flowscope_fork_run_id", None)
        sys.stderr.write(f"flowscope: {exc}\n" + (f"flowscope: the fork is run {fork}\n" if fork else ""))
        return 1
    except Exception as exc:  # the flow itself failed after the fork step: that is news, not a crash
        fork = getattr(exc, "flowscope_fork_run_id", None)
        sys.stderr.write(f"flowscope: the replayed flow raised {type(exc).__name__}: {exc}\n"
                         + (f"flowscope: the fork is run {fork}: flowscope runs show {fork}\n" if fork else ""))
        return 1
    summary = {"run_id": result.run_id, "forked_from": result.parent_run_id, "forked_at_step": result.from_step,
               "runtime": result.runtime, "recorded_calls": result.recorded_calls, "live_calls": result.live_calls,
               "unreplayable": [str(u) for u in result.unreplayable]}
    if args.json:
        _print_json(summary, out)
        return 0
    out.write(f"run {result.run_id}: fork of {result.parent_run_id} after step {result.from_step} ({result.runtime})\n")
    out.write(f"  {plural(result.recorded_calls, 'LLM call')} answered from the recording ($0), "
              f"{result.live_calls} sent to the provider\n")
    for item in result.unreplayable:
        out.write(f"  not replayable: {item}\n")
    out.write(f"\nflowscope runs compare {result.parent_run_id} {result.run_id}\n")
    return 0


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
        return (f"■ {ev['status'].upper()}  {ev['duration_ms']:,.1f} ms  {plural(ev['llm_calls'], 'LLM call')}  "
                f"{_usd(ev['cost_usd'], ev.get('unpriced_calls') or 0)}")
    return f"  {kind}: {ev.get('message', '')}"


if __name__ == "__main__":
    sys.exit(main())
