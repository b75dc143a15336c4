"""k-nearest-neighbour distance: a strong, cheap baseline on pixels or on learned codes.

An image far from every normal training image is anomalous. The score is the mean
Euclidean distance to the ``k`` nearest normal training images, computed with blocked
matrix products (||a||^2 + ||b||^2 - 2 a.b) so scoring 10,000 test images against 6,000
references is a few BLAS calls, not a Python loop. With ``features: encoder`` the
distances are taken between the codes of a convolutional autoencoder trained on the
normal images first (the autoencoder config is nested under ``model.autoencoder``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from anomaly_bench.config import TrainerConfig
from anomaly_bench.data.images import to_float
from anomaly_bench.data.split import Splits
from anomaly_bench.errors import ConfigError
from anomaly_bench.models.autoencoder import ReconstructionDetector
from anomaly_bench.models.base import Detector, FitResult, TrainingData
from anomaly_bench.models.checks import integer, one_of

FEATURES = ("pixels", "encoder")
REFERENCE_FILE = "knn_reference.npz"


def squared_norms(a: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, a)


def nearest_distances(
    queries: np.ndarray, reference: np.ndarray, k: int, block_size: int, reference_norms: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances to, and indices of, the ``k`` nearest reference rows of each query row.

    Works on blocks of ``block_size`` queries so memory stays at block_size x n_reference;
    rows come back sorted nearest first. Computed in float64: the expansion
    ||a||^2 + ||b||^2 - 2 a.b loses digits for near-duplicates in float32.
    """
    queries = np.asarray(queries, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    ref_norms = squared_norms(reference) if reference_norms is None else reference_norms
    distances = np.empty((len(queries), k))
    indices = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block_size):
        block = queries[start : start + block_size]
        sq = squared_norms(block)[:, None] + ref_norms[None, :] - 2.0 * (block @ reference.T)
        np.maximum(sq, 0.0, out=sq)
        part = np.argpartition(sq, k - 1, axis=1)[:, :k] if k < sq.shape[1] else np.tile(np.arange(k), (len(block), 1))
        part_sq = np.take_along_axis(sq, part, axis=1)
        order = np.argsort(part_sq, axis=1)
        indices[start : start + len(block)] = np.take_along_axis(part, order, axis=1)
        distances[start : start + len(block)] = np.sqrt(np.take_along_axis(part_sq, order, axis=1))
    return distances, indices


class KNNDetector(Detector):
    """Anomaly score = mean distance to the k nearest normal training images (pixels or codes)."""

    reconstruction_label = "nearest normal training image"

    def __init__(
        self,
        name: str,
        k: int,
        features: str = "pixels",
        block_size: int = 1024,
        autoencoder: ReconstructionDetector | None = None,
    ) -> None:
        super().__init__(name)
        self.k, self.features, self.block_size = k, features, block_size
        self.autoencoder = autoencoder
        self.reference_images: np.ndarray | None = None
        self.reference_index: np.ndarray | None = None
        self.reference: np.ndarray | None = None
        self.reference_norms: np.ndarray | None = None

    @property
    def trains_by_epochs(self) -> bool:  # type: ignore[override]
        """Only the autoencoder of ``features: encoder`` trains; on pixels the training images are the model."""
        return self.features == "encoder"

    def check_settings(self) -> None:
        integer("k", self.k, must="a positive number of neighbours (at most the training images)")
        one_of("features", self.features, FEATURES)
        integer("block_size", self.block_size, must="a positive number of query images per block")
        if self.features == "encoder":
            if not isinstance(self.autoencoder, ReconstructionDetector):
                raise ConfigError(
                    "model.features=encoder needs model.autoencoder, the config of a ReconstructionDetector"
                )
            self.autoencoder.check_settings()

    def _encoder(self) -> ReconstructionDetector:
        """The autoencoder of features=encoder (check_settings() refuses that setting without one)."""
        assert self.autoencoder is not None, "features=encoder needs model.autoencoder"
        return self.autoencoder

    def check_shape(self, image_shape: tuple[int, ...]) -> None:
        if self.features == "encoder":
            self._encoder().check_shape(image_shape)

    def check_data(self, splits: Splits) -> None:
        n_train = len(splits.train)
        if self.k > n_train:
            raise ConfigError(f"model.k={self.k} exceeds the {n_train} training images; choose 1-{n_train}")

    def _features(self, images: np.ndarray) -> np.ndarray:
        if self.features == "encoder":
            return self._encoder().encode(images)
        return images.reshape(len(images), -1)

    def fit(self, splits: TrainingData, trainer: TrainerConfig) -> FitResult:
        n_train = len(splits.train)
        fit = self._encoder().fit(splits, trainer) if self.features == "encoder" else FitResult()
        self.reference_images, self.reference_index = splits.train.images, splits.train.index
        self.reference = np.asarray(self._features(splits.train.x), dtype=np.float64)
        self.reference_norms = squared_norms(self.reference)
        return FitResult(
            history=fit.history, info={**fit.info, "n_reference": n_train, "feature_dim": int(self.reference.shape[1])}
        )

    def nearest(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.reference is not None, "nearest() needs the reference set that fit() or load() sets"
        return nearest_distances(self._features(images), self.reference, self.k, self.block_size, self.reference_norms)

    def score(self, images: np.ndarray) -> np.ndarray:
        return self.nearest(images)[0].mean(axis=1)

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """The nearest normal training image: what the detector compares each image with."""
        assert self.reference_images is not None, "reconstruct() needs the reference set that fit() or load() sets"
        return to_float(self.reference_images[self.nearest(images)[1][:, 0]])

    def save(self, folder: Path) -> list[str]:
        # The reference set is the detector: the normal training images (shown as the nearest
        # normal example) with their dataset indices, and with features=encoder their codes, so
        # scoring after a reload needs neither the dataset nor a new pass of the encoder.
        assert self.reference is not None and self.reference_index is not None and self.reference_images is not None
        # Any: numpy annotates savez_compressed(**arrays) so that a typed dict could also fill allow_pickle.
        codes: dict[str, Any] = {"codes": self.reference} if self.features == "encoder" else {}
        np.savez_compressed(
            Path(folder) / REFERENCE_FILE,
            train_index=self.reference_index,
            images=self.reference_images,
            k=np.array(self.k),
            **codes,
        )
        written = [REFERENCE_FILE]
        if self.features == "encoder":
            written += self._encoder().save(folder)
        return written

    def load(self, folder: Path) -> None:
        with np.load(Path(folder) / REFERENCE_FILE, allow_pickle=False) as saved:
            self.reference_index, self.reference_images = saved["train_index"], saved["images"]
            codes = saved["codes"] if self.features == "encoder" else None
        if self.features == "encoder":
            self._encoder().load(folder)
        self.reference = (
            codes if codes is not None else np.asarray(self._features(to_float(self.reference_images)), np.float64)
        )
        self.reference_norms = squared_norms(self.reference)

    def describe(self) -> dict:
        info = {**super().describe(), "k": self.k, "features": self.features, "reference_file": REFERENCE_FILE}
        if self.features == "encoder":
            info["encoder"] = self._encoder().describe()
        return info
