"""A user's own images: PNG class folders, MVTec AD trees, CIFAR-10 files, .npz of any size and
channel count, run through every model (on files generated here; nothing is downloaded)."""

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, compose_config, needs_fashion
from image_data import (
    CIFAR_NAMES,
    cifar_arrays,
    digits_npz,
    fashion_folder,
    mvtec_tree,
    write_cifar_binary,
    write_cifar_python,
)
from PIL import Image

from anomaly_bench.data import conform, load_raw, to_float
from anomaly_bench.errors import BadDataError, ConfigError
from anomaly_bench.run import run

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory):
    """Fashion-MNIST as 32 x 32 tinted RGB PNGs, ROOT/{train,test}/<class name>/ (100 + 100 per class)."""
    from conftest import has_dataset

    if not has_dataset("fashion-mnist"):
        pytest.skip("Fashion-MNIST IDX files not found")
    root = tmp_path_factory.mktemp("fashion_png")
    fashion_folder(root, load_raw("fashion_mnist", source="env"), 100, 100)
    return root


@pytest.fixture(scope="module")
def mvtec_root(tmp_path_factory):
    return mvtec_tree(tmp_path_factory.mktemp("mvtec") / "bottle")


def folder_run(root, tmp_path, model, *overrides):
    cfg = compose_config(
        [
            "dataset=folder",
            f"dataset.path={root}",
            "dataset.normal_classes=[trouser]",
            f"model={model}",
            *TINY,
            *overrides,
        ]
    )
    return run(cfg, tmp_path / "run")


# ---------------------------------------------------------------- shape conversion
def test_conform_resizes_and_converts_channels_with_pillow():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (3, 8, 6, 1), dtype=np.uint8)
    assert conform(grey, None, None) is grey  # nothing to do: no copy
    rgb = conform(grey, None, 3)
    assert rgb.shape == (3, 8, 6, 3) and all((rgb[..., c] == grey[..., 0]).all() for c in range(3))
    colour = rng.integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(colour[1]).convert("L"))
    np.testing.assert_array_equal(conform(colour, None, 1)[1, ..., 0], expected)
    resized = conform(colour, (10, 4), None)
    assert resized.shape == (2, 10, 4, 3) and resized.dtype == np.uint8
    np.testing.assert_array_equal(conform(np.full((1, 4, 4, 3), 77, np.uint8), (9, 9), None), 77)
    assert to_float(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]


# ---------------------------------------------------------------- dataset=folder
@needs_fashion
def test_folder_run_refers_to_classes_by_name_and_records_the_data_layer(fashion_root, tmp_path):
    metrics = folder_run(fashion_root, tmp_path, "pca")
    data = metrics["data"]
    assert data["image_shape"] == [32, 32, 3] and data["normal_class_names"] == ["trouser"]
    assert data["class_names"][metrics["normal_classes"][0]] == "trouser" and data["skipped_files"] == []
    assert data["image_cache"]["status"] in ("stored", "hit")  # the fixture folder may have been read before
    assert metrics["test_split"].startswith("official split")
    assert set(metrics["flagged_rate_by_class"]) == {
        "t-shirt",
        "trouser",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle-boot",
    }
    assert metrics["auroc"] > 0.9
    assert (tmp_path / "run" / "reconstructions.png").is_file()


@needs_fashion
@pytest.mark.parametrize("model", ["pca", "knn"])
def test_folder_auroc_is_close_to_the_same_model_on_idx(fashion_root, tmp_path, model):
    """The same images as PNGs (padded to 32 x 32, tinted) rank like the IDX originals."""
    folder = folder_run(fashion_root, tmp_path, model, "dataset.max_train=null", "dataset.max_test=null")
    idx = run(
        compose_config(
            [
                "dataset=fashion_mnist",
                "dataset.normal_classes=[1]",
                f"model={model}",
                "dataset.max_train=100",
                "dataset.max_test=1000",
            ]
        ),
        tmp_path / "idx",
    )
    assert abs(folder["auroc"] - idx["auroc"]) < 0.04, (folder["auroc"], idx["auroc"])


