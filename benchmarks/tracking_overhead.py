"""What ``logger=mlflow`` costs on the default run: ``anomaly-bench`` with and without it.

Both are whole processes timed end to end (the tracker's import, store connection, params,
per-epoch metrics, artifact copies and status included). The MLflow store is the default local
one (``sqlite:///<outputs>/mlflow.db``); creating it is a one-off cost, measured by a first
run of its own and reported apart. Then runs alternate between the two settings so machine
noise hits both alike, and the medians are compared. Writes benchmarks/results/tracking_overhead.md.

    ANOMALY_BENCH_DATA=../shared/data nice python benchmarks/tracking_overhead.py [--repeats 2] [--note "..."]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"benchmark command failed ({result.returncode}): {' '.join(command)}\n{result.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--note", default="", help="how the machine was loaded while measuring")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "tracking_overhead.md")
    args = parser.parse_args()

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the default local store
    with tempfile.TemporaryDirectory() as out_dir:
        plain = [sys.executable, "-m", "anomaly_bench", f"paths.output_dir={out_dir}"]
        tracked = [*plain, "logger=mlflow"]
        first = timed(tracked, env)
        print(f"first tracked run (creates {out_dir}/mlflow.db): {first:.1f} s", flush=True)
        times: dict[str, list[float]] = {"plain": [], "mlflow": []}
        for i in range(args.repeats):
            for name, command in (("plain", plain), ("mlflow", tracked)):
                times[name].append(timed(command, env))
                print(f"repeat {i + 1}/{args.repeats} {name}: {times[name][-1]:.1f} s", flush=True)
        runs = [json.loads(p.read_text()) for p in sorted(Path(out_dir).glob("runs/*/*/metrics.json"))]
        epochs = runs[0]["config"]["trainer"]["epochs"]
        model, dataset = runs[0]["model"], runs[0]["dataset"]

    median = {name: statistics.median(values) for name, values in times.items()}
    overhead = median["mlflow"] / median["plain"] - 1
    load = os.getloadavg()
    lines = [
        "# Tracking overhead: the default run with and without logger=mlflow",
        "",
        f"Measured {date.today()} on {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
        f"the default run (`anomaly-bench`: {model} on {dataset}, {epochs} epochs) with the default local MLflow store "
        f"(SQLite beside the outputs, artifacts copied); whole-process wall time, median of {args.repeats} alternating "
        f"runs each. Load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
        f"{' (' + args.note + ')' if args.note else ''}: with other jobs on the cores, compare the two rows, "
        "not the absolute seconds.",
        "",
        "| | wall time (s, median) | all runs (s) |",
        "|---|---|---|",
        f"| `anomaly-bench` | {median['plain']:.1f} | {', '.join(f'{t:.1f}' for t in times['plain'])} |",
        f"| `anomaly-bench logger=mlflow` | {median['mlflow']:.1f} | {', '.join(f'{t:.1f}' for t in times['mlflow'])} |",
        "",
        f"**Overhead of logger=mlflow: {overhead:+.1%}** (goal: at most +5 %). The first tracked run, which also "
        f"creates the SQLite store, took {first:.1f} s.",
        "",
        "Reproduce: `ANOMALY_BENCH_DATA=../shared/data nice python benchmarks/tracking_overhead.py`",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
