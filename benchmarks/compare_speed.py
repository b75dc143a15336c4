"""How long anomaly-bench-compare takes on 1,000 run folders (target: under 10 s per command).

The folders are synthetic but shaped like real ones: the one-class protocol (5 models x
normal class 0-9 x 20 seeds) with configs composed from the shipped conf/ tree, a complete
metrics.json, and a scores.csv over the full 10,000-image test split whose scores give the
run's AUROC. A few runs are failed or unfinished, as in a real sweep. Each command runs as a
user would type it (a fresh process), so interpreter and import time are included.

    python benchmarks/compare_speed.py [--runs 1000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from scipy.stats import norm

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "compare_speed.md"
MODELS = ("undercomplete_ae", "sparse_ae", "deep_ae", "conv_ae", "denoising_ae")
TEST_IMAGES_PER_CLASS = 1000
BUDGET_S = 10.0
FAILED_EVERY, RUNNING_EVERY = 170, 230  # a handful of broken jobs, as in a real sweep


def base_configs() -> dict[str, dict]:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return {
            m: OmegaConf.to_container(compose(config_name="config", overrides=[f"model={m}"]), resolve=False)
            for m in MODELS
        }


def metrics_for(model: str, cls: int, seed: int, auroc: float, rng: np.random.Generator) -> dict:
    f1 = float(np.clip(auroc - 0.1 + rng.normal(0, 0.02), 0, 1))
    return {
        "status": "completed",
        "started_at": "2024-05-01T10:00:00+00:00",
        "dataset": "mnist",
        "model": model,
        "normal_classes": [cls],
        "anomaly_classes": [c for c in range(10) if c != cls],
        "seed": seed,
        "data_source": "env",
        "data_location": "/data/mnist",
        "test_split": "official test set",
        "n_train": 5400,
        "n_train_anomalies": 0,
        "n_val": 600,
        "n_test": 10000,
        "n_test_anomalies": 9000,
        "versions": {"python": platform.python_version(), "anomaly-bench": "0.1.0", "keras": "3"},
        "auroc": auroc,
        "auprc": float(min(1.0, auroc + 0.05)),
        "threshold": float(rng.uniform(0.01, 0.05)),
        "threshold_rule": "val_mean_std",
        "oracle": False,
        "threshold_k": 2.0,
        "precision": float(min(1.0, f1 + 0.05)),
        "recall": float(max(0.0, f1 - 0.05)),
        "f1": f1,
        "accuracy": float(min(1.0, f1 + 0.02)),
        "confusion_matrix": [[900, 100], [1500, 7500]],
        "flagged_rate_by_class": {str(c): float(rng.uniform()) for c in range(10)},
        "detector": {"supervision": "unsupervised", "n_params": 50992, "code_shape": [32]},
        "artifacts": ["scores.csv", "history.csv", "score_histogram.png", "roc_curve.png", "model.keras"],
        "timings": {
            "fit": float(rng.uniform(20, 60)),
            "score": 0.5,
            "artifacts": 1.2,
            "total": float(rng.uniform(25, 70)),
        },
        "finished_at": "2024-05-01T10:01:00+00:00",
    }


def scores_csv(cls: int, auroc: float, rng: np.random.Generator) -> pd.DataFrame:
    """Normal ~ N(0,1), anomalous ~ N(d,1) with d chosen so the expected AUROC is ``auroc``."""
    classes = np.repeat(np.arange(10), TEST_IMAGES_PER_CLASS)
    labels = (classes != cls).astype(int)
    shift = np.sqrt(2) * norm.ppf(auroc)
    score = rng.normal(labels * shift, 1.0)
    return pd.DataFrame(
        {
            "index": np.arange(len(labels)),
            "label": labels,
            "class": classes,
            "score": score.round(6),
            "flagged": (score > 1.0).astype(int),
        }
    )


def generate(root: Path, n_runs: int) -> Path:
    sweep = root / "multiruns" / "2024-05-01_10-00-00-000000"
    configs, rng = base_configs(), np.random.default_rng(0)
    for job in range(n_runs):
        model, cls, seed = MODELS[job % len(MODELS)], (job // len(MODELS)) % 10, job // (10 * len(MODELS))
        folder = sweep / f"{job}_model={model},dataset.normal_classes=[{cls}],trainer.seed={seed}"
        (folder / ".hydra").mkdir(parents=True)
        config = json.loads(json.dumps(configs[model]))
        config["dataset"]["normal_classes"], config["trainer"]["seed"] = [cls], seed
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        auroc = float(np.clip(0.8 + 0.015 * MODELS.index(model) + 0.01 * cls + rng.normal(0, 0.01), 0.5, 0.999))
        metrics = metrics_for(model, cls, seed, auroc, rng)
        if job % FAILED_EVERY == FAILED_EVERY - 1:
            metrics = {key: metrics[key] for key in ("started_at", "dataset", "model", "seed")}
            metrics.update(status="failed", error="ResourceExhaustedError: out of memory")
            (folder / "error.txt").write_text("Traceback (most recent call last):\nResourceExhaustedError\n")
        elif job % RUNNING_EVERY == RUNNING_EVERY - 1:
            metrics = {"status": "running", "started_at": metrics["started_at"]}
        else:
            scores_csv(cls, auroc, rng).to_csv(folder / "scores.csv", index=False)
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return sweep


def timed(argv: list[str]) -> tuple[float, float, int]:
    """Wall time and CPU time (user + sys) of one fresh process; CPU time is what other
    processes sharing the machine cannot inflate."""
    script = Path(sys.executable).with_name("anomaly-bench-compare")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "anomaly_bench.compare.cli"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([*command, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="generate here and keep the folders")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="compare_speed_"))
    try:
        t0 = time.perf_counter()
        sweep = generate(root, args.runs)
        print(f"generated {args.runs} run folders in {time.perf_counter() - t0:.1f} s under {sweep}")
        report = root / "report.html"  # compare never overwrites a file: each html case writes its own
        cases = [
            ("md, one row per run", [str(sweep)]),
            ("md, --group-by model.name (per-class table)", [str(sweep), "--group-by", "model.name"]),
            (
                "md, --group-by model.name --no-per-class --sort auroc",
                [str(sweep), "--group-by", "model.name", "--no-per-class", "--sort", "auroc"],
            ),
            ("csv, --filter model.name=conv_ae", [str(sweep), "--filter", "model.name=conv_ae", "--format", "csv"]),
            ("html, one row per run (best 20 ROC curves)", [str(sweep), "--format", "html", "--out", str(report)]),
            (
                "html, --group-by model.name (ROC of all runs averaged per model)",
                [str(sweep), "--group-by", "model.name", "--format", "html", "--out", str(root / "report_groups.html")],
            ),
        ]
        rows, load = [], os.getloadavg()[0]
        for name, argv in cases:
            wall, cpu, code = timed(argv)
            rows.append((name, wall, cpu, code))
            print(f"{wall:6.2f} s wall  {cpu:6.2f} s cpu  exit {code}  {name}")
        size_mb = (root / "report_groups.html").stat().st_size / 1e6
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    lines = [
        "# anomaly-bench-compare speed",
        "",
        f"{args.runs} synthetic run folders (one-class protocol: {len(MODELS)} models x 10 normal classes x "
        f"{args.runs // (10 * len(MODELS))} seeds; a few failed/unfinished), each with metrics.json, "
        f".hydra/config.yaml and a {10 * TEST_IMAGES_PER_CLASS}-row scores.csv. "
        f"Wall and CPU (user + sys) time of one fresh `anomaly-bench-compare` process, budget "
        f"{BUDGET_S:.0f} s. The command is single-threaded, so on an idle machine wall time is about "
        f"its CPU time plus file-system waits; here {os.cpu_count()} CPU cores were shared "
        f"(load average {load:.1f} when the timings started). Python {platform.python_version()}. "
        f"Last HTML report: {size_mb:.1f} MB.",
        "",
        "| command | wall time (s) | CPU time (s) | exit code | under budget (wall) |",
        "|---|---|---|---|---|",
        *[
            f"| {name} | {wall:.2f} | {cpu:.2f} | {code} | {'yes' if wall < BUDGET_S else 'NO'} |"
            for name, wall, cpu, code in rows
        ],
        "",
        "Regenerate: `python benchmarks/compare_speed.py`.",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
