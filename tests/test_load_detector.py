"""Every model of the zoo: a tiny run, then load_detector on its folder gives back scores.csv and its flags."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import CONF_DIR, compose_config, needs_mnist
from PIL import Image
from sklearn.covariance import EllipticEnvelope

import anomaly_bench
from anomaly_bench import predict
from anomaly_bench.data import load_raw
from anomaly_bench.errors import ConfigError
from anomaly_bench.models.classical import PixelDetector
from anomaly_bench.run import run
from anomaly_bench.run_folder import DETECTOR_FILE, METRICS_FILE

SMALL = [
    "dataset.normal_classes=[1]",
    "dataset.anomaly_classes=[0]",
    "dataset.max_train=200",
    "dataset.max_test=120",
    "trainer.epochs=1",
    "trainer.batch_size=64",
]
# Every model YAML, so a model added to conf/model/ is covered without touching this file,
# plus the variants whose saved state differs (encoder features, PCA first, f-AnoGAN encoder).
VARIANTS = {
    "anogan": ["model.search_steps=3", "model.sample_every=0", "model.checkpoint_every=0"],
    "anogan_encoder": [
        "model=anogan",
        "model.scoring=encoder",
        "model.encoder_epochs=1",
        "model.sample_every=0",
        "model.checkpoint_every=0",
    ],
    "knn_encoder": ["model=knn", "model.features=encoder"],
    "ocsvm_pca": ["model=ocsvm", "model.pca_components=10"],
    "isolation_forest_pca": ["model=isolation_forest", "model.pca_components=10"],
    "transform_classifier_cross_entropy": ["model=transform_classifier", "model.score=cross_entropy"],
    "ensemble_with_pca": ["model=ensemble", "+model@model.members.pca=pca"],
}
N_PNG = 16
# Variants whose load path another case already covers: run with `pytest -m slow`.
SLOW = {"ocsvm_pca", "transform_classifier_cross_entropy", "ensemble_with_pca"}
CASES = [
    pytest.param(case, marks=pytest.mark.slow) if case in SLOW else case
    for case in sorted({p.stem for p in (CONF_DIR / "model").glob("*.yaml")} | set(VARIANTS))
]


def overrides_for(case: str) -> list[str]:
    extra = VARIANTS.get(case, [])
    return (extra if any(o.startswith("model=") for o in extra) else [f"model={case}", *extra]) + SMALL


def rebuilt_test_images(run_dir, index: np.ndarray) -> np.ndarray:
    """The run's test images rebuilt from the dataset it used, as uint8 N x H x W x C."""
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    raw = load_raw(metrics["dataset"])
    images = raw.x_test[index]
    return images[..., None] if images.ndim == 3 else images


def export_png(images: np.ndarray, index, folder) -> None:
    """Test images as 8-bit PNG files named in scores.csv order."""
    folder.mkdir()
    for i, (image, source_index) in enumerate(zip(images, index)):
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
            folder / f"{i:03d}_test{source_index}.png"
        )


def assert_same_decisions(trained, scores: np.ndarray, expected: pd.DataFrame) -> None:
    np.testing.assert_allclose(scores, expected["score"].to_numpy(), rtol=1e-4, atol=1e-6)
    flagged, recorded = trained.flag(scores), expected["flagged"].to_numpy().astype(bool)
    # Only an image whose score sits within float noise of the threshold may be decided differently.
    near = np.isclose(expected["score"].to_numpy(), trained.threshold, rtol=1e-4, atol=1e-6)
    assert np.array_equal(flagged[~near], recorded[~near])


