"""``flowscope demo`` without ``--serve`` works from a clean directory, prints a priced run and exits."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from tests._collector_kit import free_port


def test_demo_prints_a_priced_run(tmp_path: Path) -> None:
    beside = Path(sys.executable).parent / "flowscope"  # the venv's scripts, even when it is not on PATH
    exe = str(beside) if beside.exists() else shutil.which("flowscope")
    assert exe, "the flowscope console script is not installed"
    proc = subprocess.run(
        [exe, "demo", "--port", str(free_port())], cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    run_id = re.search(r"^run\s+([0-9a-f]{32})", out, re.M)
    assert run_id, out
    assert re.search(r"tokens\s+input 2100\s+\(cached 800\)\s+output 420", out), out
    cost = Decimal(re.search(r"cost\s+\$([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    # gpt-4o-mini: 400 uncached in @0.15, 800 cached @0.075, 300 out @0.60;
    # gpt-4o: 900 in @2.50, 120 out @10.00 (USD per million tokens)
    want = (400 * Decimal("0.15") + 800 * Decimal("0.075") + 300 * Decimal("0.60")
            + 900 * Decimal("2.50") + 120 * Decimal("10.00")) / 1_000_000
    assert cost == want
    steps = re.findall(r"^\s+(\d)\s+(\w+)\s+(\w+)\s+ok", out, re.M)
    assert [(s, n) for s, n, _ in steps] == [("0", "plan"), ("1", "lookup"), ("2", "route"), ("3", "answer")]
    assert f"/api/v1/runs/{run_id.group(1)}" in out
    assert (tmp_path / "flowscope-data").is_dir()  # the embedded default, in the working directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flowscope-data"]  # and nothing else left there
    # where the data is, as an absolute path (./flowscope-data depends on where it ran), and that
    # the printed API URL does not outlive the command
    assert f"Data is in {(tmp_path / 'flowscope-data').resolve()};" in out, out
    assert "stops when this command exits" in out
