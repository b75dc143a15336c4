"""Readers for the two on-disk formats of MNIST-like data: IDX files and Keras-style .npz."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (optionally gzipped): magic, dims, then raw big-endian data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - offset != expected:
        raise ValueError(f"{path}: IDX header promises {expected} bytes, file has {len(data) - offset}")
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """Accept both the plain and the gzipped name, and the `train-images.idx3-ubyte` variant."""
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def is_idx_folder(folder: Path) -> bool:
    return folder.is_dir() and all(find_idx_file(folder, stem) for stem in IDX_FILES.values())


def read_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for key, stem in IDX_FILES.items():
        path = find_idx_file(folder, stem)
        if path is None:
            raise FileNotFoundError(f"{folder} lacks {stem}(.gz)")
        arrays[key] = read_idx(path)
    return arrays


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Keras' layout: x_train, y_train, x_test, y_test. Pickled objects are refused."""
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in IDX_FILES if k not in npz.files]
        if missing:
            raise ValueError(f"{path} lacks arrays {missing}; expected x_train, y_train, x_test, y_test")
        return {k: npz[k] for k in IDX_FILES}
