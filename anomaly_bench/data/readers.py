"""Readers for the two array formats: IDX files (MNIST's) and Keras-style .npz.

A file that exists but cannot be read (truncated, not the format its name says, pickled
objects) is a :class:`BadDataError` naming it; the arrays themselves are checked afterwards
(:mod:`anomaly_bench.data.checks`).

No number inside a file sizes an allocation: an IDX header or an .npy header that promises
more bytes than the file holds is refused before anything is allocated, and compressed data
(gzip, deflated .npz members) is read only up to :data:`MAX_INFLATION` times its compressed
size (deflate cannot expand data further), so memory stays proportional to the file's size.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import cast

import numpy as np

from anomaly_bench.errors import BadDataError

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


#: Deflate (gzip, zip) expands data at most ~1032 times; anything claiming more is not honest data.
MAX_INFLATION = 1100
CHUNK_BYTES = 2**20


def _read_gzip(path: Path) -> bytes:
    """A gzip file's content, read in chunks and refused past MAX_INFLATION times the file's size."""
    limit = max(os.path.getsize(path), 1) * MAX_INFLATION
    data = bytearray()
    with gzip.open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            data += chunk
            if len(data) > limit:
                raise BadDataError(f"{path}: expands to more than {MAX_INFLATION} times its size; not a gzip of data")
    return bytes(data)


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (optionally gzipped): magic, dims, then raw big-endian data."""
    try:
        if path.suffix == ".gz":
            data = _read_gzip(path)
        else:
            with open(path, "rb") as fh:
                data = fh.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BadDataError(f"{path}: corrupt or truncated gzip file ({exc})") from None
    except OSError as exc:
        raise BadDataError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise BadDataError(f"{path} is not an IDX file (its first bytes are not an IDX header)")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a huge header cannot overflow
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


NPY_SUFFIX = ".npy"


def npz_keys(path: Path) -> list[str]:
    """The names of the arrays in an .npz; BadDataError for a file that is not one."""
    if not zipfile.is_zipfile(path):
        raise BadDataError(
            f"{path} is not an .npz archive (not a zip file); expected numpy.savez output with "
            "x_train, y_train, x_test, y_test"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            return [name[: -len(NPY_SUFFIX)] for name in archive.namelist() if name.endswith(NPY_SUFFIX)]
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
        # NotImplementedError: a zip version or compression numpy never writes; RuntimeError: encrypted
        raise BadDataError(f"{path}: corrupt .npz archive ({type(exc).__name__}: {exc})") from None


def _npy_header(member, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(member)
    raise BadDataError(f"{where}: .npy format version {version} is not supported (save with numpy.savez)")


def read_npz_array(path: Path, key: str) -> np.ndarray:
    """One array of an .npz, its size checked against the archive before anything is allocated.

    numpy's own reader allocates what the member's header promises; here the header must
    match the member's stored size, which must fit the archive (MAX_INFLATION for compressed
    members). Pickled (object) arrays are refused, never unpickled."""
    where = f"{path}: array {key}"
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(key + NPY_SUFFIX)
            stored = info.compress_type == zipfile.ZIP_STORED
            if info.compress_size > os.path.getsize(path) or (
                info.file_size > max(info.compress_size, 1) * (1 if stored else MAX_INFLATION)
            ):
                raise BadDataError(f"{where}: its zip entry claims more data than the archive holds")
            with archive.open(info) as member:
                shape, fortran, dtype = _npy_header(member, where)
                if dtype.hasobject:
                    raise BadDataError(
                        f"{where} holds pickled (object) data, which is never unpickled; save plain numeric arrays"
                    )
                nbytes = math.prod(shape) * dtype.itemsize
                header = member.tell()
                if nbytes != info.file_size - header:
                    raise BadDataError(
                        f"{where}: header promises {nbytes} bytes, the entry holds {info.file_size - header}"
                    )
                array = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
                reader = cast(io.BufferedIOBase, member)  # a ZipExtFile: reads straight into the array
                if array.size and reader.readinto(array.reshape(-1, order="A").view(np.uint8).data) != nbytes:
                    raise BadDataError(f"{where}: truncated (fewer bytes than its header promises)")
                return array
    except KeyError:
        raise BadDataError(f"{where}: no such array in the archive") from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
        if isinstance(exc, BadDataError):
            raise
        raise BadDataError(
            f"{where}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


def read_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Keras' layout: x_train, y_train, x_test, y_test (+ optional class_names). Pickled objects are refused."""
    keys = npz_keys(path)
    missing = [k for k in IDX_FILES if k not in keys]
    if missing:
        raise BadDataError(f"{path} lacks arrays {missing}; expected x_train, y_train, x_test, y_test")
    arrays = {key: read_npz_array(path, key) for key in [*IDX_FILES, CLASS_NAMES_KEY] if key in keys}
    return arrays, {k: f"{path}: {k}" for k in arrays}
