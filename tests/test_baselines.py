"""The pca, knn and transform_classifier detectors: exact numbers, bad settings, tiny real runs."""

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import compose_config, needs_mnist
from hydra.utils import instantiate
from zoo_runs import ONE_VS_ZERO, overrides_for

from anomaly_bench.errors import ConfigError
from anomaly_bench.models.base import EPOCH_SETTINGS
from anomaly_bench.models.knn import nearest_distances
from anomaly_bench.models.transform_classifier import (
    MAX_TRANSFORMS,
    TRANSFORMS,
    RandomTransformBatches,
    apply_transform,
    apply_transforms,
    dirichlet_mle,
    inverse_digamma,
    random_augment,
    scoring_views,
    translate,
)
from anomaly_bench.run import run

# Normal 1 vs anomaly 0 on a few hundred images: large enough that a working detector is far above chance.
COMMON = [
    "metrics.json",
    "scores.csv",
    "score_histogram.png",
    "roc_curve.png",
    "pr_curve.png",
    "confusion_matrix.png",
    "run.log",
    ".hydra/config.yaml",
]


def build(*overrides: str):
    detector = instantiate(compose_config(list(overrides)).model, _convert_="all")
    detector.check((28, 28, 1))
    return detector


# ---- knn distances ---------------------------------------------------------------------------


def test_knn_distances_by_hand():
    reference = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0], [0.0, 1.0]])
    queries = np.array([[0.0, 0.0], [6.0, 8.0]])
    distances, indices = nearest_distances(queries, reference, k=2, block_size=1)
    np.testing.assert_allclose(distances, [[0.0, 1.0], [0.0, 5.0]], atol=1e-12)
    np.testing.assert_array_equal(indices, [[0, 3], [2, 1]])


@pytest.mark.parametrize("k, block_size", [(1, 7), (5, 16), (40, 1000), (200, 33)])
def test_knn_distances_match_brute_force(k, block_size):
    rng = np.random.default_rng(3)
    reference, queries = rng.random((200, 784)), rng.random((50, 784))
    brute = np.sort(np.linalg.norm(queries[:, None, :] - reference[None, :, :], axis=2), axis=1)[:, :k]
    distances, indices = nearest_distances(queries, reference, k, block_size)
    np.testing.assert_allclose(distances, brute, rtol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(queries[:, None, :] - reference[indices], axis=2), brute, rtol=1e-10)


def test_knn_score_is_the_mean_of_the_k_nearest_distances():
    detector = build("model=knn", "model.k=3")
    rng = np.random.default_rng(0)
    train = rng.random((30, 28, 28, 1)).astype("float32")
    detector.reference = train.reshape(30, -1).astype(np.float64)
    detector.reference_images, detector.reference_norms = train, None
    test = rng.random((4, 28, 28, 1)).astype("float32")
    brute = np.sort(np.linalg.norm(test.reshape(4, 1, -1) - train.reshape(1, 30, -1), axis=2), axis=1)[:, :3]
    np.testing.assert_allclose(detector.score(test), brute.mean(axis=1), rtol=1e-6)
    nearest = np.argmin(np.linalg.norm(test.reshape(4, 1, -1) - train.reshape(1, 30, -1), axis=2), axis=1)
    np.testing.assert_array_equal(detector.reconstruct(test), train[nearest])


# ---- transformations -------------------------------------------------------------------------


def test_there_are_72_distinct_transformations_untranslated_first():
    assert MAX_TRANSFORMS == 72 and len(set(TRANSFORMS)) == 72
    assert all(shift == (0, 0) for _, shift, _ in TRANSFORMS[:8])
    image = np.random.default_rng(0).random((1, 28, 28, 1))
    outputs = [apply_transform(image, t, 7).tobytes() for t in range(72)]
    assert len(set(outputs)) == 72


