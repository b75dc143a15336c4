"""The five autoencoders of article 000: architectures, training switches, tiny real runs."""

import json

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import TINY, compose_config, needs_mnist
from hydra.utils import instantiate
from zoo_runs import overrides_for

from anomaly_bench.models.autoencoder import ClippedGaussianNoise, CodeL1Penalty
from anomaly_bench.run import run

AUTOENCODERS = ["undercomplete_ae", "sparse_ae", "deep_ae", "conv_ae", "denoising_ae"]
CONTRACT = [
    "metrics.json",
    "scores.csv",
    "history.csv",
    "training_curve.png",
    "score_histogram.png",
    "roc_curve.png",
    "pr_curve.png",
    "confusion_matrix.png",
    "reconstructions.png",
    "model.keras",
    "run.log",
    ".hydra/config.yaml",
]
METRIC_KEYS = [
    "status",
    "auroc",
    "auprc",
    "threshold",
    "threshold_rule",
    "precision",
    "recall",
    "f1",
    "accuracy",
    "confusion_matrix",
    "flagged_rate_by_class",
    "n_train",
    "n_val",
    "n_test",
    "data_source",
    "seed",
    "timings",
    "versions",
    "detector",
]


def build(model: str):
    detector = instantiate(compose_config([f"model={model}"]).model, _convert_="all")
    detector.check((28, 28, 1))
    return detector


@pytest.mark.parametrize(
    "model, params",
    [
        ("conv_ae", 4385),  # the article's model summary
        ("undercomplete_ae", 784 * 32 + 32 + 32 * 784 + 784),
        (
            "deep_ae",
            (784 * 128 + 128)
            + (128 * 64 + 64)
            + (64 * 32 + 32)
            + (32 * 64 + 64)
            + (64 * 128 + 128)
            + (128 * 784 + 784),
        ),
        ("denoising_ae", 320 + 9248 + 9248 + 9248 + 289),
    ],
)
def test_parameter_counts_match_the_article(model, params):
    assert build(model).model.count_params() == params


def test_code_shapes():
    assert build("conv_ae").encoder.output.shape[1:] == (4, 4, 8)
    assert build("undercomplete_ae").encoder.output.shape[1:] == (32,)


