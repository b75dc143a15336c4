"""Property-based tests: every reader of a file anomaly-bench did not write, fed mutated valid input.

The invariant is the same for all of them: a correct result, or a one-line ConfigError
(BadDataError is one), never another exception, and never memory beyond a bound proportional
to the input's size (tracemalloc's peak, which numpy's allocations report to). Mutations start
from a valid file and flip, cut, insert and overwrite bytes (headers included, so sizes inside
the file become huge), or replace fields of a valid JSON document with arbitrary JSON values.

The default run draws a few examples per reader (``FUZZ_EXAMPLES``); ``-m slow`` runs many more.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import pickle
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sklearn.model_selection  # noqa: F401  (imported here, not inside a measured read)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import anomaly_bench.models  # noqa: F401  (imported here, not inside a measured read)
from anomaly_bench.compare.load import load_run
from anomaly_bench.data import cifar
from anomaly_bench.data.readers import read_idx
from anomaly_bench.data.sources import load_raw
from anomaly_bench.errors import ConfigError
from anomaly_bench.run_files import read_detector_file, read_run_metrics
from anomaly_bench.run_folder import DETECTOR_FILE, METRICS_FILE
from anomaly_bench.trained import detector_facts

FUZZ_EXAMPLES = 20
SLOW_EXAMPLES = 300
#: Memory allowed per byte of input, plus a fixed allowance for the libraries' own buffers.
BYTES_PER_BYTE, BASE_BYTES = 64, 24 * 2**20

fuzz = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
fuzz_slow = settings(fuzz, max_examples=SLOW_EXAMPLES, derandomize=False)


def within_bounds(read: Callable[[], Any], input_bytes: int) -> Any:
    """Call ``read``; a ConfigError must be one line, any other exception fails, and so does a peak
    of traced memory beyond BYTES_PER_BYTE x the input's size + BASE_BYTES."""
    tracemalloc.start()
    try:
        return read()
    except ConfigError as exc:
        assert "\n" not in str(exc).strip(), str(exc)
        return exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak <= BYTES_PER_BYTE * input_bytes + BASE_BYTES, f"peak {peak} bytes for {input_bytes} input bytes"


