"""AnoGAN: the run-folder contract of tiny real runs, the latent search's math, bad settings."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import compose_config, needs_mnist
from zoo_runs import overrides_for

from anomaly_bench.errors import ConfigError
from anomaly_bench.models.anogan import AnoGANDetector
from anomaly_bench.models.anogan_networks import (
    AnoGAN,
    anomaly_loss,
    build_discriminator,
    build_generator,
    feature_extractor,
)
from anomaly_bench.models.latent_search import BatchedLatentSearch
from anomaly_bench.run import prepare, run

IMAGE_SHAPE = (28, 28, 1)
ONE_VS_NINE = ["model=anogan", "dataset.normal_classes=[1]", "dataset.anomaly_classes=[9]"]


def _small_networks(seed: int = 0):
    keras.utils.set_random_seed(seed)
    generator = build_generator(8, [32, 16], 5, 0.2, IMAGE_SHAPE)
    discriminator = build_discriminator([16, 32], 5, 0.2, IMAGE_SHAPE)
    return generator, discriminator


def test_anomaly_loss_weights_residual_and_feature_terms():
    x = np.zeros((2, 2, 2, 1), "float32")
    generated = np.array([np.full((2, 2, 1), 0.5), np.full((2, 2, 1), -1.0)], "float32")  # residual sums 2 and 4
    fx = np.zeros((2, 3), "float32")
    f_generated = np.array([[1, 1, 1], [0, 0, 2]], "float32")  # feature sums 3 and 2
    loss = np.asarray(anomaly_loss(x, fx, generated, f_generated, 0.1))
    np.testing.assert_allclose(loss, [0.9 * 2 + 0.1 * 3, 0.9 * 4 + 0.1 * 2], rtol=1e-6)


def test_batched_search_equals_per_image_search_from_the_same_start():
    generator, discriminator = _small_networks()
    features = feature_extractor(discriminator)
    images = np.random.default_rng(1).random((5, *IMAGE_SHAPE)).astype("float32")
    settings = {"lambda_": 0.1, "steps": 15, "learning_rate": 0.05, "seed": 3}
    batched = BatchedLatentSearch(generator, features, batch_size=5, **settings)
    one_by_one = BatchedLatentSearch(generator, features, batch_size=1, **settings)
    z0 = batched.initial_z(5)
    loss_b, gen_b = batched(images, z0)
    loss_1, gen_1 = one_by_one(images, z0)
    np.testing.assert_allclose(loss_b, loss_1, rtol=1e-4)
    np.testing.assert_allclose(gen_b, gen_1, atol=1e-4)
    # The search does optimise: every image ends below its loss at the starting point.
    start = BatchedLatentSearch(generator, features, batch_size=5, **{**settings, "steps": 1})
    loss_after_one_step, _ = start(images, z0)
    assert np.all(loss_b < loss_after_one_step)


def test_search_pads_uneven_chunks_without_changing_results():
    generator, discriminator = _small_networks()
    features = feature_extractor(discriminator)
    images = np.random.default_rng(2).random((7, *IMAGE_SHAPE)).astype("float32")
    settings = {"lambda_": 0.5, "steps": 5, "learning_rate": 0.05, "seed": 0}
    chunked = BatchedLatentSearch(generator, features, batch_size=3, **settings)  # chunks of 3, 3, 1 + 2 padding
    whole = BatchedLatentSearch(generator, features, batch_size=7, **settings)
    z0 = whole.initial_z(7)
    np.testing.assert_allclose(chunked(images, z0)[0], whole(images, z0)[0], rtol=1e-4)


@pytest.mark.parametrize(
    "override, key",
    [
        ({"search_steps": 0}, "model.search_steps"),
        ({"search_steps": -5}, "model.search_steps"),
        ({"latent_dim": 0}, "model.latent_dim"),
        ({"lambda_": 1.5}, "model.lambda_"),
        ({"lambda_": -0.1}, "model.lambda_"),
        ({"scoring": "nearest"}, "model.scoring"),
        ({"search_lr": 0.0}, "model.search_lr"),
        ({"generator_filters": [128, 64, 32]}, "model.generator_filters"),
        ({"discriminator_filters": []}, "model.discriminator_filters"),
        ({"sample_every": -1}, "model.sample_every"),
        ({"beta_1": 1.0}, "model.beta_1"),
    ],
)
def test_bad_settings_raise_one_line_config_errors(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        AnoGANDetector(**override).check(IMAGE_SHAPE)
    assert "\n" not in str(info.value)


def test_cli_rejects_zero_search_steps_with_exit_code_2(tmp_path, cli_main):
    code, _, err = cli_main("model=anogan", "model.search_steps=0", f"paths.output_dir={tmp_path}")
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("anomaly-bench: error:")]
    assert len(errors) == 1 and "model.search_steps=0 must be an integer >= 1" in errors[0], err[-2000:]
    assert "Traceback" not in err
    assert not any(tmp_path.rglob("metrics.json"))


@needs_mnist
def test_tiny_search_run_writes_the_gan_folder_contract(shared_run):
    """The search run of the zoo (load_detector loads it too), trained once per test session."""
    tmp_path, metrics = shared_run(overrides_for("anogan"))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "completed" and saved["detector"]["scoring"] == "search"
    assert saved["detector"]["search_steps"] == 3
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == metrics["n_test"] and np.isfinite(scores["score"]).all()
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history.columns) == ["epoch", "d_loss", "g_loss"] and len(history) == 2
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "discriminator_epoch_002.keras",
        "generator_epoch_002.keras",
    ]
    for name in ("reconstructions.png", "training_curve.png", "score_histogram.png", "roc_curve.png"):
        assert (tmp_path / name).is_file(), name
    model = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert isinstance(model, AnoGAN) and model.encoder is None
    generator = keras.saving.load_model(tmp_path / "checkpoints" / "generator_epoch_002.keras", safe_mode=True)
    z = np.random.default_rng(0).standard_normal((3, model.latent_dim)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(z)), (np.asarray(generator(z)) + 1) / 2, atol=1e-5)


@needs_mnist
def test_tiny_encoder_run_reloads_and_reproduces_its_scores(shared_run):
    """The f-AnoGAN run that load_detector tests load too, trained once per test session."""
    overrides = overrides_for("anogan_encoder")
    tmp_path, _ = shared_run(overrides)
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "completed"
    assert (tmp_path / "encoder_history.csv").is_file() and not (tmp_path / "checkpoints").exists()
    model = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    detector = AnoGANDetector(scoring="encoder")
    detector.gan = model
    _, _, _, _, splits = prepare(compose_config(overrides))
    expected = pd.read_csv(tmp_path / "scores.csv")["score"].to_numpy()
    np.testing.assert_allclose(detector.score(splits.test.x), expected, rtol=1e-4)


@needs_mnist
@pytest.mark.slow
def test_short_training_separates_ones_from_nines(tmp_path):
    """A few epochs on 2,000 training 1s already rank 9s above 1s (about a minute on 2 cores)."""
    overrides = [
        *ONE_VS_NINE,
        "dataset.max_train=2000",
        "dataset.max_test=300",
        "trainer.epochs=5",
        "trainer.batch_size=64",
        "model.scoring=encoder",
        "model.encoder_epochs=3",
        "model.sample_every=0",
        "model.checkpoint_every=0",
    ]
    metrics = run(compose_config(overrides), tmp_path)
    assert metrics["auroc"] > 0.9, metrics["auroc"]
