"""Zero-code instrumentation: ``flowscope-instrument python app.py``.

The command puts flowscope's ``sitecustomize`` first on ``PYTHONPATH`` and
``exec``s the program, so the program's own interpreter starts flowscope
before any of its code runs: no import or ``init()`` in the app. Everything is
configured from the standard OpenTelemetry variables (``OTEL_SERVICE_NAME``,
``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``) and ours (``FLOWSCOPE_INSTRUMENT``,
``FLOWSCOPE_CAPTURE_CONTENT``, ``FLOWSCOPE_STATE_MAX_BYTES``); the command's
flags only set those variables.

Libraries are instrumented when the app first imports them (a post-import
hook), so start-up does not pay for importing LangGraph in an app that never
uses it.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import logging
import os
import shutil
import sys
from collections.abc import Sequence

logger = logging.getLogger("flowscope")

BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap")
INSTRUMENT_ENV = "FLOWSCOPE_INSTRUMENT"
DISABLED_ENV = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"

_initialized = False


def _split(raw: str | None) -> list[str]:
    return [x.strip() for x in (raw or "").split(",") if x.strip()]


def wanted_instrumentations() -> list[str]:
    """Which instrumentations to turn on: ``FLOWSCOPE_INSTRUMENT`` (default: every installed
    one), minus ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` (names with or without ``flowscope_``)."""
    from .instrumentation import REGISTRY, available

    names = _split(os.environ.get(INSTRUMENT_ENV)) or available()
    disabled = {d.removeprefix("flowscope_") for d in _split(os.environ.get(DISABLED_ENV))}
    if "*" in disabled:
        return []
    return [n for n in names if n in REGISTRY and n not in disabled]


def initialize() -> list[str]:
    """Start flowscope from the environment and arm the instrumentations; returns their names.

    Safe to call more than once. Never raises into the host program.
    """
    global _initialized
    if _initialized:
        return []
    _initialized = True
    try:
        import flowscope

        names = wanted_instrumentations()
        flowscope.init(instrument=names)  # each library is instrumented when the app imports it
        return names
    except Exception:
        logger.warning("flowscope: zero-code start-up failed", exc_info=True)
        return []


def load_shadowed_sitecustomize(our_file: str) -> None:
    """Run the ``sitecustomize`` that ours hides (an app's or a distro's), if there is one."""
    our_dir = os.path.dirname(os.path.abspath(our_file))
    search = [p for p in sys.path if os.path.abspath(p or ".") != our_dir]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", search)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flowscope-instrument",
        description="Run a Python program with flowscope tracing, without changing its code.",
        epilog="Example: flowscope-instrument --service-name shop python app.py --port 8000",
    )
    p.add_argument("--service-name", help="sets OTEL_SERVICE_NAME")
    p.add_argument("--endpoint", help="collector base URL; sets OTEL_EXPORTER_OTLP_ENDPOINT")
    p.add_argument("--headers", help="k=v,k2=v2; sets OTEL_EXPORTER_OTLP_HEADERS (e.g. authorization=Bearer …)")
    p.add_argument("--instrument", help=f"comma-separated instrumentations; sets {INSTRUMENT_ENV}")
    p.add_argument("--capture-content", action="store_true",
                   help="record prompts and completions; sets FLOWSCOPE_CAPTURE_CONTENT=true")
    p.add_argument("command", help="the program to run, e.g. python")
    p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    return p


def child_environment(args: argparse.Namespace, env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if env is None else env)
    for value, key in ((args.service_name, "OTEL_SERVICE_NAME"), (args.endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT"),
                       (args.headers, "OTEL_EXPORTER_OTLP_HEADERS"), (args.instrument, INSTRUMENT_ENV)):
        if value:
            env[key] = value
    if args.capture_content:
        env["FLOWSCOPE_CAPTURE_CONTENT"] = "true"
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.abspath(p) != BOOTSTRAP_DIR]
    cwd = os.getcwd()
    if cwd not in paths:  # as opentelemetry-instrument does: apps run from their own directory
        paths.insert(0, cwd)
    env["PYTHONPATH"] = os.pathsep.join([BOOTSTRAP_DIR, *paths])
    return env


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = child_environment(args)
    executable = shutil.which(args.command, path=env.get("PATH")) or args.command
    try:
        os.execvpe(executable, [args.command, *args.args], env)
    except OSError as exc:
        print(f"flowscope-instrument: cannot run {args.command!r}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced this process
