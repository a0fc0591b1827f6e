"""flowscope's per-call overhead next to the instrumentations users would pick instead.

Every contender runs in fresh processes (they patch the same classes, and some
cannot be undone). In each process the same real client makes calls to the
fake provider through an in-process transport: a warm-up, a block of
uninstrumented calls, then the contender is switched on, another warm-up and a
block of instrumented calls. The overhead is the difference of the two medians
in that process; the table shows the median over several processes. Spans
from every contender go through the same real BatchSpanProcessor to an
exporter that drops them, so the figures are what the calling thread pays.

On a shared machine two blocks a second apart can differ by more than the
overhead measured. ``--interleave`` instead switches a contender off and on
every 100 calls in the same process (after a short warm-up each time), so slow
spells hit both sides alike. Contenders that cannot be switched off cleanly
keep the block design: OpenLIT has no off switch, and OpenLLMetry's
``uninstrument`` leaves wrappers behind (switched back on, they stack, and its
"uninstrumented" calls ended up twice as slow as never-instrumented ones). A
row whose "off" calls are still clearly slower than the calls made before
anything was instrumented says so. The table says which design each row used.

Contenders need the ``bench`` extra (``pip install -e ".[bench]"``); a missing
one is reported as such, not skipped silently.

    python -m benchmarks.bench_competitors [--calls 1500] [--procs 3] [--client openai|anthropic] [--interleave]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

CONTENDERS = {
    "flowscope": "flowscope",
    "openllmetry": "opentelemetry-instrumentation-{client}",
    "openinference": "openinference-instrumentation-{client}",
    "openlit": "openlit",
}


# --- worker (runs in its own process) ---------------------------------------------------


def _tracer_provider(with_export: bool) -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from benchmarks.bench_sdk_overhead import DropExporter

    tp = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    if with_export:
        tp.add_span_processor(BatchSpanProcessor(DropExporter()))
    trace.set_tracer_provider(tp)
    return tp


def _instrument(name: str, client: str, tp: Any) -> None:
    if name == "flowscope":
        import flowscope
        from benchmarks.bench_sdk_overhead import DropExporter

        flowscope.init(exporter=DropExporter(), instrument=[client])
    elif name == "openllmetry":
        if client == "openai":
            from opentelemetry.instrumentation.openai import OpenAIInstrumentor as Inst
        else:
            from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor as Inst
        Inst().instrument(tracer_provider=tp)
    elif name == "openinference":
        if client == "openai":
            from openinference.instrumentation.openai import OpenAIInstrumentor as Inst  # type: ignore
        else:
            from openinference.instrumentation.anthropic import AnthropicInstrumentor as Inst  # type: ignore
        Inst().instrument(tracer_provider=tp)
    elif name == "openlit":
        import openlit  # type: ignore

        openlit.init(  # reuses the TracerProvider set above (and its batch processor)
            disable_metrics=True, collect_gpu_stats=False, disable_batch=False, capture_message_content=False,
            disabled_instrumentors=[i for i in ("anthropic", "openai") if i != client] or None,
        )
    else:
        raise ValueError(name)


def _switch(name: str, client: str, tp: Any) -> tuple[Callable[[], None], Callable[[], None]] | None:
    """(on, off) for a contender whose instrumentation can be undone; None for one that cannot."""
    if name == "flowscope":
        import flowscope
        from benchmarks.bench_sdk_overhead import DropExporter

        flowscope.init(exporter=DropExporter(), instrument=False)
        if client == "openai":
            from flowscope.instrumentation.openai import OpenAIInstrumentor as Inst
        else:
            from flowscope.instrumentation.anthropic import AnthropicInstrumentor as Inst  # type: ignore
        inst = Inst()
        return inst.instrument, inst.uninstrument
    if name == "openinference":
        if client == "openai":
            from openinference.instrumentation.openai import OpenAIInstrumentor as Other  # type: ignore
        else:
            from openinference.instrumentation.anthropic import AnthropicInstrumentor as Other  # type: ignore
        other = Other()
        return (lambda: other.instrument(tracer_provider=tp)), other.uninstrument
    return None  # openllmetry (uninstrument leaves wrappers), openlit (no off switch)


def _caller(client_kind: str, streaming: bool) -> Callable[[], None]:
    from flowscope.testing import FakeProvider

    fp = FakeProvider()
    if client_kind == "openai":
        c = fp.openai_client(in_process=True)
        msgs = [{"role": "user", "content": "What is the capital of France?"}]

        def call() -> None:
            if streaming:
                for _ in c.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True,
                                                   stream_options={"include_usage": True}):
                    pass
            else:
                c.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    else:
        c = fp.anthropic_client(in_process=True)
        amsgs = [{"role": "user", "content": "What is the capital of France?"}]

        def call() -> None:
            if streaming:
                for _ in c.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=amsgs,
                                           stream=True):
                    pass
            else:
                c.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=amsgs)

    return call


def _time(call: Callable[[], None], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        call()
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def worker(name: str, client_kind: str, streaming: bool, calls: int, interleave: bool = False) -> dict[str, Any]:
    import gc
    import statistics

    tp = _tracer_provider(with_export=name != "flowscope")
    call = _caller(client_kind, streaming)
    switch = _switch(name, client_kind, tp) if interleave else None
    if switch is not None:
        on, off = switch
        block = 100
        _time(call, 200)
        gc.collect()
        pristine = statistics.median(_time(call, max(block, calls // 2)))
        base: list[float] = []
        inst: list[float] = []
        for r in range(max(1, calls // block)):
            for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                (on if mode == "on" else off)()
                _time(call, 20)
                (inst if mode == "on" else base).extend(_time(call, block))
        off()
        tp.force_flush()
        q = statistics.quantiles(inst, n=4)
        design = "interleaved"
        if statistics.median(base) - pristine > 0.25 * pristine:
            design += " (off slower than before instrumenting)"
        return {"base": statistics.median(base), "inst": statistics.median(inst), "q1": q[0], "q3": q[2],
                "design": design}
    _time(call, 200)
    gc.collect()
    base = _time(call, calls)
    _instrument(name, client_kind, tp)
    _time(call, 200)
    gc.collect()
    inst = _time(call, calls)
    tp.force_flush()
    q = statistics.quantiles(inst, n=4)
    return {"base": statistics.median(base), "inst": statistics.median(inst), "q1": q[0], "q3": q[2],
            "design": "blocks"}


# --- orchestrator ---------------------------------------------------------------------------


def _run_worker(name: str, client: str, streaming: bool, calls: int, interleave: bool = False) -> dict[str, Any] | str:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_competitors", "--worker", name, "--client", client,
         "--calls", str(calls)] + (["--stream"] if streaming else []) + (["--interleave"] if interleave else []),
        capture_output=True, text=True, timeout=900,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return f"error: {last[:120]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _versions(client: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name, dist in CONTENDERS.items():
        try:
            out[name] = version(dist.format(client=client))
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    import statistics

    from benchmarks._stats import machine, table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--procs", type=int, default=3, help="fresh processes per contender and mode")
    parser.add_argument("--client", choices=["openai", "anthropic"], default="openai")
    parser.add_argument("--stream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="*", help="contenders to run (default all)")
    parser.add_argument("--interleave", action="store_true",
                        help="switch each contender off and on every 100 calls in one process, where it can be")
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker, args.client, args.stream, args.calls, args.interleave)))
        return 0

    versions = _versions(args.client)
    names = args.only or list(CONTENDERS)
    rows = []
    for streaming in (False, True):
        results: dict[str, Any] = {}
        for name in names:
            if versions[name] == "not installed":
                results[name] = "not installed"
                continue
            runs = [_run_worker(name, args.client, streaming, args.calls, args.interleave)
                    for _ in range(args.procs)]
            ok = [r for r in runs if isinstance(r, dict)]
            if not ok:
                results[name] = runs[0]
                continue
            results[name] = {
                "base": statistics.median(r["base"] for r in ok),
                "inst": statistics.median(r["inst"] for r in ok),
                "overhead": statistics.median(r["inst"] - r["base"] for r in ok),
                "spread": (min(r["inst"] - r["base"] for r in ok), max(r["inst"] - r["base"] for r in ok)),
                "design": ok[0].get("design", "blocks"),
            }
        others = [v["overhead"] for k, v in results.items() if k != "flowscope" and isinstance(v, dict)]
        best_other = min(others) if others else None
        for name in names:
            v = results[name]
            mode = "stream" if streaming else "non-stream"
            if not isinstance(v, dict):
                rows.append([mode, name, versions[name], "-", "-", v, "-", "-"] + (["-"] if args.interleave else []))
                continue
            ratio = f"{v['overhead'] / best_other:.2f}" if best_other and best_other > 0 else "-"
            rows.append([
                mode, name, versions[name], f"{v['base']:.1f}", f"{v['inst']:.1f}", f"{v['overhead']:.1f}",
                f"{v['spread'][0]:.1f} .. {v['spread'][1]:.1f}", ratio,
            ] + ([v["design"]] if args.interleave else []))
    print(f"Per-call overhead, {args.client} client ({machine()}; {args.calls} calls x {args.procs} processes)\n")
    print(table(
        ["call", "instrumentation", "version", "uninstrumented µs", "instrumented µs", "overhead µs (median)",
         "overhead range µs", "ratio to best other"] + (["design"] if args.interleave else []),
        rows,
    ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
