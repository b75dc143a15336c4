"""From a raw dataset to train / validation / test splits for one anomaly-detection task.

Label convention everywhere: 1 = anomaly (the positive class), 0 = normal. ``classes``
keeps the original class index (into ``Splits.class_names``) so results can be broken down
per class. Classes are named in the config by index or by name (``[trouser]``, ``[good]``);
:func:`class_indices` states the rule when a name is a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anomaly_bench.data.images import to_float
from anomaly_bench.data.sources.base import RawDataset
from anomaly_bench.errors import ConfigError


@dataclass
class SplitConfig:
    """The split settings of every dataset (the keys of ``dataset`` that are not its source's own):
    which classes are normal and anomalous, and how train / validation / test are drawn."""

    # Class indices, or class names (folder names for dataset=folder / mvtec).
    normal_classes: list[Any] = field(default_factory=lambda: [0])
    anomaly_classes: Any = "rest"
    labelled_anomalies: int = 0
    val_fraction: float = 0.1
    val_anomalies: int = 200
    max_train: int | None = None
    max_test: int | None = None
    split_seed: int = 0


@dataclass
class Split:
    """Images (uint8 N x H x W x C as stored), anomaly labels, classes, source indices.

    ``x`` is where images become float32 in [0, 1] for the models: a fresh array per access,
    so the split itself keeps only the uint8 copy (a quarter of the memory).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def x(self) -> np.ndarray:
        return to_float(self.images)

    @property
    def normal(self) -> Split:
        return self.subset(self.labels == 0)

    def subset(self, mask: np.ndarray) -> Split:
        return Split(self.images[mask], self.labels[mask], self.classes[mask], self.index[mask])


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    normal_classes: list[int]
    anomaly_classes: list[int]
    class_names: list[str] = field(default_factory=lambda: [str(c) for c in range(10)])

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.train.images.shape[1:])

    def names(self, classes: list[int]) -> list[str]:
        return [self.class_names[c] for c in classes]

    def counts(self) -> dict[str, int]:
        return {
            "n_train": len(self.train),
            "n_train_anomalies": int(self.train.labels.sum()),
            "n_val": len(self.val),
            "n_test": len(self.test),
            "n_test_anomalies": int(self.test.labels.sum()),
        }


def class_indices(key: str, values: list[Any], class_names: list[str]) -> list[int]:
    """Class indices for a config list of classes, by one rule (the same for every dataset):

    1. a value whose text is a class name is that class (``2`` and ``'2'`` both name folder ``2``);
    2. otherwise an integer is an index (0 .. n-1) into ``class_names``, unless some class name
       is a number: then numbers name classes only, so ``[1]`` can never mean folder ``10``.

    Hydra reads ``[2]`` as an integer, so folder names that are numbers must win over indices;
    for MNIST (classes "0".."9") index and name agree, and run folder names (``-n2``), error
    messages and metrics.json all speak of the same class."""
    n, indices = len(class_names), []
    position = {name: i for i, name in enumerate(class_names)}
    numbers_are_names = any(name.isdigit() for name in class_names) and class_names != [str(c) for c in range(n)]
    for value in values:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if (is_int or isinstance(value, str)) and str(value) in position:
            indices.append(position[str(value)])
        elif is_int and not numbers_are_names and 0 <= value < n:
            indices.append(value)
        else:
            shown = ", ".join(class_names[:20]) + (", ..." if n > 20 else "")
            allowed = (
                f"this dataset's classes are named {shown} (numbers name classes here, they are not indices)"
                if numbers_are_names
                else f"this dataset's classes are 0-{n - 1} or by name: {shown}"
            )
            raise ConfigError(f"{key}={list(values)} contains {value!r}; {allowed}")
    if len(set(indices)) != len(indices):
        raise ConfigError(f"{key}={list(values)} lists a class twice")
    return sorted(indices)


