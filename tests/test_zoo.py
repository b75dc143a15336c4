"""The model zoo beyond the autoencoders: settings checks, saved models, tiny real runs (MNIST 1 vs 0)."""

import json

import keras
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import CONF_DIR, compose_config, needs_mnist
from hydra.utils import instantiate
from sklearn.covariance import EllipticEnvelope
from sklearn.svm import OneClassSVM
from zoo_runs import EASY_PAIR, overrides_for

from anomaly_bench.config import validate
from anomaly_bench.data import load_raw, to_float
from anomaly_bench.errors import ConfigError
from anomaly_bench.models.classical import PixelDetector
from anomaly_bench.models.deep_svdd import adjust_center
from anomaly_bench.models.estimators import SavedOneClassSVM, save_estimator
from anomaly_bench.models.vae import ConvVAE
from anomaly_bench.run import run


def build(model: str, *overrides: str):
    detector = instantiate(compose_config([f"model={model}", *overrides]).model, _convert_="all")
    detector.check((28, 28, 1))
    return detector


@pytest.mark.parametrize(
    "model, override, key",
    [
        ("ocsvm", "model.estimator.nu=-0.1", "'nu' parameter"),
        ("ae_ocsvm", "model.estimator.gamma=-1.0", "'gamma' parameter"),
        ("isolation_forest", "model.estimator.n_estimators=0", "'n_estimators' parameter"),
        ("ocsvm", "model.pca_components=0", "model.pca_components=0"),
        ("isolation_forest", "model.pca_components=785", "model.pca_components=785"),
        ("vae", "model.latent_dim=0", "model.latent_dim=0"),
        ("vae", "model.score=bce", "model.score='bce'"),
        ("vae", "model.filters=[8,8,8]", "must divide by 8"),
        ("vae", "model.beta=-1.0", "model.beta=-1.0"),
        ("ae_ocsvm", "model.autoencoder.encoder.3.units=0", "model.encoder[3]"),
        ("ae_ocsvm", "model.standardize_codes=sometimes", "model.standardize_codes='sometimes'"),
        ("deep_svdd", "model.rep_dim=0", "model.rep_dim=0"),
        ("deep_svdd", "model.eps=0.0", "model.eps=0.0"),
        ("deep_svdd", "model.pretrain_epochs=-1", "model.pretrain_epochs=-1"),
        ("cnn_classifier", "model.validation_split=1.0", "model.validation_split=1.0"),
        ("cnn_classifier", "model.class_weight=auto", "model.class_weight='auto'"),
    ],
)
def test_bad_settings_fail_in_check_with_one_line(model, override, key):
    with pytest.raises(ConfigError) as info:
        build(model, override)
    message = str(info.value)
    assert key in message and "\n" not in message


def test_architectures_follow_the_articles():
    classifier = build("cnn_classifier").model
    assert [type(l).__name__ for l in classifier.layers[1:]] == [
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Activation",
        "Dropout",
        "Flatten",
        "Dense",
        "Dense",
    ]
    assert classifier.output.shape[1:] == (2,)
    article = build("article002_ae_ocsvm")
    ae = article.autoencoder
    assert [l.units for l in ae.model.layers if isinstance(l, keras.layers.Dense)] == [128, 64, 32, 2, 32, 64, 128, 784]
    assert ae.encoder.output.shape[1:] == (2,) and ae.model.get_layer("code").activation.__name__ == "relu"
    assert not article.standardize_codes and (article.estimator.nu, article.estimator.gamma) == (0.5, "scale")
    default = build("ae_ocsvm")  # the article's network with a linear, wider code, standardised for the SVM
    assert default.standardize_codes and default.code_dim == 32 and default.estimator.gamma == 1.0
    assert default.autoencoder.model.get_layer("code").activation.__name__ == "linear"
    svdd = build("deep_svdd").model
    layers = svdd.encoder.layers
    assert all(not l.use_bias for l in layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense)))
    assert all(not (l.center or l.scale) for l in layers if isinstance(l, keras.layers.BatchNormalization))


def test_classifier_option_brings_the_articles_labelled_anomalies():
    assert compose_config(["model=cnn_classifier"]).dataset.labelled_anomalies == 10
    assert compose_config(["model=cnn_classifier", "dataset.labelled_anomalies=3"]).dataset.labelled_anomalies == 3
    assert compose_config(["model=vae"]).dataset.labelled_anomalies == 0