def test_folder_without_train_and_test_gets_a_recorded_stratified_split(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("b", "a", "10", "2"):
        (tmp_path / "d" / name).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).save(tmp_path / "d" / name / f"{i}.png")
    raw = load_raw("folder", path=str(tmp_path / "d"), test_fraction=0.3, split_seed=1)
    assert raw.class_names == ["2", "10", "a", "b"]  # all-digit names numerically, then alphabetically
    assert np.bincount(raw.y_test).tolist() == [3] * 4 and np.bincount(raw.y_train).tolist() == [7] * 4
    assert raw.x_train.shape[1:] == (6, 6, 1) and "stratified 30%" in raw.test_split
    again = load_raw("folder", path=str(tmp_path / "d"), test_fraction=0.3, split_seed=1)
    np.testing.assert_array_equal(raw.x_test, again.x_test)


def _tiny_folder(root: Path, sizes=((8, 8), (8, 8)), modes=("L", "L")) -> Path:
    for name, size, mode in zip(("a", "b"), sizes, modes):
        for part in ("train", "test"):
            (root / part / name).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                Image.new(mode, size[::-1], color=40 * i if mode == "L" else (40 * i, 200, 30)).save(
                    root / part / name / f"{i}.png"
                )
    return root


def test_16_bit_grey_files_are_scaled_to_8_bits_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    for part in ("train", "test"):
        for name in ("a", "b"):
            (tmp_path / part / name).mkdir(parents=True)
            Image.fromarray(values).save(tmp_path / part / name / "0.png")
    raw = load_raw("folder", path=str(tmp_path))
    assert raw.x_train[0, 0, :, 0].tolist() == [0, 1, 128, 255]


def test_unreadable_files_stop_the_run_or_are_skipped_and_listed(tmp_path):
    root = _tiny_folder(tmp_path / "d")
    bad = root / "train" / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(BadDataError, match=r"broken.png: unreadable image .*dataset.skip_unreadable=true"):
        load_raw("folder", path=str(root))
    raw = load_raw("folder", path=str(root), skip_unreadable=True)
    assert raw.info["skipped_files"] == [str(bad)] and len(raw.x_train) == 6


def test_truncated_image_file_is_named(tmp_path):
    root = _tiny_folder(tmp_path / "d", sizes=((64, 64), (64, 64)))
    target = root / "test" / "b" / "1.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(target)
    target.write_bytes(target.read_bytes()[:300])
    with pytest.raises(BadDataError, match="1.png: unreadable image"):
        load_raw("folder", path=str(root))


def test_images_of_different_sizes_need_image_size_and_colour_wins(tmp_path):
    root = _tiny_folder(tmp_path / "d", sizes=((8, 8), (12, 10)), modes=("L", "RGB"))
    with pytest.raises(BadDataError, match=r"differ in size .*dataset.image_size=\[H, W\]"):
        load_raw("folder", path=str(root))
    raw = load_raw("folder", path=str(root), image_size=[16, 16])
    assert raw.x_train.shape == (6, 16, 16, 3) and raw.info["found_channels"] == 3
    assert load_raw("folder", path=str(root), image_size=[4, 4], channels=1).x_test.shape == (6, 4, 4, 1)


@pytest.mark.parametrize(
    "layout, message",
    [
        (lambda r: r.mkdir(), "is empty"),
        (lambda r: (r.mkdir(), Image.new("L", (4, 4)).save(r / "x.png")), "holds images but no class subfolders"),
        (lambda r: (r.mkdir(), (r / "a").mkdir()), "class folder holds no images"),
        (lambda r: r.write_text("x"), "is a file"),
        (lambda r: None, "not found"),
    ],
)
def test_folder_layout_errors_say_what_is_expected(tmp_path, layout, message):
    root = tmp_path / "d"
    layout(root)
    with pytest.raises(BadDataError) as info:
        load_raw("folder", path=str(root))
    assert message in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------- dataset=mvtec
