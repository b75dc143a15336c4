"""CIFAR-10 in its two official formats, read without ever executing pickled code.

- binary (``cifar-10-batches-bin``): ``data_batch_{1-5}.bin`` + ``test_batch.bin``, records of
  1 label byte + 3,072 pixel bytes (1,024 red, 1,024 green, 1,024 blue, row-major 32 x 32);
  class names in ``batches.meta.txt``.
- Python (``cifar-10-batches-py``): the same batches as pickled dicts (``data``: uint8
  N x 3,072 array, ``labels``: list) and ``batches.meta`` (``label_names``). These are read by
  an unpickler that resolves exactly numpy's array reconstruction and nothing else: a file
  that asks for any other callable (``os.system``, ...) is refused before anything runs.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from anomaly_bench.errors import BadDataError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
SIDE, CHANNELS = 32, 3
RECORD = 1 + SIDE * SIDE * CHANNELS
FOLDERS = ("cifar-10-batches-py", "cifar-10-batches-bin")
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: The only globals a CIFAR-10 pickle may name: numpy's ndarray reconstruction (numpy 1 and 2 spellings).
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """Plain containers, numbers, strings, bytes and numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name} (only numpy arrays and plain types are allowed)")


def load_restricted(path: Path):
    """Unpickle from the file's bytes in memory: a length inside the pickle (BINBYTES8 of 2**60)
    then reads at most what the file holds instead of asking the file reader for that many bytes."""
    try:
        with open(path, "rb") as fh:
            return RestrictedUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    except OSError as exc:
        raise BadDataError(f"{path}: unreadable ({exc.strerror or exc})") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        RecursionError,
        OverflowError,
    ) as exc:
        raise BadDataError(f"{path}: not a CIFAR-10 Python batch ({type(exc).__name__}: {exc})") from None


def _get(batch: dict, key: str, path: Path):
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise BadDataError(f"{path}: CIFAR-10 batch lacks '{key}'")


def to_images(rows: np.ndarray, where: str) -> np.ndarray:
    """N x 3,072 planar rows -> uint8 N x 32 x 32 x 3."""
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != SIDE * SIDE * CHANNELS or rows.dtype != np.uint8:
        raise BadDataError(
            f"{where}: data has shape {rows.shape} and dtype {rows.dtype}; CIFAR-10 rows are uint8 "
            f"N x {SIDE * SIDE * CHANNELS}"
        )
    return rows.reshape(-1, CHANNELS, SIDE, SIDE).transpose(0, 2, 3, 1)


def _python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = load_restricted(path)
    if not isinstance(batch, dict):
        raise BadDataError(f"{path}: holds a {type(batch).__name__}, not a CIFAR-10 batch dict")
    return to_images(_get(batch, "data", path), f"{path}: data"), np.asarray(_get(batch, "labels", path))


def _binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD:
        raise BadDataError(f"{path}: {raw.size} bytes is not a whole number of {RECORD}-byte CIFAR-10 records")
    records = raw.reshape(-1, RECORD)
    return to_images(records[:, 1:], str(path)), records[:, 0].astype(np.int64)


BATCHES = (*TRAIN_BATCHES, TEST_BATCH)


def folder_format(folder: Path) -> str | None:
    """'python' or 'binary' when ``folder`` holds any batch of that format (the format with more
    batches wins), else None; :func:`read_cifar_folder` then names a missing batch."""
    python = sum((folder / n).is_file() for n in BATCHES)
    binary = sum((folder / f"{n}.bin").is_file() for n in BATCHES)
    if not python and not binary:
        return None
    return "python" if python >= binary else "binary"


def _class_names(folder: Path, fmt: str) -> list[str]:
    if fmt == "binary":
        meta = folder / "batches.meta.txt"
        text = meta.read_bytes()[:4096].decode("utf-8", "replace") if meta.is_file() else ""
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        meta = folder / "batches.meta"
        raw = _get(load_restricted(meta), "label_names", meta) if meta.is_file() else []
        names = (
            [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in raw]
            if isinstance(raw, list)
            else []
        )
    return names if len(names) == len(CLASS_NAMES) else list(CLASS_NAMES)


def read_cifar_folder(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, str], list[str]]:
    """Arrays x_train, y_train, x_test, y_test, where each came from, and the class names."""
    fmt = folder_format(folder)
    if fmt is None:
        raise FileNotFoundError(f"{folder} holds no CIFAR-10 batches")
    read, suffix = (_python_batch, "") if fmt == "python" else (_binary_batch, ".bin")
    missing = [f"{n}{suffix}" for n in BATCHES if not (folder / f"{n}{suffix}").is_file()]
    if missing:
        raise BadDataError(
            f"{folder}: CIFAR-10 batches folder lacks {', '.join(missing)} (it needs "
            f"{', '.join(n + suffix for n in BATCHES)})"
        )
    train = [read(folder / f"{name}{suffix}") for name in TRAIN_BATCHES]
    x_test, y_test = read(folder / f"{TEST_BATCH}{suffix}")
    arrays = {
        "x_train": np.concatenate([x for x, _ in train]),
        "y_train": np.concatenate([y for _, y in train]),
        "x_test": x_test,
        "y_test": y_test,
    }
    where = {
        "x_train": f"{folder}/data_batch_*{suffix}",
        "y_train": f"{folder}/data_batch_*{suffix}: labels",
        "x_test": f"{folder}/{TEST_BATCH}{suffix}",
        "y_test": f"{folder}/{TEST_BATCH}{suffix}: labels",
    }
    return arrays, where, _class_names(folder, fmt)
