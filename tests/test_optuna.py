"""Honest hyperparameter search: a validation AUROC on held-out training images, and Hydra's
real Optuna sweeper plugin (installed by the test extra) surviving a failed trial."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import CONF_DIR, REPO, compose_config, needs_mnist
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from anomaly_bench.config import validate
from anomaly_bench.data.sources import RawDataset
from anomaly_bench.data.split import make_splits
from anomaly_bench.data.validation import validation_anomalies, validation_auroc
from anomaly_bench.errors import ConfigError
from anomaly_bench.run import run
from anomaly_bench.sweep.job import failed_trial_value

TINY_PCA = ["model=pca", "dataset.max_train=300", "dataset.max_test=300"]


def synthetic_raw(n_per_class: int = 50) -> RawDataset:
    rng = np.random.default_rng(0)
    y_train = np.repeat(np.arange(10), n_per_class)
    y_test = np.repeat(np.arange(10), 5)
    return RawDataset(
        rng.integers(0, 256, (len(y_train), 28, 28, 1), dtype=np.uint8),
        y_train,
        rng.integers(0, 256, (len(y_test), 28, 28, 1), dtype=np.uint8),
        y_test,
        "synthetic",
        "memory",
    )


def test_validation_auroc_counts_ordered_pairs():
    # pairs (anomaly > normal): 0.15 > 0.1, 0.3 > 0.1, 0.3 > 0.2 -> 3 of 4
    assert validation_auroc(np.array([0.1, 0.2]), np.array([0.15, 0.3])) == pytest.approx(0.75)
    assert validation_auroc(np.array([0.1]), np.array([])) is None
    assert validation_auroc(np.array([]), np.array([0.3])) is None


@pytest.mark.parametrize("labelled", [0, 30])
def test_held_out_anomalies_are_training_images_never_trained_on(labelled):
    raw = synthetic_raw()
    splits = make_splits(raw, [3], "rest", labelled_anomalies=labelled, seed=5)
    held_out = validation_anomalies(raw, splits, 90, seed=5)
    assert len(held_out) == 90 and held_out.labels.all()
    per_class = np.bincount(held_out.classes, minlength=10)
    assert per_class[3] == 0 and all(abs(n - 10) <= (1 if labelled else 0) for n in np.delete(per_class, 3))
    assert not set(held_out.index) & set(splits.train.index)  # supervised models never train on them
    assert not set(held_out.index) & set(splits.val.index)
    np.testing.assert_allclose(held_out.x[0], raw.x_train[held_out.index[0]] / 255.0, rtol=1e-6)
    again = validation_anomalies(raw, make_splits(raw, [3], "rest", labelled_anomalies=labelled, seed=5), 90, seed=5)
    np.testing.assert_array_equal(again.index, held_out.index)  # a fixed sample for a fixed split seed


def test_held_out_anomalies_follow_anomaly_classes_and_count():
    raw = synthetic_raw()
    splits = make_splits(raw, [0], [7, 8], seed=0)
    assert set(validation_anomalies(raw, splits, 1000, seed=0).classes) == {7, 8}
    assert len(validation_anomalies(raw, splits, 1000, seed=0)) == 100  # all there are
    assert len(validation_anomalies(raw, splits, 0, seed=0)) == 0


def test_negative_val_anomalies_is_bad_input():
    with pytest.raises(ConfigError, match=r"dataset.val_anomalies=-1 must be >= 0"):
        validate(compose_config(["dataset.val_anomalies=-1"]))


@needs_mnist
def test_metrics_json_holds_val_auroc_beside_the_test_metrics(tmp_path):
    metrics = run(compose_config(TINY_PCA), tmp_path / "a")
    assert metrics["n_val_anomalies"] == 200 and 0.5 < metrics["val_auroc"] <= 1.0
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["val_auroc"] == metrics["val_auroc"]
    off = run(compose_config([*TINY_PCA, "dataset.val_anomalies=0"]), tmp_path / "b")
    assert off["val_auroc"] is None and off["n_val_anomalies"] == 0 and off["auroc"] == metrics["auroc"]


def test_optimized_metric_defaults_to_val_auroc():
    assert validate(compose_config([])).optimized_metric == "val_auroc"


@pytest.mark.parametrize(
    "direction, expected",
    [
        ("maximize", 0.0),
        ("minimize", 1.0),
        (["maximize"], 0.0),
        (None, math.nan),
    ],
)
def test_failed_trial_value_is_the_worst_for_the_direction(direction, expected):
    hydra_cfg = OmegaConf.create({"sweeper": {"direction": direction}} if direction else {"sweeper": {}})
    value = failed_trial_value(hydra_cfg)
    assert (math.isnan(value) and math.isnan(expected)) or value == expected


def hydra_compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("preset, model", [("conv_ae_optuna", "conv_ae"), ("pca_optuna", "pca")])
def test_hparams_search_presets_optimise_validation_auroc(preset, model):
    cfg = hydra_compose([f"hparams_search={preset}"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and str(sweeper.direction).endswith("maximize")
    assert cfg.optimized_metric == "val_auroc" and cfg.model.name == model
    assert 1 <= sweeper.n_trials <= 20 and sweeper.params
    validate(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))


# Real Optuna sweeps (a subprocess each, a few runs) are in the slow tier; the default run keeps
# their parts: val_auroc in metrics.json, the presets composing, the failed-trial value.
def optuna_search(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "anomaly_bench", "-m", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@needs_mnist
@pytest.mark.slow
def test_real_optuna_search_survives_a_failed_trial(tmp_path):
    result = optuna_search(
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.direction=maximize",
        "model.n_components=choice(0,16)",
        *TINY_PCA,
        "hydra.sweep.dir=search",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr[-3000:]  # a job failed: the sweep says so, after finishing
    best = yaml.safe_load((tmp_path / "search" / "optimization_results.yaml").read_text())
    summary = pd.read_csv(tmp_path / "search" / "summary.csv")
    assert sorted(summary["status"]) == ["completed", "failed"]
    completed = summary[summary["status"] == "completed"].iloc[0]
    assert best["best_params"] == {"model.n_components": 16}
    assert best["best_value"] == pytest.approx(completed["val_auroc"])  # the objective is val_auroc
    failed_folder = tmp_path / "search" / summary[summary["status"] == "failed"].iloc[0]["folder"]
    assert json.loads((failed_folder / "metrics.json").read_text())["status"] == "failed"


@needs_mnist
@pytest.mark.slow
def test_pca_search_preset_runs_and_picks_the_best_validation_auroc(tmp_path):
    result = optuna_search(
        "hparams_search=pca_optuna", "hydra.sweeper.n_trials=2", *TINY_PCA[1:], "hydra.sweep.dir=search", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    best = yaml.safe_load((tmp_path / "search" / "optimization_results.yaml").read_text())
    summary = pd.read_csv(tmp_path / "search" / "summary.csv")
    assert len(summary) == 2 and (summary["status"] == "completed").all()
    assert best["best_value"] == pytest.approx(summary["val_auroc"].max())