def test_mvtec_run_scores_defect_types_by_name(mvtec_root, tmp_path):
    metrics = run(
        compose_config(
            [
                "dataset=mvtec",
                f"dataset.path={mvtec_root}",
                "dataset.image_size=[32,32]",
                "model=pca",
                "model.n_components=4",
                "threshold=val_percentile",
            ]
        ),
        tmp_path / "r",
    )
    assert metrics["data"]["normal_class_names"] == ["good"]
    assert set(metrics["flagged_rate_by_class"]) == {"good", "hole", "scratch"}
    assert metrics["test_split"].startswith("official MVTec AD split") and metrics["auroc"] > 0.9


def test_mvtec_layout_errors(mvtec_root, tmp_path):
    with pytest.raises(BadDataError, match=r"lacks train/ and test/.*found categories bottle"):
        load_raw("mvtec", path=str(mvtec_root.parent))
    (mvtec_root / "train" / "scratch").mkdir()
    Image.new("RGB", (4, 4)).save(mvtec_root / "train" / "scratch" / "0.png")
    try:
        with pytest.raises(BadDataError, match="must hold only a good/ folder"):
            load_raw("mvtec", path=str(mvtec_root))
    finally:
        (mvtec_root / "train" / "scratch" / "0.png").unlink()
        (mvtec_root / "train" / "scratch").rmdir()


# ---------------------------------------------------------------- dataset=cifar10
def test_cifar10_binary_and_python_formats_read_alike(tmp_path):
    batches = cifar_arrays()
    py = load_raw("cifar10", path=str(write_cifar_python(tmp_path / "cifar-10-batches-py", batches)))
    binary = load_raw("cifar10", path=str(write_cifar_binary(tmp_path / "cifar-10-batches-bin", batches)))
    assert py.x_train.shape == (100, 32, 32, 3) and py.class_names == CIFAR_NAMES
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(py, key), getattr(binary, key))
    data, _ = batches["data_batch_1"]  # planar rows: first 1,024 bytes red, then green, then blue
    assert py.x_train[0, 0, 1].tolist() == [data[0, 1], data[0, 1025], data[0, 2049]]


def test_cifar10_is_found_under_the_data_folder_and_runs_by_class_name(tmp_path, monkeypatch):
    write_cifar_binary(tmp_path / "data" / "cifar-10-batches-bin", cifar_arrays(per_batch=40))
    monkeypatch.setenv("ANOMALY_BENCH_DATA", str(tmp_path / "data"))
    metrics = run(
        compose_config(["dataset=cifar10", "dataset.normal_classes=[cat]", "model=pca", "model.n_components=4"]),
        tmp_path / "r",
    )
    assert metrics["data_source"] == "env" and metrics["data"]["normal_class_names"] == ["cat"]
    assert metrics["data"]["image_shape"] == [32, 32, 3]