@needs_mnist
@pytest.mark.parametrize("case", CASES)
def test_loaded_detector_reproduces_the_runs_scores_and_flags(tmp_path, case):
    metrics = run(compose_config(overrides_for(case)), tmp_path)
    facts = json.loads((tmp_path / DETECTOR_FILE).read_text())
    assert facts["preprocessing"]["image_shape"] == [28, 28, 1]
    assert facts["threshold"]["value"] == metrics["threshold"]
    assert facts["threshold"]["threshold_rule"] == metrics["threshold_rule"] == "val_mean_std"
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.joblib"))

    trained = anomaly_bench.load_detector(tmp_path)
    expected = pd.read_csv(tmp_path / "scores.csv")
    uint8_images = rebuilt_test_images(tmp_path, expected["index"].to_numpy())
    assert (trained.threshold, trained.threshold_rule) == (metrics["threshold"], "val_mean_std")
    assert_same_decisions(trained, trained.score(trained.prepare(uint8_images)), expected)

    # The same images as PNG files through the predict command give the same scores and flags.
    pngs = tmp_path.parent / f"{case}_png"
    export_png(uint8_images[:N_PNG], expected["index"][:N_PNG], pngs)
    out = tmp_path.parent / f"{case}_predictions"
    assert predict.main([str(tmp_path), str(pngs), "--out", str(out)]) == 0
    predicted = pd.read_csv(out / "predictions.csv")
    assert list(predicted["source"]) == sorted(str(p) for p in pngs.iterdir())
    assert_same_decisions(trained, predicted["score"].to_numpy(), expected[:N_PNG])
    assert (predicted["flagged"].to_numpy() == trained.flag(predicted["score"].to_numpy())).all()
    assert (out / "most_anomalous.png").is_file()


@needs_mnist
def test_a_copied_folder_is_the_same_detector_and_refuses_an_unfinished_run(tmp_path):
    run(compose_config(["model=pca", *SMALL]), tmp_path / "run")
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    trained = anomaly_bench.load_detector(tmp_path / "copy")
    expected = pd.read_csv(tmp_path / "copy" / "scores.csv")
    assert_same_decisions(
        trained, trained.score(trained.prepare(rebuilt_test_images(tmp_path / "copy", expected["index"]))), expected
    )
    # A run still working (or killed) is not a detector.
    metrics = json.loads((tmp_path / "copy" / METRICS_FILE).read_text())
    for status in ("running", "failed"):
        (tmp_path / "copy" / METRICS_FILE).write_text(json.dumps({**metrics, "status": status}))
        with pytest.raises(ConfigError, match=f"status is '{status}', not 'completed'"):
            anomaly_bench.load_detector(tmp_path / "copy")


@needs_mnist
@pytest.mark.parametrize("target", ["os.system", "builtins.eval", "anomaly_bench.run.run", "subprocess.Popen"])
def test_a_saved_config_naming_anything_but_a_detector_is_refused(tmp_path, target):
    run(compose_config(["model=pca", *SMALL]), tmp_path)
    facts = json.loads((tmp_path / DETECTOR_FILE).read_text())
    facts["model"]["_target_"] = target
    (tmp_path / DETECTOR_FILE).write_text(json.dumps(facts))
    with pytest.raises(ConfigError, match="refusing to build it"):
        anomaly_bench.load_detector(tmp_path)


def test_not_a_run_folder_is_refused_in_one_line(tmp_path):
    for folder, expected in [(tmp_path / "absent", "is not a folder"), (tmp_path, "no readable metrics.json")]:
        with pytest.raises(ConfigError, match=expected) as info:
            anomaly_bench.load_detector(folder)
        assert "\n" not in str(info.value)


def test_an_estimator_without_plain_form_says_it_cannot_be_reloaded(tmp_path):
    detector = PixelDetector("envelope", EllipticEnvelope(random_state=0))
    detector.check((2, 2, 1))
    detector.estimator.fit(np.random.default_rng(0).normal(size=(50, 4)))
    assert detector.save(tmp_path) == []
    with pytest.raises(ConfigError, match="cannot be reloaded"):
        detector.load(tmp_path)


@needs_mnist
def test_fit_sees_the_training_and_validation_images_only(tmp_path, monkeypatch):
    from anomaly_bench.models.pca import PCADetector

    seen = {}
    original = PCADetector.fit

    def spy(self, data, trainer):
        seen["fields"] = sorted(vars(data))
        return original(self, data, trainer)

    monkeypatch.setattr(PCADetector, "fit", spy)
    run(compose_config(["model=pca", *SMALL]), tmp_path)
    assert seen["fields"] == ["train", "val"]
