"""Sweep wall time: the one-class protocol with the basic launcher vs the joblib launcher.

Runs ``anomaly-bench -m experiment=one_class_protocol model=conv_ae dataset=fashion_mnist``
(10 jobs) twice as whole processes: one job after another in one process (Hydra's basic
launcher), then two parallel worker processes (``hydra/launcher=joblib_local``, each job
limited to cores // 2 TensorFlow threads). Writes benchmarks/results/sweep_speed.md with
the wall times, their ratio, and the per-class AUROC of both sweeps (they must agree
closely; thread counts change float results slightly).

    ANOMALY_BENCH_DATA=../shared/data python benchmarks/sweep_speed.py [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
LAUNCHERS = {"basic (sequential, 1 process)": [], "joblib_local (2 workers)": ["hydra/launcher=joblib_local"]}


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_sweep(extra: list[str], sweep_dir: Path, epochs: int, env: dict) -> tuple[float, float, pd.DataFrame]:
    """Wall seconds, CPU seconds of the whole process tree, and the sweep's summary.csv."""
    command = [
        sys.executable,
        "-m",
        "anomaly_bench",
        "-m",
        "experiment=one_class_protocol",
        "model=conv_ae",
        "dataset=fashion_mnist",
        f"trainer.epochs={epochs}",
        f"hydra.sweep.dir={sweep_dir}",
        *extra,
    ]
    cpu_before, start = children_cpu_seconds(), time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed, cpu = time.perf_counter() - start, children_cpu_seconds() - cpu_before
    if result.returncode != 0:
        sys.exit(
            f"sweep failed ({result.returncode}): {' '.join(command)}\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}"
        )
    summary = pd.read_csv(sweep_dir / "summary.csv").sort_values("job")
    summary["normal_class"] = summary["overrides"].str.extract(r"dataset\.normal_classes=\[(\d)\]", expand=False)
    return elapsed, cpu, summary


def job_facts(sweep_dir: Path, folder: str) -> str:
    """Data sizes and batch size of one job, for the results header."""
    metrics = json.loads((sweep_dir / folder / "metrics.json").read_text())
    return (
        f"{metrics['n_train']} training / {metrics['n_test']} test images per job, "
        f"batch size {metrics['config']['trainer']['batch_size']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sweep_speed.md")
    args = parser.parse_args()

    data_root = os.environ.get("ANOMALY_BENCH_DATA")
    if not data_root or not (Path(data_root) / "fashion-mnist").is_dir():
        sys.exit("set ANOMALY_BENCH_DATA to a folder holding fashion-mnist/ IDX files")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    walls: dict[str, float] = {}
    cpus: dict[str, float] = {}
    loads: dict[str, str] = {}
    aurocs: dict[str, pd.Series] = {}
    job_time: dict[str, float] = {}
    facts = ""
    with tempfile.TemporaryDirectory() as tmp:
        for index, (name, extra) in enumerate(LAUNCHERS.items()):
            print(f"running the one-class protocol with {name} ...", flush=True)
            load_before = os.getloadavg()[0]
            walls[name], cpus[name], summary = run_sweep(extra, Path(tmp) / f"sweep{index}", args.epochs, env)
            loads[name] = f"{load_before:.1f} / {os.getloadavg()[0]:.1f}"
            aurocs[name] = summary.set_index("normal_class")["auroc"]
            job_time[name] = summary["duration_s"].sum()
            facts = facts or job_facts(Path(tmp) / f"sweep{index}", summary["folder"].iloc[0])
            print(f"  {walls[name]:.1f} s", flush=True)

    basic, parallel = LAUNCHERS
    lines = [
        "# Sweep speed: basic launcher vs joblib launcher",
        "",
        f"Measured {date.today()} on {platform.machine()}, {cores} CPU cores, Python {platform.python_version()}; "
        f"`anomaly-bench -m experiment=one_class_protocol model=conv_ae dataset=fashion_mnist trainer.epochs={args.epochs}` "
        f"(10 jobs; full Fashion-MNIST: {facts}), "
        "whole-process wall time. The machine is shared with other work, so absolute seconds are noisy; "
        "the two sweeps ran back to back. CPU time is that of the sweep's process tree: wall time well "
        "above CPU time / cores means other processes held the cores (see the 1-minute load average, "
        "before / after each sweep).",
        "",
        "| launcher | wall time (s) | CPU time (s) | cores busy (CPU / wall) | sum of job durations (s) "
        "| load average | mean AUROC |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in LAUNCHERS:
        lines.append(
            f"| {name} | {walls[name]:.1f} | {cpus[name]:.1f} | {cpus[name] / walls[name]:.2f} of {cores} "
            f"| {job_time[name]:.1f} | {loads[name]} | {aurocs[name].mean():.4f} |"
        )
    lines += [
        "",
        f"**Ratio basic / joblib: {walls[basic] / walls[parallel]:.2f}** (wall-time speed-up of two workers).",
        "",
        "AUROC per normal class (the two launchers run the same seeds; differences come from the thread count):",
        "",
        "| normal class | " + " | ".join(aurocs[basic].index) + " |",
        "|---|" + "---|" * len(aurocs[basic]),
    ]
    for name in LAUNCHERS:
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in aurocs[name].reindex(aurocs[basic].index)) + " |")
    lines += ["", "Reproduce: `ANOMALY_BENCH_DATA=../shared/data python benchmarks/sweep_speed.py`", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