class _Exploit:
    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_cifar10_pickle_that_calls_anything_but_numpy_is_refused(tmp_path):
    folder = write_cifar_python(tmp_path / "cifar-10-batches-py", cifar_arrays())
    exploit = _Exploit()
    exploit.marker = tmp_path / "executed"
    with open(folder / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": exploit, b"labels": []}, fh)
    with pytest.raises(BadDataError, match=r"data_batch_3: .*refused to load (posix|os|nt)\.system"):
        load_raw("cifar10", path=str(folder))
    assert not exploit.marker.exists()


# ---------------------------------------------------------------- dataset=npz (scikit-learn's 8 x 8 digits)
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_digits_npz_is_a_real_small_dataset_the_models_learn(tmp_path, dtype):
    path = digits_npz(tmp_path / "digits.npz", dtype)
    metrics = run(
        compose_config(["dataset=npz", f"dataset.path={path}", "dataset.normal_classes=[0]", "model=knn"]),
        tmp_path / "r",
    )
    assert metrics["data"]["image_shape"] == [8, 8, 1] and metrics["auroc"] > 0.95
    assert dtype in metrics["data"]["stored_dtype"]


def test_npz_class_names_name_the_labels(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x_train=rng.random((20, 4, 4)),
        y_train=np.arange(20) % 2,
        x_test=rng.random((10, 4, 4)),
        y_test=np.arange(10) % 2,
        class_names=np.array(["ok", "bad"]),
    )
    raw = load_raw("npz", path=str(tmp_path / "d.npz"))
    assert raw.class_names == ["ok", "bad"]
    np.savez(
        tmp_path / "e.npz",
        x_train=rng.random((20, 4, 4)),
        y_train=np.arange(20) % 3,
        x_test=rng.random((10, 4, 4)),
        y_test=np.arange(10) % 2,
        class_names=np.array(["ok", "bad"]),
    )
    with pytest.raises(BadDataError, match="e.npz: y_train: labels range 0-2; this dataset has classes 0-1"):
        load_raw("npz", path=str(tmp_path / "e.npz"))


# ---------------------------------------------------------------- every model adapts to the image shape
def _zoo_overrides(model: str) -> list[str]:
    if model == "anogan":
        return ["model.search_steps=3", "threshold=fixed"]
    return []


FAST_ZOO = ["conv_ae", "deep_ae"]
ALL_ZOO = sorted(p.stem for p in (TESTS.parent / "conf" / "model").glob("*.yaml"))


@needs_fashion
@pytest.mark.parametrize("model", [m if m in FAST_ZOO else pytest.param(m, marks=pytest.mark.slow) for m in ALL_ZOO])
def test_every_model_runs_on_32x32_rgb(fashion_root, tmp_path, model):
    metrics = folder_run(fashion_root, tmp_path, model, *_zoo_overrides(model))
    assert metrics["status"] == "completed" and metrics["data"]["image_shape"] == [32, 32, 3]
    scores = pd.read_csv(tmp_path / "run" / "scores.csv")
    assert len(scores) == metrics["n_test"] and np.isfinite(scores["score"]).all()


@pytest.mark.parametrize(
    "model, size, message",
    [
        (
            "conv_ae",
            [30, 30],
            "model.decoder ends in shape (32, 32, 3), but reconstructions must have the image shape (30, 30, 3)",
        ),
        ("vae", [30, 30], "the image sides 30x30 must divide by 4"),
        ("deep_svdd", [30, 30], "do not divide the image sides 30x30"),
        ("anogan", [30, 30], "the image sides 30x30 are not divisible by 4"),
        ("transform_classifier", [32, 24], "needs square images; these are 32x24"),
    ],
)
def test_shapes_an_architecture_cannot_take_fail_in_one_line_before_the_folder(
    mvtec_root, tmp_path, model, size, message
):
    cfg = compose_config(
        ["dataset=mvtec", f"dataset.path={mvtec_root}", f"dataset.image_size={size}".replace(" ", ""), f"model={model}"]
    )
    with pytest.raises(ConfigError) as info:
        run(cfg, tmp_path / "r")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "r").exists()


def test_cli_bad_data_exits_2_with_one_line_and_no_folder(tmp_path, monkeypatch, cli_main):
    np.savez(
        tmp_path / "d.npz",
        x_train=np.zeros((60, 8, 8)),
        y_train=np.zeros(50, int),
        x_test=np.zeros((10, 8, 8)),
        y_test=np.zeros(10, int),
    )
    monkeypatch.chdir(tmp_path)
    code, _, err = cli_main("dataset=npz", f"dataset.path={tmp_path / 'd.npz'}", "model=pca", "paths.output_dir=out")
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("anomaly-bench: error:")]
    assert len(errors) == 1 and "d.npz: y_train: 50 labels for 60 images" in errors[0], err
    assert "Traceback" not in err
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