@pytest.mark.parametrize("score", ["elbo", "mse"])
def test_vae_scores_are_the_per_image_objective_or_reconstruction_error(score):
    detector = build("vae", f"model.score={score}", "model.latent_dim=3")
    detector.model = ConvVAE((28, 28, 1), detector.filters, latent_dim=3, seed=0)
    x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype("float32")
    mean, log_var = (np.asarray(a, dtype=np.float64) for a in detector.model.encoder.predict(x, verbose=0))
    r = np.clip(
        np.asarray(detector.model.decoder.predict(mean.astype("float32"), verbose=0), dtype=np.float64), 1e-7, 1 - 1e-7
    )
    flat_x, flat_r = x.reshape(4, -1), r.reshape(4, -1)
    if score == "mse":
        expected = ((flat_x - flat_r) ** 2).mean(axis=1)
    else:
        bce = -(flat_x * np.log(flat_r) + (1 - flat_x) * np.log(1 - flat_r)).sum(axis=1)
        expected = bce - 0.5 * (1 + log_var - mean**2 - np.exp(log_var)).sum(axis=1)
    np.testing.assert_allclose(detector.score(x), expected, rtol=1e-4)


def swept_models(preset: str) -> list[str]:
    params = yaml.safe_load((CONF_DIR / "experiment" / f"{preset}.yaml").read_text())["hydra"]["sweeper"]["params"]
    return params["model"].split(",")


@pytest.mark.parametrize(
    "preset, models",
    [
        ("article001_cnn_vs_cae", ["cnn_classifier", "article001_cae"]),
        ("article002_ae_ocsvm_vs_ocsvm", ["article002_ae_ocsvm", "ae_ocsvm", "ocsvm"]),
    ],
)
def test_article_presets_sweep_models_that_each_compose_with_the_preset(preset, models):
    assert swept_models(preset) == models
    for model in models:
        cfg = compose_config([f"experiment={preset}", f"model={model}"])
        settings = validate(cfg)
        instantiate(cfg.model, _convert_="all").check((28, 28, 1))
        if preset.startswith("article001"):
            assert (settings.dataset.split.normal_classes, settings.dataset.split.labelled_anomalies) == ([1], 10)
            assert (settings.trainer.epochs, settings.trainer.batch_size, cfg.threshold.name) == (20, 32, "train_mean")
        else:
            assert (
                settings.dataset.name,
                settings.dataset.split.normal_classes,
                settings.dataset.split.anomaly_classes,
            ) == (
                "fashion_mnist",
                [5],
                [7],
            )
            assert (settings.trainer.epochs, cfg.threshold.name, cfg.threshold.value) == (50, "fixed", 0.0)
    if preset.startswith("article001"):
        assert compose_config([f"experiment={preset}", "model=article001_cae"]).model.score == "sse"


def test_center_coordinates_near_zero_move_to_eps():
    np.testing.assert_allclose(adjust_center(np.array([0.05, -0.05, 0.0, 0.5, -2.0]), 0.1), [0.1, -0.1, 0.1, 0.5, -2.0])


@pytest.mark.parametrize("kernel", ["rbf", "linear", "poly"])
def test_saved_one_class_svm_reproduces_decision_function(tmp_path, kernel):
    rng = np.random.default_rng(0)
    svm = OneClassSVM(kernel=kernel, nu=0.3, gamma="scale").fit(rng.normal(size=(200, 5)))
    assert save_estimator(svm, tmp_path, "svm") == ["svm.npz", "svm.json"]
    queries = rng.normal(size=(50, 5))
    np.testing.assert_allclose(
        SavedOneClassSVM.load(tmp_path, "svm").decision_function(queries),
        svm.decision_function(queries),
        rtol=1e-6,
        atol=1e-8,
    )


def test_estimator_without_plain_form_is_not_written_and_metrics_say_why(tmp_path):
    detector = PixelDetector("envelope", EllipticEnvelope(random_state=0))
    detector.estimator.fit(np.random.default_rng(0).uniform(size=(50, 4)))
    assert save_estimator(detector.estimator, tmp_path, "estimator") == [] and not list(tmp_path.iterdir())
    assert "EllipticEnvelope" in detector.describe()["skipped_artifacts"]["estimator.npz"]


# model, files that must exist, files that must not, keras model file (settings: zoo_runs.LEARNING)
ZOO = [
    ("cnn_classifier", ["history.csv", "training_curve.png", "model.keras"], ["reconstructions.png"], True),
    ("vae", ["history.csv", "latent.png", "reconstructions.png", "model.keras"], [], True),
    (
        "ae_ocsvm",
        ["history.csv", "reconstructions.png", "model.keras", "estimator.npz", "estimator.json", "code_scaler.npz"],
        ["latent.png"],
        True,
    ),
    ("ocsvm", ["estimator.npz", "estimator.json"], ["history.csv", "reconstructions.png", "model.keras"], False),
    ("deep_svdd", ["history.csv", "model.keras"], ["reconstructions.png"], True),
]


