"""Readers for the two array formats: IDX files (MNIST's) and Keras-style .npz.

A file that exists but cannot be read (truncated, not the format its name says, pickled
objects) is a :class:`BadDataError` naming it; the arrays themselves are checked afterwards
(:mod:`anomaly_bench.data.checks`).
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from pathlib import Path

import numpy as np

from anomaly_bench.errors import BadDataError

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (optionally gzipped): magic, dims, then raw big-endian data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BadDataError(f"{path}: corrupt or truncated gzip file ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise BadDataError(f"{path} is not an IDX file (its first bytes are not an IDX header)")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - offset != expected:
        raise BadDataError(f"{path}: IDX header promises {expected} bytes, file has {len(data) - offset}")
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """Accept both the plain and the gzipped name, and the `train-images.idx3-ubyte` variant."""
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def is_idx_folder(folder: Path) -> bool:
    return folder.is_dir() and all(find_idx_file(folder, stem) for stem in IDX_FILES.values())


def missing_idx_files(folder: Path) -> list[str]:
    return [stem for stem in IDX_FILES.values() if find_idx_file(folder, stem) is None]


def read_idx_folder(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The four arrays and, per array, the file it came from (for error messages)."""
    arrays, where = {}, {}
    for key, stem in IDX_FILES.items():
        path = find_idx_file(folder, stem)
        if path is None:
            raise FileNotFoundError(f"{folder} lacks {stem}(.gz)")
        arrays[key], where[key] = read_idx(path), str(path)
    return arrays, where


#: Optional array of an .npz naming the classes (label i is class_names[i]); a plain unicode array.
CLASS_NAMES_KEY = "class_names"


def read_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Keras' layout: x_train, y_train, x_test, y_test (+ optional class_names). Pickled objects are refused."""
    if not zipfile.is_zipfile(path):
        raise BadDataError(
            f"{path} is not an .npz archive (not a zip file); expected numpy.savez output with "
            "x_train, y_train, x_test, y_test"
        )
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in IDX_FILES if k not in npz.files]
            if missing:
                raise BadDataError(f"{path} lacks arrays {missing}; expected x_train, y_train, x_test, y_test")
            for key in [*IDX_FILES, CLASS_NAMES_KEY]:
                if key not in npz.files:
                    continue
                try:
                    arrays[key] = npz[key]
                except ValueError as exc:
                    reason = (
                        "holds pickled (object) data, which is never unpickled; save plain numeric arrays"
                        if "allow_pickle" in str(exc) or "Object arrays" in str(exc)
                        else f"is unreadable ({exc})"
                    )
                    raise BadDataError(f"{path}: array {key} {reason}") from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise BadDataError(f"{path}: corrupt .npz archive ({type(exc).__name__}: {exc})") from None
    return arrays, {k: f"{path}: {k}" for k in arrays}
