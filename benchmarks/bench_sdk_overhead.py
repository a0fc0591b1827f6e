"""What flowscope adds to one openai chat completion, measured side by side.

The real ``openai`` client talks to the fake provider through an in-process
httpx transport (no sockets, so the provider's own noise stays out of the
numbers). Uninstrumented and instrumented calls alternate in blocks within one
process and one run; the overhead is the difference of medians. Spans go
through the real BatchSpanProcessor to an exporter that drops them, so the
figure is what the caller's thread pays, not the network.

    python -m benchmarks.bench_sdk_overhead [--calls 2000] [--rounds 6]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from benchmarks._stats import iqr, machine, median, table


class DropExporter(SpanExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _time_calls(client: object, n: int, streaming: bool) -> list[float]:
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    out = []
    create = client.chat.completions.create  # type: ignore[attr-defined]
    for _ in range(n):
        t0 = time.perf_counter_ns()
        if streaming:
            for _chunk in create(model="gpt-4o-mini", messages=msgs, stream=True,
                                 stream_options={"include_usage": True}):
                pass
        else:
            create(model="gpt-4o-mini", messages=msgs)
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def measure(calls: int, rounds: int, streaming: bool, in_run: bool) -> dict[str, list[float]]:
    import flowscope
    from flowscope.instrumentation.openai import OpenAIInstrumentor
    from flowscope.testing import FakeProvider

    fp = FakeProvider()
    client = fp.openai_client(in_process=True)
    inst = OpenAIInstrumentor()
    results: dict[str, list[float]] = {"baseline": [], "flowscope": []}
    _time_calls(client, 200, streaming)  # warm-up: imports, pydantic caches, connection pool
    for r in range(rounds):
        order = ["baseline", "flowscope"] if r % 2 == 0 else ["flowscope", "baseline"]
        for mode in order:
            if mode == "flowscope":
                if not inst.is_instrumented_by_opentelemetry:
                    inst.instrument()
            elif inst.is_instrumented_by_opentelemetry:
                inst.uninstrument()
            gc.collect()
            if in_run:
                with flowscope.run("bench"), flowscope.node("call"):
                    results[mode] += _time_calls(client, calls, streaming)
            else:
                results[mode] += _time_calls(client, calls, streaming)
    if inst.is_instrumented_by_opentelemetry:
        inst.uninstrument()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1500, help="calls per block")
    parser.add_argument("--rounds", type=int, default=6, help="alternating blocks per mode")
    args = parser.parse_args(argv)

    import flowscope

    exporter = DropExporter()
    flowscope.init(service_name="bench", exporter=exporter, instrument=False)
    rows = []
    for streaming in (False, True):
        for in_run in (False, True):
            res = measure(args.calls, args.rounds, streaming, in_run)
            base, inst = res["baseline"], res["flowscope"]
            mb, mi = median(base), median(inst)
            q1, q3 = iqr(inst)
            rows.append([
                "stream" if streaming else "non-stream",
                "run+node" if in_run else "bare call",
                f"{mb:.1f}", f"{mi:.1f}", f"{q1:.1f}-{q3:.1f}", f"{mi - mb:.1f}", f"{(mi - mb) / mb * 100:.1f}%",
                len(inst),
            ])
    flowscope.shutdown()
    print(f"SDK overhead per openai chat completion ({machine()}; spans exported: {exporter.count})\n")
    print(table(
        ["call", "context", "uninstrumented µs (median)", "flowscope µs (median)", "flowscope IQR µs",
         "overhead µs", "overhead %", "calls"],
        rows,
    ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