def load_test_images(index: np.ndarray) -> np.ndarray:
    raw = load_raw("mnist")
    return to_float(raw.x_test[index])


@needs_mnist
def test_isolation_forest_on_pca_codes_writes_the_contract_and_beats_chance(tmp_path):
    overrides = ["model=isolation_forest", *EASY_PAIR, "model.pca_components=20"]
    metrics = run(compose_config(overrides), tmp_path)
    on_disk = check_contract(tmp_path, metrics, "isolation_forest", ["pca.npz", "reconstructions.png", "estimator.npz"])
    for name in ["history.csv", "model.keras"]:
        assert not (tmp_path / name).exists() and name in on_disk["detector"]["skipped_artifacts"], name


def check_contract(folder, metrics: dict, model: str, present: list[str]) -> dict:
    """The files every completed run writes plus the model's own, 300 test scores, AUROC above 0.8."""
    on_disk = json.loads((folder / "metrics.json").read_text())
    assert on_disk["status"] == "completed" and on_disk["model"] == model
    assert on_disk["detector"]["supervision"] == ("supervised" if model == "cnn_classifier" else "unsupervised")
    for name in ["scores.csv", "roc_curve.png", "score_histogram.png", "confusion_matrix.png", *present]:
        assert (folder / name).is_file(), name
    assert len(pd.read_csv(folder / "scores.csv")) == on_disk["n_test"] == 300
    assert metrics["auroc"] > 0.8, metrics["auroc"]
    return on_disk


@needs_mnist
@pytest.mark.parametrize("model, present, absent, is_keras", ZOO, ids=[z[0] for z in ZOO])
def test_tiny_run_writes_the_contract_and_beats_chance(shared_run, model, present, absent, is_keras):
    """The run load_detector tests load too (zoo_runs.LEARNING): trained once per test session."""
    tmp_path, metrics = shared_run(overrides_for(model))
    on_disk = check_contract(tmp_path, metrics, model, present)
    for name in absent:
        assert not (tmp_path / name).exists(), name
        assert name in on_disk["detector"]["skipped_artifacts"], name
    scores = pd.read_csv(tmp_path / "scores.csv")
    images, expected = load_test_images(scores["index"].to_numpy()[:50]), scores.score.to_numpy()[:50]
    if is_keras:
        reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
        assert reloaded.count_params() > 0
    # The saved files alone give back the run's scores.
    if model == "cnn_classifier":
        np.testing.assert_allclose(reloaded.predict(images, verbose=0)[:, 1], expected, rtol=1e-4, atol=1e-6)
    if model == "vae":
        detector = build("vae")
        detector.model = reloaded
        np.testing.assert_allclose(detector.score(images), expected, rtol=1e-4)
    if model == "deep_svdd":  # the centre travels inside model.keras
        center = keras.ops.convert_to_numpy(reloaded.center)
        assert np.abs(center).min() >= 0.1 - 1e-6
        z = reloaded.predict(images, verbose=0)
        np.testing.assert_allclose(((z - center) ** 2).sum(axis=1), expected, rtol=1e-3, atol=1e-5)
    if model == "ae_ocsvm":  # encoder = the reloaded autoencoder up to its code layer, then the saved scaling
        codes = keras.Model(reloaded.inputs, reloaded.get_layer("code").output).predict(images, verbose=0)
        with np.load(tmp_path / "code_scaler.npz", allow_pickle=False) as scaler:
            features = (codes - scaler["mean"]) / scaler["scale"]
        saved = SavedOneClassSVM.load(tmp_path, "estimator")
        np.testing.assert_allclose(-saved.decision_function(features), expected, rtol=1e-5, atol=1e-5)
    if model == "ocsvm":
        saved = SavedOneClassSVM.load(tmp_path, "estimator")
        np.testing.assert_allclose(-saved.decision_function(images.reshape(50, -1)), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["model=ocsvm", "model.estimator.nu=-0.5"],
            "'nu' parameter of OneClassSVM must be a float in the range (0.0, 1.0]",
        ),
        (
            ["model=cnn_classifier", "dataset.labelled_anomalies=0"],
            "dataset.labelled_anomalies=0 but model=cnn_classifier",
        ),
    ],
)
def test_cli_bad_model_settings_exit_2_with_one_line(tmp_path, cli_main, args, expected):
    code, _, err = cli_main(*args, f"paths.output_dir={tmp_path}")
    assert code == 2, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("anomaly-bench: error:")]
    assert len(errors) == 1 and expected in errors[0], err[-2000:]
    assert "Traceback" not in err
    assert not list(tmp_path.rglob("metrics.json"))
