"""CPU speed of the Keras backends: conv_ae and transform_classifier on every installed backend.

Each (backend, model) pair is one ``anomaly-bench --backend NAME`` process (Keras picks its
backend once per process) on Fashion-MNIST with one normal class; the table gives the first
epoch (it includes tracing/compilation), the median of the later epochs (read from run.log),
fit, score and whole-run times (metrics.json) and the process wall time (interpreter,
imports and backend start-up included), beside the AUROC, so a faster backend that learns
something else shows. Writes ``benchmarks/results/backend_speed.md``.

Example:
    nice python benchmarks/backend_speed.py                    # every installed backend
    python benchmarks/backend_speed.py --backends tensorflow jax --epochs 2 --max-train 1000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("tensorflow", "jax", "torch")
MODELS = ("conv_ae", "transform_classifier")
EPOCH_LINE = re.compile(r"\] epoch (\d+)/\d+ - .* - ([0-9.]+) s$")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        default=[b for b in BACKENDS if importlib.util.find_spec(b) is not None],
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-train", type=int, default=3000)
    parser.add_argument("--max-test", type=int, default=2000)
    parser.add_argument("--normal-class", type=int, default=0)
    parser.add_argument("--runs", type=Path, default=REPO / "outputs" / "backend_speed")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "backend_speed.md")
    args = parser.parse_args(argv)
    args.stamp = time.strftime("%Y-%m-%d_%H-%M-%S")  # fresh run folders: timings need new runs
    return args


def overrides(args: argparse.Namespace, model: str) -> list[str]:
    return [
        f"model={model}",
        "dataset=fashion_mnist",
        f"dataset.normal_classes=[{args.normal_class}]",
        f"dataset.max_train={args.max_train}",
        f"dataset.max_test={args.max_test}",
        f"trainer.epochs={args.epochs}",
        "trainer.early_stopping.enabled=false",
    ]


def measure(args: argparse.Namespace, backend: str, model: str) -> dict:
    folder = args.runs / args.stamp / f"{backend}-{model}"
    command = [
        sys.executable,
        "-m",
        "anomaly_bench",
        "--backend",
        backend,
        *overrides(args, model),
        f"hydra.run.dir={folder}",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{backend} {model} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((folder / "metrics.json").read_text())
    epochs = [
        float(m.group(2)) for line in (folder / "run.log").read_text().splitlines() if (m := EPOCH_LINE.search(line))
    ]
    return {
        "backend": backend,
        "model": model,
        "device": metrics["device"],
        "auroc": metrics["auroc"],
        "first_epoch": epochs[0],
        "later_epochs": statistics.median(epochs[1:]) if len(epochs) > 1 else None,
        "fit": metrics["timings"]["fit"],
        "score": metrics["timings"]["score"],
        "run": metrics["timings"]["total"],
        "process": wall,
        "version": metrics["versions"].get(backend, "?"),
    }


def fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def write_table(rows: list[dict], args: argparse.Namespace, loads: tuple[float, float]) -> None:
    lines = [
        "# Keras backends on CPU: conv_ae and transform_classifier",
        "",
        f"Fashion-MNIST, class {args.normal_class} normal: {args.max_train} training images (10 % of them held out "
        f"for validation), {args.max_test} test images, {args.epochs} epochs, default model settings, seed 0.",
        f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}), **shared with other jobs** "
        f"(1-minute load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end): the times are upper "
        "bounds and only their ratios on the same row set mean much.",
        "`first epoch` includes tracing/compilation; `later epochs` is the median of the others; `run` is fit + "
        "score + plots + saving (metrics.json); `process` adds interpreter start, imports and backend start-up.",
        f"Reproduce: `nice python benchmarks/backend_speed.py --epochs {args.epochs} --max-train {args.max_train} "
        f"--max-test {args.max_test}`.",
        "",
        "| model | backend | version | device | first epoch s | later epochs s | fit s | score s | run s | process s "
        "| AUROC % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["model"], BACKENDS.index(r["backend"]))):
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['version']} | {r['device']} | {fmt(r['first_epoch'])} | "
            f"{fmt(r['later_epochs'])} | {fmt(r['fit'])} | {fmt(r['score'])} | {fmt(r['run'])} | "
            f"{fmt(r['process'])} | {fmt(100 * r['auroc'])} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    load_start = os.getloadavg()[0]
    rows = []
    for model in args.models:
        for backend in args.backends:
            rows.append(measure(args, backend, model))
            print(f"{backend} {model}: run {rows[-1]['run']:.1f} s", flush=True)
            write_table(rows, args, (load_start, os.getloadavg()[0]))  # after each pair: a long run keeps its rows


if __name__ == "__main__":
    main()