def test_denoising_noise_only_in_training_and_clipped():
    layer = ClippedGaussianNoise(0.5, seed=1)
    x = np.full((4, 28, 28, 1), 0.5, dtype="float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    noisy = keras.ops.convert_to_numpy(layer(x, training=True))
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0 and np.abs(noisy - x).mean() > 0.1


def test_sparse_penalty_is_l1_of_the_code_per_image():
    layer = CodeL1Penalty(0.01)
    code = np.array([[1.0, -2.0], [3.0, 0.0]], dtype="float32")  # per-image L1: 3 and 3
    layer(code)
    assert float(keras.ops.convert_to_numpy(layer.losses[0])) == pytest.approx(0.01 * 3.0)
    assert any(isinstance(l, CodeL1Penalty) for l in build("sparse_ae").model.layers)


def tiny_run(tmp_path, *overrides):
    return run(compose_config(TINY + list(overrides)), tmp_path)


@needs_mnist
@pytest.mark.parametrize("model", AUTOENCODERS)
def test_tiny_end_to_end_run_writes_the_contract(shared_run, model):
    tmp_path, metrics = shared_run(overrides_for(model))
    for name in CONTRACT:
        assert (tmp_path / name).exists(), name
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["status"] == "completed" and on_disk == json.loads(json.dumps(metrics))
    assert all(key in on_disk for key in METRIC_KEYS)
    assert on_disk["data_source"] == "env" and on_disk["model"] == model
    assert (on_disk["n_train"], on_disk["n_val"], on_disk["n_test"]) == (180, 20, 120)
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert list(scores.columns) == ["index", "label", "class", "score", "flagged"] and len(scores) == 120
    assert ((scores.score > on_disk["threshold"]) == scores.flagged.astype(bool)).all()
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert reloaded.count_params() == metrics["detector"]["n_params"]


@needs_mnist
def test_conv_ae_learns_on_real_digits(tmp_path):
    """Loss falls and the AUROC is far above chance on an easy pair (normal 1, anomaly 0)."""
    metrics = run(
        compose_config(
            [
                "dataset.normal_classes=[1]",
                "dataset.anomaly_classes=[0]",
                "dataset.max_train=1000",
                "dataset.max_test=400",
                "trainer.epochs=4",
            ]
        ),
        tmp_path,
    )
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["loss"].iloc[-1] < 0.7 * history["loss"].iloc[0]
    assert metrics["auroc"] > 0.9


@needs_mnist
def test_same_seed_same_metrics_different_seed_different_model(tmp_path, shared_run):
    """The shared run (trainer.seed 0) trained again gives the same numbers; seed 4 does not."""
    folder, first = shared_run(overrides_for("undercomplete_ae"))
    second = run(compose_config([*overrides_for("undercomplete_ae"), "trainer.seed=0"]), tmp_path / "b")
    other = run(compose_config([*overrides_for("undercomplete_ae"), "trainer.seed=4"]), tmp_path / "c")
    assert first["seed"] == second["seed"] == 0
    for key in ("auroc", "auprc", "threshold", "f1"):
        assert first[key] == second[key], key
    pd.testing.assert_frame_equal(pd.read_csv(folder / "scores.csv"), pd.read_csv(tmp_path / "b" / "scores.csv"))
    assert first["threshold"] != other["threshold"]


@needs_mnist
def test_oracle_threshold_is_marked(tmp_path):
    metrics = tiny_run(tmp_path, "model=undercomplete_ae", "threshold=best_f1")
    assert metrics["oracle"] is True and metrics["threshold_rule"] == "best_f1"


@needs_mnist
def test_article003_preset_reports_share_of_zeros_flagged(tmp_path):
    metrics = run(
        compose_config(
            [
                "experiment=article003_digits1to9_vs_0",
                "dataset.max_train=900",
                "dataset.max_test=300",
                "trainer.epochs=2",
            ]
        ),
        tmp_path,
    )
    assert set(metrics["flagged_rate_by_class"]) == {str(c) for c in range(10)}
    assert metrics["threshold_rule"] == "val_mean_std" and metrics["threshold_k"] == 1.0
    assert metrics["n_test_anomalies"] == round(300 * 980 / 10000)  # zeros keep their share of the test set


@needs_mnist
def test_saved_denoising_model_loads_in_a_fresh_process(shared_run):
    """Custom layers reload in safe mode through anomaly_bench.models.load_model."""
    import subprocess
    import sys

    tmp_path, _ = shared_run(overrides_for("denoising_ae"))
    code = (
        "from anomaly_bench.models import load_model; "
        f"m = load_model(r'{tmp_path / 'model.keras'}'); print(m.count_params())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "28353"


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_learning_rate_schedule_sets_each_epochs_rate(schedule):
    from anomaly_bench.config import TrainerConfig
    from anomaly_bench.models.keras_training import fit_model, make_optimizer

    trainer = TrainerConfig(epochs=4, batch_size=4, learning_rate=0.01, lr_schedule=schedule)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=make_optimizer(trainer), loss="mse")
    x = np.arange(24, dtype="float32").reshape(8, 3) / 24
    history = fit_model(model, x, x[:, :1], trainer, None)
    if schedule == "cosine":  # 0.01 * (1 + cos(pi * e / 4)) / 2 for epochs e = 0..3
        np.testing.assert_allclose(history["learning_rate"], [0.01, 0.0085355339, 0.005, 0.0014644661], rtol=1e-6)
        assert float(model.optimizer.learning_rate) == pytest.approx(0.0014644661, rel=1e-6)
    else:
        assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