@pytest.mark.parametrize("views", [1, 3, 8])
def test_an_epoch_shows_each_image_under_views_distinct_transformations(views):
    images = np.arange(5, dtype="float32").reshape(5, 1, 1, 1) * np.ones((5, 4, 4, 1), dtype="float32")
    batches = RandomTransformBatches(images, n_transforms=8, shift=1, batch_size=4, seed=0, views=views)
    assert len(batches) == -(-5 * views // 4)
    for _ in range(2):  # the draw is renewed each epoch
        seen = {}
        for b in range(len(batches)):
            x, targets = batches[b]
            for image, target in zip(x, targets):
                untransformed = int(np.rint(image.max()))  # every pixel of image i is i before transforming
                seen.setdefault(untransformed, []).append(int(target))
        assert sorted(seen) == list(range(5))
        assert all(len(t) == views and len(set(t)) == views for t in seen.values())
        batches.on_epoch_end()


def test_transformations_by_hand():
    image = np.arange(16, dtype=float).reshape(1, 4, 4, 1)
    identity, rot90, flipped = (
        TRANSFORMS.index(spec) for spec in [(False, (0, 0), 0), (False, (0, 0), 1), (True, (0, 0), 0)]
    )
    np.testing.assert_array_equal(apply_transform(image, identity, 1), image)
    np.testing.assert_array_equal(apply_transform(image, rot90, 1)[0, :, :, 0], np.rot90(image[0, :, :, 0]))
    np.testing.assert_array_equal(apply_transform(image, flipped, 1)[0, :, :, 0], image[0, :, ::-1, 0])
    right = TRANSFORMS.index((False, (0, 1), 0))
    shifted = apply_transform(image, right, 1)[0, :, :, 0]
    np.testing.assert_array_equal(shifted[:, 0], 0)
    np.testing.assert_array_equal(shifted[:, 1:], image[0, :, :3, 0])
    batch = np.repeat(image, 3, axis=0)
    mixed = apply_transforms(batch, np.array([identity, rot90, identity]), 1)
    np.testing.assert_array_equal(mixed[1], apply_transform(image, rot90, 1)[0])
    np.testing.assert_array_equal(mixed[[0, 2]], batch[[0, 2]])


def test_augmentation_mirrors_and_shifts_each_image_by_its_own_draw():
    image = np.arange(16, dtype=float).reshape(1, 4, 4, 1)
    batch = np.repeat(image, 200, axis=0)
    assert np.array_equal(random_augment(batch, np.random.default_rng(0), False, 0), batch)
    mirrored = random_augment(batch, np.random.default_rng(0), True, 0)
    is_mirror = (mirrored == image[:, :, ::-1]).all(axis=(1, 2, 3))
    assert ((mirrored == image).all(axis=(1, 2, 3)) ^ is_mirror).all() and 70 < is_mirror.sum() < 130
    shifted = random_augment(batch, np.random.default_rng(0), False, 1)
    candidates = [translate(image, dy, dx)[0] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    matches = [[np.array_equal(x, c) for c in candidates] for x in shifted]
    assert all(any(m) for m in matches) and len({m.index(True) for m in matches}) == 9


def test_scoring_views_by_hand():
    images = np.arange(2 * 16, dtype=float).reshape(2, 4, 4, 1)
    assert len(scoring_views(images, "none", 1)) == 1
    original, mirror = scoring_views(images, "flip", 1)
    np.testing.assert_array_equal(original, images)
    np.testing.assert_array_equal(mirror, images[:, :, ::-1])
    views = scoring_views(images, "flip_shift", 1)
    assert len(views) == 10
    np.testing.assert_array_equal(views[2], translate(images, 1, 0))
    np.testing.assert_array_equal(views[9], translate(images[:, :, ::-1], 0, -1))


def test_dirichlet_fit_recovers_known_concentrations():
    from scipy.special import digamma

    x = np.array([0.05, 0.7, 1.0, 3.5, 80.0])
    np.testing.assert_allclose(inverse_digamma(digamma(x)), x, rtol=1e-8)
    alpha = np.array([5.0, 1.0, 0.5, 2.0])
    samples = np.random.default_rng(0).dirichlet(alpha, 20000)
    np.testing.assert_allclose(dirichlet_mle(np.log(samples)), alpha, rtol=0.03)


# ---- pca -------------------------------------------------------------------------------------


def test_pca_score_is_the_squared_error_of_the_projection(tmp_path):
    detector = build("model=pca", "model.n_components=3")
    from anomaly_bench.data.split import Split, Splits

    rng = np.random.default_rng(1)
    x = rng.random((50, 28, 28, 1)).astype("float32")
    empty = Split(x[:0], np.zeros(0, int), np.zeros(0, int), np.zeros(0, int))
    detector.fit(Splits(Split(x, np.zeros(50, int), np.zeros(50, int), np.arange(50)), empty, empty, [1], [0]), None)
    detector.save(tmp_path)
    with np.load(tmp_path / "pca.npz", allow_pickle=False) as saved:
        components, mean = saved["components"], saved["mean"]
    assert components.shape == (3, 784)
    flat = x.reshape(50, -1).astype(np.float64)
    rebuilt = mean + (flat - mean) @ components.T @ components
    np.testing.assert_allclose(detector.score(x), ((flat - rebuilt) ** 2).sum(axis=1), rtol=1e-4)


# ---- bad settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=knn", "model.k=0"], "model.k=0 must be a positive number"),
        (["model=knn", "model.k=-3"], "model.k=-3"),
        (
            ["model=knn", "model.features=edges"],
            "model.features='edges' is not allowed; choose one of: pixels, encoder",
        ),
        (["model=knn", "model.block_size=0"], "model.block_size=0"),
        (["model=transform_classifier", "model.n_transforms=1"], "model.n_transforms=1 is not allowed; choose 2-72"),
        (["model=transform_classifier", "model.n_transforms=73"], "model.n_transforms=73 is not allowed; choose 2-72"),
        (["model=transform_classifier", "model.score=entropy"], "model.score='entropy' is not allowed"),
        (["model=transform_classifier", "model.shift=0"], "model.shift=0 must be a whole number of pixels >= 1"),
        (["model=transform_classifier", "model.views_per_image=9"], "model.views_per_image=9 must be a count 1-8"),
        (["model=transform_classifier", "model.views_per_image=0"], "model.views_per_image=0 must be a count"),
        (
            ["model=transform_classifier", "model.augment_flip=true"],
            "model.n_transforms=8 includes the mirror image among the transformations",
        ),
        (
            ["model=transform_classifier", "model.n_transforms=4", "model.tta=flip_shift"],
            "shifts by model.augment_shift pixels, which is 0",
        ),
        (["model=transform_classifier", "model.tta=mean"], "model.tta='mean' is not allowed"),
        (["model=transform_classifier", "model.augment_shift=-1"], "model.augment_shift=-1 must be a whole number"),
        (["model=pca", "model.n_components=0"], "model.n_components=0 must be a count >= 1"),
        (["model=pca", "model.n_components=1.5"], "model.n_components=1.5"),
    ],
)
def test_bad_settings_raise_config_error_before_data_is_loaded(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(compose_config(overrides + ["dataset.path=/nonexistent", "dataset.source=explicit"]), tmp_path)
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize(
    "model, override, message",
    [
        ("transform_classifier", "model.shift=14", "model.shift=14 must be a whole number of pixels 1-13"),
        ("transform_classifier", "model.augment_shift=14", "model.augment_shift=14 must be 0-13 pixels"),
        (
            "transform_classifier",
            "model.network=[{class_name: ResidualBlock, filters: 8, strides: 3}]",
            "ResidualBlock takes filters (a positive integer) and strides (1 or 2) only",
        ),
        ("pca", "model.n_components=785", "model.n_components=785 must be a count 1-784 (the pixels per image)"),
    ],
)
def test_settings_the_image_shape_rules_out_fail_in_check(model, override, message):
    detector = instantiate(compose_config([f"model={model}", override]).model, _convert_="all")
    detector.check()  # the settings alone pass
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        detector.check((28, 28, 1))


@needs_mnist
def test_k_above_the_training_images_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="model.k=400 exceeds the 270 training images"):
        run(compose_config(["model=knn", "model.k=400", "dataset.max_train=300"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # found after loading, before the run folder starts


def test_cli_exits_2_for_a_bad_k(tmp_path, monkeypatch, cli_main):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli_main("model=knn", "model.k=0", "paths.output_dir=out")
    assert code == 2 and "model.k=0 must be a positive number" in err, err
    assert "Traceback" not in err
    assert not list((tmp_path / "out").rglob("metrics.json"))


# ---- what a detector trains with -------------------------------------------------------------

GAN_OWN = ("trainer.optimizer", "trainer.learning_rate", "trainer.lr_schedule", "trainer.early_stopping")


@pytest.mark.parametrize(
    "overrides, by_epochs, unused",
    [
        (["model=pca"], False, EPOCH_SETTINGS),
        (["model=knn"], False, EPOCH_SETTINGS),
        (["model=knn", "model.features=encoder"], True, ()),
        (["model=ocsvm"], False, EPOCH_SETTINGS),
        (["model=conv_ae"], True, ()),
        (["model=anogan"], True, GAN_OWN),
        (["model=ensemble"], True, ()),
        (
            ["model=ensemble", "~model.members.transform_classifier", "+model@model.members.pca=pca"],
            False,
            EPOCH_SETTINGS,
        ),
        (["model=ensemble", "~model.members.transform_classifier", "+model@model.members.gan=anogan"], True, GAN_OWN),
    ],
)
def test_detectors_say_whether_they_train_by_epochs(overrides, by_epochs, unused):
    detector = instantiate(compose_config(overrides).model, _convert_="all")
    assert detector.trains_by_epochs is by_epochs and detector.unused_settings == unused
    assert detector.describe()["unused_settings"] == list(unused)


# ---- tiny real runs --------------------------------------------------------------------------


def check_contract(folder: Path, metrics: dict, files: list[str], min_auroc: float) -> None:
    for name in COMMON + files:
        assert (folder / name).exists(), name
    on_disk = json.loads((folder / "metrics.json").read_text())
    assert on_disk["status"] == "completed" and on_disk["auroc"] == metrics["auroc"]
    scores = pd.read_csv(folder / "scores.csv")
    assert len(scores) == on_disk["n_test"] and set(scores["class"]) == {0, 1}
    assert metrics["auroc"] > min_auroc, metrics["auroc"]


@needs_mnist
def test_pca_tiny_run(tmp_path):
    metrics = run(compose_config(["model=pca", "model.n_components=16"] + ONE_VS_ZERO), tmp_path)
    check_contract(tmp_path, metrics, ["pca.npz", "reconstructions.png"], 0.98)
    assert metrics["detector"]["n_components_fitted"] == 16 and metrics["detector"]["parameters_file"] == "pca.npz"
    assert metrics["detector"]["unused_settings"] == list(EPOCH_SETTINGS)
    log = (tmp_path / "run.log").read_text()
    assert "stage fit: pca in one pass, not by epochs (trainer.epochs, trainer.batch_size" in log
    assert "for up to" not in log


@needs_mnist
def test_knn_pixels_tiny_run(tmp_path):
    metrics = run(compose_config(["model=knn"] + ONE_VS_ZERO), tmp_path)
    check_contract(tmp_path, metrics, ["knn_reference.npz", "reconstructions.png"], 0.98)
    with np.load(tmp_path / "knn_reference.npz", allow_pickle=False) as saved:
        assert len(saved["train_index"]) == metrics["n_train"] and int(saved["k"]) == 2


@needs_mnist
def test_knn_encoder_tiny_run(shared_run):
    tmp_path, metrics = shared_run(overrides_for("knn_encoder"))
    check_contract(tmp_path, metrics, ["knn_reference.npz", "model.keras", "history.csv"], 0.9)
    assert metrics["detector"]["feature_dim"] == 4 * 4 * 8
    assert "stage fit: knn for up to 2 epochs" in (tmp_path / "run.log").read_text()
    keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)


@needs_mnist
@pytest.mark.parametrize(
    "case, files",
    [
        pytest.param("transform_classifier_cross_entropy", [], marks=pytest.mark.slow),
        ("transform_classifier", ["dirichlet.npz"]),
    ],
)
def test_transform_classifier_tiny_run(shared_run, case, files):
    tmp_path, metrics = shared_run(overrides_for(case))
    check_contract(tmp_path, metrics, ["model.keras", "history.csv", "training_curve.png", *files], 0.85)
    history = pd.read_csv(tmp_path / "history.csv")
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(history.columns) and len(history) == 3
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert reloaded.output.shape[-1] == metrics["detector"]["n_transforms"] == 8
