"""From a raw dataset to train / validation / test splits for one anomaly-detection task.

Label convention everywhere: 1 = anomaly (the positive class), 0 = normal. ``classes``
keeps the original digit / garment class so results can be broken down per class.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anomaly_bench.data.sources import RawDataset
from anomaly_bench.errors import ConfigError


@dataclass
class Split:
    """Images as float32 [n, 28, 28, 1] in [0, 1], anomaly labels, classes, source indices."""

    x: np.ndarray
    labels: np.ndarray
    classes: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def normal(self) -> "Split":
        return self.subset(self.labels == 0)

    def subset(self, mask: np.ndarray) -> "Split":
        return Split(self.x[mask], self.labels[mask], self.classes[mask], self.index[mask])


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    normal_classes: list[int]
    anomaly_classes: list[int]

    def counts(self) -> dict[str, int]:
        return {
            "n_train": len(self.train),
            "n_train_anomalies": int(self.train.labels.sum()),
            "n_val": len(self.val),
            "n_test": len(self.test),
            "n_test_anomalies": int(self.test.labels.sum()),
        }


def resolve_classes(normal_classes: list[int], anomaly_classes: list[int] | str) -> tuple[list[int], list[int]]:
    normal = sorted(int(c) for c in normal_classes)
    if anomaly_classes == "rest":
        return normal, [c for c in range(10) if c not in normal]
    return normal, sorted(int(c) for c in anomaly_classes)


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


def _to_split(x: np.ndarray, classes: np.ndarray, index: np.ndarray, normal: list[int]) -> Split:
    images = (x.astype(np.float32) / 255.0)[..., None]
    labels = (~np.isin(classes, normal)).astype(np.int64)
    return Split(images, labels, classes.astype(np.int64), index.astype(np.int64))


def make_splits(
    raw: RawDataset,
    normal_classes: list[int],
    anomaly_classes: list[int] | str = "rest",
    val_fraction: float = 0.1,
    max_train: int | None = None,
    max_test: int | None = None,
    labelled_anomalies: int = 0,
    seed: int = 0,
) -> Splits:
    """Train on normal images (+ optional labelled anomalies), validate on held-out normal
    images, test on the test set restricted to normal + anomaly classes. Deterministic in ``seed``."""
    normal, anomalous = resolve_classes(normal_classes, anomaly_classes)
    rng = np.random.default_rng(seed)

    normal_idx = np.flatnonzero(np.isin(raw.y_train, normal))
    normal_idx = normal_idx[stratified_subsample(raw.y_train[normal_idx], max_train, rng)]
    if len(normal_idx) == 0:
        raise ConfigError(f"dataset.normal_classes={normal} selects no training images")
    shuffled = rng.permutation(normal_idx)
    n_val = int(round(val_fraction * len(shuffled)))
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
        raise ConfigError(f"dataset classes {normal + anomalous} select no test images")

    return Splits(
        train=_to_split(raw.x_train[train_idx], raw.y_train[train_idx], train_idx, normal),
        val=_to_split(raw.x_train[val_idx], raw.y_train[val_idx], val_idx, normal),
        test=_to_split(raw.x_test[test_idx], raw.y_test[test_idx], test_idx, normal),
        normal_classes=normal,
        anomaly_classes=anomalous,
    )
