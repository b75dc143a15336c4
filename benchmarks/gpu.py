"""The one-class protocol on one GPU: ensemble, transform_classifier and conv_ae on Fashion-MNIST.

For each model one ``anomaly-bench -m --backend NAME`` sweep runs the ten classes in one
process (so the backend starts once per model), then the table gives per-class AUROC and
wall time (metrics.json ``timings.total``: fit + score + plots + saving), the first class
apart (it pays for compilation), beside the 2-CPU-core rows of
``benchmarks/results/one_class_fashion_mnist.md`` for the same models. Writes
``benchmarks/results/gpu.md`` only when every run reports a GPU device; runs on a CPU
(e.g. ``--smoke`` to try the script) need ``--out`` elsewhere, so no CPU figure is ever
filed as a GPU one.

Sized for about 10 minutes on one H100/H200 with JAX (GPU machines often lack TensorFlow):
    python benchmarks/gpu.py                           # --backend jax
    python benchmarks/gpu.py --backend torch
    python benchmarks/gpu.py --smoke --out /tmp/gpu_smoke.md   # 2 classes, tiny data, any machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
MODELS = ("ensemble", "transform_classifier", "conv_ae")
CPU_TABLE = RESULTS / "one_class_fashion_mnist.md"
SMOKE = ["dataset.max_train=300", "dataset.max_test=300", "trainer.epochs=1"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="Arguments after -- are passed to every run as overrides."
    )
    parser.add_argument("--backend", default="jax", choices=("jax", "torch", "tensorflow"))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--smoke", action="store_true", help="classes 0 and 1 on tiny data: checks the script")
    parser.add_argument("--runs", type=Path, default=REPO / "outputs" / "gpu")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu.md")
    args, extra = parser.parse_known_args(argv)
    args.overrides = [o for o in extra if o != "--"]
    args.stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    return args


def run_sweep(args: argparse.Namespace, model: str) -> tuple[Path, float]:
    """One sweep over the classes in one process; returns its folder and wall time."""
    classes = "[0],[1]" if args.smoke else ",".join(f"[{c}]" for c in range(10))
    folder = args.runs / args.stamp / f"{args.backend}-{model}"  # fresh: timings need new runs, not resumed ones
    command = [
        sys.executable,
        "-m",
        "anomaly_bench",
        "--backend",
        args.backend,
        "-m",
        f"model={model}",
        "dataset=fashion_mnist",
        f"dataset.normal_classes={classes}",
        *(SMOKE if args.smoke else []),
        *args.overrides,
        f"hydra.sweep.dir={folder}",
    ]
    print("+", " ".join(command), flush=True)
    started = time.perf_counter()
    code = subprocess.call(command, cwd=REPO)
    if code != 0:
        raise SystemExit(f"the {model} sweep failed (exit {code}); see {folder}")
    return folder, time.perf_counter() - started


def read_sweep(folder: Path) -> pd.DataFrame:
    """One row per job, in job order (job 0 ran first and paid for compilation)."""
    rows = []
    for path in folder.glob("*/metrics.json"):
        metrics = json.loads(path.read_text())
        rows.append(
            {
                "job": int(path.parent.name.split("_")[0]),
                "class": metrics["normal_classes"][0],
                "auroc": 100 * metrics["auroc"],
                "seconds": metrics["timings"]["total"],
                "device": metrics["device"],
                "backend": metrics["backend"],
            }
        )
    return pd.DataFrame(rows).sort_values("job").reset_index(drop=True)


def cpu_rows(models: list[str]) -> dict[str, str]:
    """The same models' rows of the 2-core CPU table: mean AUROC and seconds per class."""
    found = {}
    if not CPU_TABLE.is_file():
        return found
    for line in CPU_TABLE.read_text().splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if len(cells) > 14 and cells[0] in models:
            found[cells[0]] = f"| {cells[0]} | 2 CPU cores, TensorFlow | {cells[11]} | {cells[14]} |"
    return found


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sweeps = {model: run_sweep(args, model) for model in args.models}
    tables = {model: read_sweep(folder) for model, (folder, _) in sweeps.items()}
    devices = sorted({d for t in tables.values() for d in t.device})
    if args.out.resolve() == (RESULTS / "gpu.md").resolve() and not all(d.startswith("GPU") for d in devices):
        raise SystemExit(f"runs used {devices}, not a GPU: pass --out to write this table elsewhere")
    classes = sorted({c for t in tables.values() for c in t["class"]})
    lines = [
        f"# One-class protocol on {', '.join(devices)}: Fashion-MNIST"
        + (" (smoke test: tiny data)" if args.smoke else ""),
        "",
        f"Backend {args.backend}; Python {platform.python_version()}, {os.cpu_count()} CPU cores on the host. "
        "One sweep (one process) per model over the normal classes; `s / class` is metrics.json "
        "`timings.total` (fit + score + plots + saving) per run, `first` the first class (includes compilation), "
        "`later` the median of the others; `sweep s` is the whole command, start-up included.",
        f"Reproduce: `python benchmarks/gpu.py --backend {args.backend}"
        + (" --smoke" if args.smoke else "")
        + (f" -- {' '.join(args.overrides)}" if args.overrides else "")
        + "`.",
        "",
        "| method | device | mean AUROC % | first s | s / class (later) | sweep s | "
        + " | ".join(map(str, classes))
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(classes),
    ]
    for model, table in tables.items():
        by_class = table.set_index("class").auroc
        later = statistics.median(table.seconds[1:]) if len(table) > 1 else float("nan")
        lines.append(
            f"| {model} | {table.device.iloc[0]} | {table.auroc.mean():.1f} | {table.seconds.iloc[0]:.1f} | "
            f"{later:.1f} | {sweeps[model][1]:.0f} | " + " | ".join(f"{by_class[c]:.1f}" for c in classes) + " |"
        )
    cpu = cpu_rows(list(tables))
    if cpu:
        lines += [
            "",
            f"The same models on 2 shared CPU cores with TensorFlow, from `{CPU_TABLE.relative_to(REPO)}` "
            "(mean AUROC %, s / class):",
            "",
            "| method | device | mean AUROC % | s / class |",
            "|---|---|---|---|",
            *cpu.values(),
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
