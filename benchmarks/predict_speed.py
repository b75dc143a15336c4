"""Throughput of ``anomaly-bench-predict``: images per second for several trained detectors.

For each model one run is trained through the pipeline (MNIST, digit 0 normal, all its
training images, a short training: the speed of scoring does not depend on how well the
model learnt), then ``anomaly-bench-predict`` scores
  - the 10,000 MNIST test images as an IDX folder (images read in one go), and
  - 2,000 of them as PNG files (one file open + decode + conform per image),
in a fresh process pinned to two CPU cores (``taskset -c 0,1``, ``nice``), as a user would run it.
The table gives the command's own scoring rate (reading, conforming, scoring, flagging; from its
``done:`` line) and the wall time of the whole command (Python and TensorFlow start-up, model
loading, writing predictions.csv and most_anomalous.png included).
Writes ``benchmarks/results/predict_speed.md``.

Examples:
    python benchmarks/predict_speed.py                       # every model below
    python benchmarks/predict_speed.py --models knn pca      # a subset
    python benchmarks/predict_speed.py --reuse-runs          # measure again with the runs trained before
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from PIL import Image

from anomaly_bench.compare.formats import markdown_table
from anomaly_bench.data import load_raw
from anomaly_bench.data.readers import IDX_FILES, find_idx_file
from anomaly_bench.run import run
from anomaly_bench.run_folder import read_metrics

REPO = Path(__file__).resolve().parent.parent
COMMON = ["dataset.normal_classes=[0]", "trainer.epochs=2"]
MODELS = {
    "knn": ["model=knn"],
    "pca": ["model=pca"],
    "conv_ae": ["model=conv_ae"],
    "transform_classifier": ["model=transform_classifier"],
    "ensemble": ["model=ensemble"],
    "anogan (encoder scoring)": [
        "model=anogan",
        "model.scoring=encoder",
        "model.encoder_epochs=2",
        "model.sample_every=0",
        "model.checkpoint_every=0",
    ],
}
N_PNG = 2000
DONE = re.compile(r"done: (\d+) images scored in ([\d.]+) s")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument(
        "--work",
        type=Path,
        default=REPO / "outputs" / "benchmarks" / "predict_speed",
        help="where the training runs, the PNG files and the predictions go (emptied first)",
    )
    parser.add_argument(
        "--reuse-runs",
        action="store_true",
        help="keep completed training runs from an earlier call instead of training again",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "predict_speed.md")
    return parser.parse_args(argv)


def predict_once(run_dir: Path, inputs: Path, out: Path) -> tuple[int, float, float]:
    """(images, scoring seconds from the command's own report, wall seconds of the whole command)."""
    shutil.rmtree(out, ignore_errors=True)  # predict claims a new --out folder; an earlier measurement's goes
    command = [
        "taskset",
        "-c",
        "0,1",
        "nice",
        "-n",
        "5",
        sys.executable,
        "-m",
        "anomaly_bench.predict",
        str(run_dir),
        str(inputs),
        "--out",
        str(out),
    ]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr[-2000:]}")
    images, seconds = DONE.search(result.stdout).groups()
    return int(images), float(seconds), wall


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    for part in ("mnist_test_idx", "mnist_test_png", "predictions") if args.reuse_runs else ("",):
        shutil.rmtree(args.work / part, ignore_errors=True)
    args.work.mkdir(parents=True, exist_ok=True)
    raw = load_raw("mnist")
    idx_folder = args.work / "mnist_test_idx"
    idx_folder.mkdir()
    source = find_idx_file(Path(raw.location), IDX_FILES["x_test"])
    shutil.copy(source, idx_folder / source.name)
    png_folder = args.work / "mnist_test_png"
    png_folder.mkdir()
    for i, image in enumerate(raw.x_test[:N_PNG]):
        Image.fromarray(np.asarray(image).reshape(28, 28)).save(png_folder / f"{i:05d}.png")

    load_before = os.getloadavg()[0]
    rows = []
    for name in args.models:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=[*MODELS[name], *COMMON])
        run_dir = args.work / "runs" / re.sub(r"\W+", "_", name)
        if not (args.reuse_runs and (read_metrics(run_dir) or {}).get("status") == "completed"):
            shutil.rmtree(run_dir, ignore_errors=True)
            print(f"training {name} -> {run_dir}", flush=True)
            run(cfg, run_dir)
        for kind, inputs in (("IDX, 10,000 images", idx_folder), (f"PNG files, {N_PNG:,}", png_folder)):
            images, seconds, wall = predict_once(
                run_dir, inputs, args.work / "predictions" / f"{run_dir.name}_{kind[:3]}"
            )
            print(f"{name} {kind}: {images / seconds:.0f} images/s scoring, {wall:.1f} s wall", flush=True)
            rows.append(
                {
                    "model": name,
                    "input": kind,
                    "images": images,
                    "scoring s": round(seconds, 2),
                    "images / s": round(images / seconds),
                    "command wall s": round(wall, 1),
                    "images / s incl. start-up": round(images / wall),
                }
            )

    load_after = os.getloadavg()[0]
    import tensorflow as tf

    text = "\n".join(
        [
            "# anomaly-bench-predict throughput",
            "",
            f"Command: `python benchmarks/predict_speed.py{' --models ' + ' '.join(args.models) if args.models != list(MODELS) else ''}"
            f"{' --reuse-runs' if args.reuse_runs else ''}` (runs trained by this script)",
            "",
            "Each model trained on MNIST digit 0 (all 5,923 training images less the 10 % validation share, 2 epochs;",
            "defaults otherwise), then scored by `anomaly-bench-predict` in a fresh process pinned to 2 CPU cores",
            "(`taskset -c 0,1 nice -n 5`). `images / s` is the command's own rate over reading, conforming, scoring",
            "and flagging (its `done:` line); `command wall s` is the whole command, start-up and model loading included.",
            "",
            markdown_table(pd.DataFrame(rows).astype(str)),
            "",
            f"Machine: {os.cpu_count()} CPU cores, {platform.machine()}, TensorFlow {tf.__version__}; load average "
            f"{load_before:.1f} before and {load_after:.1f} after. Other jobs shared these 2 cores while this ran, so the",
            "absolute numbers are lower bounds of what a quiet machine gives; compare rows with each other.",
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
