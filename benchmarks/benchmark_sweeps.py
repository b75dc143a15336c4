"""What every benchmark script shares: one resumable ``anomaly-bench -m`` sweep into a fixed folder.

A sweep folder holds one run folder per job and ``benchmark.json`` (the command, its exit code,
when it started, its wall time and the machine's load average before and after), so a table can say how long its runs
took and how busy the machine was. ``resume=true`` makes a rerun skip jobs whose folder already
holds a completed result, so adding a seed or a preset only runs what is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BENCHMARK_FILE = "benchmark.json"


def run_sweep(overrides: list[str], sweep_dir: Path) -> int:
    """Run ``anomaly-bench -m <overrides>`` into ``sweep_dir`` (resuming) and record its cost there."""
    command = [sys.executable, "-m", "anomaly_bench", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}", "resume=true"]
    print("+", " ".join(command), flush=True)
    load_before, started = os.getloadavg()[0], time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    code = subprocess.call(command, cwd=REPO)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / BENCHMARK_FILE).write_text(
        json.dumps(
            {
                "command": command[2:],
                "exit_code": code,
                "started_at": started_at,
                "wall_seconds": time.perf_counter() - started,
                "load_average_before": load_before,
                "load_average_after": os.getloadavg()[0],
                "cpu_count": os.cpu_count(),
            },
            indent=2,
        )
    )
    if code != 0:
        print(
            f"warning: the sweep into {sweep_dir} exited with {code}; failed jobs are left out of the table",
            file=sys.stderr,
        )
    return code


def read_benchmark_files(root: Path) -> list[dict]:
    """The ``benchmark.json`` of every sweep folder directly below ``root``."""
    return [json.loads(p.read_text()) for p in sorted(root.glob(f"*/{BENCHMARK_FILE}"))]


def fmt(value: float | None, digits: int = 1) -> str:
    """A table cell: empty for a missing value or NaN."""
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"
