"""The interpreter the other-producer tests run their instrumentors in.

OpenLLMetry, OpenInference and OpenLIT pin client and OTel versions that
conflict with the newest ones flowscope is tested with, so, as in a user's own
app, they live in an environment of their own. It is built here on first use
(pinned, so the resolver does not wander) under ``.venv-producers`` in the
repository, and reused afterwards; ``$FLOWSCOPE_PRODUCERS_PYTHON`` points at an
existing one instead.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

PINS = [
    "traceloop-sdk==0.62.4",
    "openlit==1.45.0",
    "openinference-instrumentation-openai==0.1.66",
    "openai==2.54.0",
    "anthropic==0.125.0",
    "opentelemetry-api==1.45.1",
    "opentelemetry-sdk==1.45.1",
    "opentelemetry-instrumentation==0.66b1",
    "opentelemetry-semantic-conventions==0.66b1",
    "opentelemetry-exporter-otlp-proto-http==1.45.1",
]

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-producers"


def producers_python() -> tuple[str | None, str]:
    """(interpreter, reason-if-None). Builds the environment once, under a file lock."""
    given = os.environ.get("FLOWSCOPE_PRODUCERS_PYTHON")
    if given:
        return given, ""
    py = VENV / "bin" / "python"
    marker = VENV / ".complete"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(ROOT / ".venv-producers.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return str(py), ""
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300,
                           capture_output=True)
            proc = subprocess.run([str(py), "-m", "pip", "install", "-q", *PINS], capture_output=True, text=True,
                                  timeout=1500)
        except (subprocess.SubprocessError, OSError) as exc:
            return None, f"could not build the producers environment: {exc}"
        if proc.returncode != 0:
            return None, f"could not install the producer packages: {proc.stderr[-800:]}"
        marker.write_text("\n".join(PINS))
        return str(py), ""