def resolve_classes(
    normal_classes: list[Any], anomaly_classes: list[Any] | str, class_names: list[str] | None = None
) -> tuple[list[int], list[int]]:
    """(normal, anomalous) class indices; ``rest`` = every class of the dataset that is not normal."""
    class_names = class_names if class_names is not None else [str(c) for c in range(10)]
    normal = class_indices("dataset.normal_classes", normal_classes, class_names)
    if anomaly_classes == "rest":
        anomalous = [c for c in range(len(class_names)) if c not in normal]
        if not anomalous:
            raise ConfigError(
                f"dataset.normal_classes lists all {len(class_names)} classes; no anomaly class is "
                "left for anomaly_classes=rest"
            )
        return normal, anomalous
    if isinstance(anomaly_classes, str):
        raise ConfigError(f"dataset.anomaly_classes={anomaly_classes!r} must be 'rest' or a list of classes")
    anomalous = class_indices("dataset.anomaly_classes", anomaly_classes, class_names)
    overlap = sorted(set(normal) & set(anomalous))
    if overlap:
        raise ConfigError(
            f"dataset.anomaly_classes={list(anomaly_classes)} overlaps dataset.normal_classes="
            f"{list(normal_classes)} in {[class_names[c] for c in overlap]}; a class is either normal "
            "or anomalous"
        )
    return normal, anomalous


def stratified_subsample(classes: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices (sorted) of at most ``limit`` items keeping each class's share (largest remainder)."""
    n = len(classes)
    if limit is None or limit >= n:
        return np.arange(n)
    values, counts = np.unique(classes, return_counts=True)
    exact = counts * limit / n
    quota = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - quota), kind="stable")[: limit - quota.sum()]:
        quota[i] += 1
    chosen = [rng.choice(np.flatnonzero(classes == v), size=q, replace=False) for v, q in zip(values, quota)]
    return np.sort(np.concatenate(chosen))


def _to_split(images: np.ndarray, classes: np.ndarray, index: np.ndarray, normal: list[int]) -> Split:
    labels = (~np.isin(classes, normal)).astype(np.int64)
    return Split(images, labels, classes.astype(np.int64), index.astype(np.int64))


def make_splits(
    raw: RawDataset,
    normal_classes: list[Any],
    anomaly_classes: list[Any] | str = "rest",
    val_fraction: float = 0.1,
    max_train: int | None = None,
    max_test: int | None = None,
    labelled_anomalies: int = 0,
    seed: int = 0,
) -> Splits:
    """Train on normal images (+ optional labelled anomalies), validate on held-out normal
    images, test on the test set restricted to normal + anomaly classes. Deterministic in ``seed``."""
    normal, anomalous = resolve_classes(normal_classes, anomaly_classes, raw.class_names)
    rng = np.random.default_rng(seed)

    normal_idx = np.flatnonzero(np.isin(raw.y_train, normal))
    normal_idx = normal_idx[stratified_subsample(raw.y_train[normal_idx], max_train, rng)]
    if len(normal_idx) == 0:
        raise ConfigError(f"dataset.normal_classes={list(normal_classes)} selects no training images")
    shuffled = rng.permutation(normal_idx)
    n_val = round(val_fraction * len(shuffled))
    if n_val >= len(shuffled):
        raise ConfigError(f"dataset.val_fraction={val_fraction} leaves no training images")
    val_idx, train_idx = np.sort(shuffled[:n_val]), np.sort(shuffled[n_val:])

    if labelled_anomalies > 0:
        pool = np.flatnonzero(np.isin(raw.y_train, anomalous))
        if labelled_anomalies > len(pool):
            raise ConfigError(
                f"dataset.labelled_anomalies={labelled_anomalies} exceeds the {len(pool)} anomalous training images"
            )
        train_idx = np.sort(np.concatenate([train_idx, rng.choice(pool, size=labelled_anomalies, replace=False)]))

    test_idx = np.flatnonzero(np.isin(raw.y_test, normal + anomalous))
    test_idx = test_idx[stratified_subsample(raw.y_test[test_idx], max_test, rng)]
    if len(test_idx) == 0:
        raise ConfigError(f"dataset classes {[raw.class_names[c] for c in normal + anomalous]} select no test images")

    return Splits(
        train=_to_split(raw.x_train[train_idx], raw.y_train[train_idx], train_idx, normal),
        val=_to_split(raw.x_train[val_idx], raw.y_train[val_idx], val_idx, normal),
        test=_to_split(raw.x_test[test_idx], raw.y_test[test_idx], test_idx, normal),
        normal_classes=normal,
        anomaly_classes=anomalous,
        class_names=list(raw.class_names),
    )
