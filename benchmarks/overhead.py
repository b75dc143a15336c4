"""How much the runner costs beside training: anomaly-bench vs a bare Keras script.

Both do the same work (see bare_conv_ae.py) as whole processes, timed end to end (Python
start, imports, data, training, scoring, and for the runner also config, validation, plots,
model file). Runs alternate between the two so machine noise hits both alike; the median of
``--repeats`` runs each is compared. Writes benchmarks/results/overhead.md.

    ANOMALY_BENCH_DATA=../shared/data python benchmarks/overhead.py [--repeats 3] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
TRAINER_DEFAULTS = HERE.parent / "conf" / "trainer" / "default.yaml"


def timed(command: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"benchmark command failed ({result.returncode}): {' '.join(command)}\n{result.stderr[-2000:]}")
    return elapsed, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--normal-class", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "overhead.md")
    args = parser.parse_args()

    data_root = os.environ.get("ANOMALY_BENCH_DATA")
    if not data_root or not (Path(data_root) / "fashion-mnist").is_dir():
        sys.exit("set ANOMALY_BENCH_DATA to a folder holding fashion-mnist/ IDX files")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    batch_size = yaml.safe_load(TRAINER_DEFAULTS.read_text())["batch_size"]  # the run uses the default
    with tempfile.TemporaryDirectory() as out_dir:
        runner = [
            sys.executable,
            "-m",
            "anomaly_bench",
            "model=conv_ae",
            "dataset=fashion_mnist",
            f"dataset.normal_classes=[{args.normal_class}]",
            f"trainer.epochs={args.epochs}",
            f"paths.output_dir={out_dir}",
        ]
        bare = [
            sys.executable,
            str(HERE / "bare_conv_ae.py"),
            str(Path(data_root) / "fashion-mnist"),
            str(args.normal_class),
            str(args.epochs),
            str(batch_size),
        ]
        times: dict[str, list[float]] = {"runner": [], "bare": []}
        aurocs: dict[str, list[float]] = {"runner": [], "bare": []}
        for i in range(args.repeats):
            for name, command in (("runner", runner), ("bare", bare)):
                elapsed, output = timed(command, env)
                times[name].append(elapsed)
                aurocs[name].append(float(re.search(r"auroc (\d\.\d+)", output).group(1)))
                print(
                    f"repeat {i + 1}/{args.repeats} {name}: {elapsed:.1f} s, auroc {aurocs[name][-1]:.4f}", flush=True
                )
        folders = sorted(Path(out_dir).glob("runs/*/*"))
        inner = [json.loads((f / "metrics.json").read_text())["timings"] for f in folders]

    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["runner"] / median["bare"]
    artifacts = statistics.median(t["artifacts"] for t in inner)
    lines = [
        "# Runner overhead: anomaly-bench vs a bare Keras script",
        "",
        f"Measured {date.today()} on {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
        f"conv_ae, Fashion-MNIST class {args.normal_class} normal (others anomalous), {args.epochs} epochs, batch {batch_size}; "
        f"whole-process wall time, median of {args.repeats} alternating runs each. The machine may be shared: "
        "compare the two columns, not the absolute seconds.",
        "",
        "| | wall time (s, median) | all runs (s) | AUROC |",
        "|---|---|---|---|",
        f"| anomaly-bench | {median['runner']:.1f} | {', '.join(f'{t:.1f}' for t in times['runner'])} | "
        f"{statistics.median(aurocs['runner']):.4f} |",
        f"| bare Keras script | {median['bare']:.1f} | {', '.join(f'{t:.1f}' for t in times['bare'])} | "
        f"{statistics.median(aurocs['bare']):.4f} |",
        "",
        f"**Ratio runner / bare: {ratio:.2f}** (target: at most 1.20). "
        f"Inside the runner, writing plots, scores and the model took {artifacts:.1f} s (median).",
        "",
        "Reproduce: `ANOMALY_BENCH_DATA=../shared/data python benchmarks/overhead.py`",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