# ----------------------------------------------------------------------------- mutations
@st.composite
def mutated(draw, base: bytes) -> bytes:
    """``base`` after 1-4 edits: flip a byte, cut the tail, insert bytes, or write a 4-byte big number."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "big"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            number = draw(st.sampled_from([2**31 - 1, 2**32 - 1, 2**30, 65536, 0]))
            data[at : at + 4] = number.to_bytes(4, "big")
    return bytes(data)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["${oc.env:HOME}", "os.system", "anomaly_bench.__main__.Foo", "../x", "/etc/passwd"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found += _paths(value, (*prefix, i))
    return found


@st.composite
def mutated_json(draw, base: dict) -> Any:
    """``base`` with 1-3 fields replaced by arbitrary JSON values or removed."""
    tree = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(tree)))
        if not path:
            tree = draw(JSON_VALUES)
            continue
        parent = tree
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            continue
    return tree


def dumped(tree: Any) -> bytes:
    return json.dumps(tree, allow_nan=True).encode()


# ----------------------------------------------------------------------------- valid inputs
def idx_bytes() -> bytes:
    images = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    return bytes([0, 0, 0x08, 3]) + b"".join(s.to_bytes(4, "big") for s in images.shape) + images.tobytes()


def npz_bytes(compressed: bool) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(
        buffer,
        x_train=rng.integers(0, 256, (6, 4, 4), dtype=np.uint8),
        y_train=np.array([0, 1, 0, 1, 0, 1]),
        x_test=rng.integers(0, 256, (4, 4, 4), dtype=np.uint8),
        y_test=np.array([0, 1, 0, 1]),
    )
    return buffer.getvalue()


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(buffer, format="PNG")
    return buffer.getvalue()


def cifar_binary_bytes() -> bytes:
    return np.arange(2 * cifar.RECORD, dtype=np.int64).astype(np.uint8).tobytes()


def cifar_python_bytes() -> bytes:
    batch = {b"data": np.zeros((2, cifar.RECORD - 1), dtype=np.uint8), b"labels": [0, 1]}
    return pickle.dumps(batch, protocol=2)


DETECTOR = detector_facts(
    {"_target_": "anomaly_bench.models.pca.PCADetector", "name": "pca", "n_components": 2},
    (8, 8, 1),
    0.25,
    {"threshold_rule": "val_mean_std", "oracle": False},
    ["pca.npz"],
)
METRICS = {"status": "completed", "auroc": 0.9, "auprc": 0.8, "precision": 0.7, "recall": 0.6, "f1": 0.65}
METRICS |= {"threshold": 0.25, "threshold_rule": "val_mean_std", "timings": {"total": 1.5}}


# ----------------------------------------------------------------------------- the readers
def check_idx(data: bytes, gzipped: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("t10k-images-idx3-ubyte" + (".gz" if gzipped else ""))
        path.write_bytes(gzip.compress(data) if gzipped else data)
        result = within_bounds(lambda: read_idx(path), path.stat().st_size)
        if isinstance(result, np.ndarray):
            assert result.size * result.itemsize <= len(data)


def check_npz(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        path.write_bytes(data)
        result = within_bounds(lambda: load_raw("npz", path=str(path)), len(data))
        if not isinstance(result, ConfigError):
            assert result.x_train.dtype == np.uint8 and len(result.class_names) <= len(result.y_train) + len(
                result.y_test
            )


def check_image_folder(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("a", "b"):
            (Path(tmp) / name).mkdir()
            for i in range(2):
                (Path(tmp) / name / f"{i}.png").write_bytes(png_bytes())
        (Path(tmp) / "a" / "mutated.png").write_bytes(data)
        result = within_bounds(lambda: load_raw("folder", path=tmp, test_fraction=0.5), 4 * len(data) + 4096)
        if not isinstance(result, ConfigError):
            assert result.x_train.dtype == np.uint8 and result.x_train.ndim == 4


def check_cifar(data: bytes, binary: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / ("cifar-10-batches-bin" if binary else "cifar-10-batches-py")
        folder.mkdir()
        valid = cifar_binary_bytes() if binary else cifar_python_bytes()
        suffix = ".bin" if binary else ""
        for name in cifar.BATCHES:
            (folder / f"{name}{suffix}").write_bytes(data if name == "data_batch_3" else valid)
        result = within_bounds(lambda: load_raw("cifar10", path=str(folder)), 6 * (len(data) + len(valid)))
        if not isinstance(result, ConfigError):
            assert result.x_train.shape[1:] == (32, 32, 3)


def check_detector_json(tree: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = dumped(tree)
        (Path(tmp) / DETECTOR_FILE).write_bytes(data)
        result = within_bounds(lambda: read_detector_file(Path(tmp)), len(data))
        if not isinstance(result, ConfigError):
            assert math.isfinite(result.threshold) and result.image_shape[2] in (1, 3)
            assert all(".." not in name.split("/") and not name.startswith("/") for name in result.files)


def check_metrics_json(tree: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = dumped(tree)
        (Path(tmp) / METRICS_FILE).write_bytes(data)
        result = within_bounds(lambda: read_run_metrics(Path(tmp)), len(data))
        if not isinstance(result, ConfigError):
            assert result["status"] in ("completed", "failed", "running")
        record = within_bounds(lambda: load_run(Path(tmp)), len(data))  # compare never raises
        assert record.status in ("completed", "failed", "running", "corrupt", "no_metrics")


# ----------------------------------------------------------------------------- properties
CASES = {
    "idx": (st.builds(lambda: idx_bytes()).flatmap(mutated), lambda d: check_idx(d, False)),
    "idx_gz": (st.builds(lambda: idx_bytes()).flatmap(mutated), lambda d: check_idx(d, True)),
    "npz": (st.builds(lambda: npz_bytes(False)).flatmap(mutated), check_npz),
    "npz_compressed": (st.builds(lambda: npz_bytes(True)).flatmap(mutated), check_npz),
    "image": (st.builds(png_bytes).flatmap(mutated), check_image_folder),
    "cifar_binary": (st.builds(cifar_binary_bytes).flatmap(mutated), lambda d: check_cifar(d, True)),
    "cifar_python": (st.builds(cifar_python_bytes).flatmap(mutated), lambda d: check_cifar(d, False)),
    "detector_json": (mutated_json(DETECTOR), check_detector_json),
    "metrics_json": (mutated_json(METRICS), check_metrics_json),
}


@pytest.mark.parametrize("reader", sorted(CASES))
def test_mutated_input_gives_a_result_or_one_line(reader):
    strategy, check = CASES[reader]
    fuzz(given(strategy)(check))()


@pytest.mark.slow
@pytest.mark.parametrize("reader", sorted(CASES))
def test_mutated_input_gives_a_result_or_one_line_many_examples(reader):
    strategy, check = CASES[reader]
    fuzz_slow(given(strategy)(check))()


@st.composite
def folder_layouts(draw) -> dict[str, list[str]]:
    """Folder name -> file names, under names that clash with indices, hide, or hold no image."""
    names = st.sampled_from(["0", "2", "10", "a", "good", "train", "test", ".hidden", "broken"])
    files = st.lists(st.sampled_from(["x.png", "y.png", "z.txt", "w.jpg"]), max_size=3, unique=True)
    return draw(st.dictionaries(names, files, max_size=4))


def check_layout(layout: dict[str, list[str]], kind: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for folder, files in layout.items():
            (Path(tmp) / folder).mkdir(parents=True, exist_ok=True)
            for name in files:
                (Path(tmp) / folder / name).write_bytes(png_bytes())
        own = {"test_fraction": 0.5} if kind == "folder" else {}  # mvtec has its own split
        result = within_bounds(lambda: load_raw(kind, path=tmp, **own), 4096 * (1 + len(layout)))
        if not isinstance(result, ConfigError):
            assert len(result.class_names) == len(set(result.class_names))


@pytest.mark.parametrize("kind", ["folder", "mvtec"])
def test_any_folder_layout_gives_a_dataset_or_one_line(kind):
    fuzz(given(folder_layouts())(lambda layout: check_layout(layout, kind)))()
