"""CPU instructions flowscope adds to one openai chat completion, counted by callgrind.

Wall-clock overhead on a shared 2-core machine moves by tens of µs between runs;
instruction counts do not (the same binary, inputs and environment give the same
count whatever else the machine is doing). So this is the figure to compare two
revisions with: each case runs in a fresh interpreter under ``valgrind
--tool=callgrind``, once with ``--calls N`` and once with ``--calls 2N``; the
difference divided by N is the cost of one call with set-up and warm-up cancelled
out. flowscope's overhead is (traced - uninstrumented) per call.

    python -m benchmarks.bench_sdk_instructions [--calls 100] [--src OTHER_CHECKOUT ...]

``--src`` may be given several times to put other checkouts (their ``sdk/`` on
``PYTHONPATH``) in the same table, e.g. the revision before a refactor.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._stats import machine, table

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import sys
mode, streaming, in_run, calls = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", int(sys.argv[4])
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
import flowscope
from flowscope.testing import FakeProvider

class Drop(SpanExporter):
    def export(self, spans): return SpanExportResult.SUCCESS
    def shutdown(self): pass

flowscope.init(service_name="bench", exporter=Drop(), instrument=["openai"] if mode == "traced" else False)
client = FakeProvider().openai_client(in_process=True)
msgs = [{"role": "user", "content": "What is the capital of France?"}]

def call():
    if streaming:
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True,
                                                stream_options={"include_usage": True}):
            pass
    else:
        client.chat.completions.create(model="gpt-4o-mini", messages=msgs)

for _ in range(20):  # warm-up: imports, pydantic caches, the price memo
    call()

def work():
    for _ in range(calls):
        call()

if in_run:
    with flowscope.run("bench"), flowscope.node("call"):
        work()
else:
    work()
"""


def instructions(src: Path, mode: str, streaming: bool, in_run: bool, calls: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONPATH": f"{src / 'sdk'}{os.pathsep}{src / 'collector'}",
               "PYTHONHASHSEED": "0", "OTEL_SDK_DISABLED": "false"}
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", _CHILD,
             mode, str(int(streaming)), str(int(in_run)), str(calls)],
            env=env, capture_output=True, text=True, timeout=1800,
        )
        found = re.search(r"Collected : (\d+)", proc.stderr)
        if proc.returncode != 0 or not found:
            raise RuntimeError(f"callgrind run failed ({src}, {mode}): {proc.stderr[-2000:]}")
        return int(found.group(1))


def per_call(src: Path, mode: str, streaming: bool, in_run: bool, calls: int) -> float:
    return (instructions(src, mode, streaming, in_run, 2 * calls) - instructions(src, mode, streaming, in_run, calls)) / calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100, help="N: calls in the shorter run (the longer has 2N)")
    parser.add_argument("--src", action="append", type=Path, default=[],
                        help="another checkout to measure beside this one")
    parser.add_argument("--streaming", action="store_true", help="also measure streaming calls")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    sources = [ROOT, *[s.resolve() for s in args.src]]
    rows = []
    for streaming in ((False, True) if args.streaming else (False,)):
        for in_run in (False, True):
            for src in sources:
                bare = per_call(src, "bare", streaming, in_run, args.calls)
                traced = per_call(src, "traced", streaming, in_run, args.calls)
                rows.append([
                    str(src) if src != ROOT else "this checkout",
                    "stream" if streaming else "non-stream",
                    "run+node" if in_run else "bare call",
                    f"{bare / 1000:.0f}k", f"{traced / 1000:.0f}k", f"{(traced - bare) / 1000:.0f}k",
                ])
    print(f"Instructions per openai chat completion, callgrind ({machine()}; N={args.calls})\n")
    print(table(["checkout", "call", "context", "uninstrumented", "traced", "flowscope adds"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
