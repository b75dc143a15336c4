"""PCA reconstruction error: the classical linear baseline every autoencoder is measured against.

A linear subspace fitted on the normal images captures what normal looks like; an image
that the first ``n_components`` principal directions cannot rebuild is anomalous. The
fitted parameters are stored as plain arrays in ``pca.npz`` (no pickle), so any numpy
reads them back safely.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA

from anomaly_bench.config import TrainerConfig
from anomaly_bench.data.split import Splits
from anomaly_bench.errors import ConfigError
from anomaly_bench.models.base import Detector, FitResult, TrainingData
from anomaly_bench.models.estimators import load_pca, save_pca
from anomaly_bench.scoring import reconstruction_error

PARAMETERS_FILE = "pca.npz"


class PCADetector(Detector):
    """Anomaly score = per-image summed squared error after projecting onto the principal subspace."""

    trains_by_epochs = False  # one SVD

    def __init__(self, name: str, n_components: int | float) -> None:
        super().__init__(name)
        self.n_components = n_components
        self.pca: PCA | None = None
        self.image_shape: tuple[int, ...] = ()

    def check_settings(self) -> None:
        n = self.n_components
        is_count = isinstance(n, int) and not isinstance(n, bool)
        if (is_count and n < 1) or (not is_count and not (isinstance(n, float) and 0.0 < n < 1.0)):
            raise ConfigError(f"model.n_components={n!r} must be a count >= 1 or a variance share in (0, 1)")

    def check_shape(self, image_shape: tuple[int, ...]) -> None:
        n, n_pixels = self.n_components, int(np.prod(image_shape))
        if isinstance(n, int) and n > n_pixels:
            raise ConfigError(
                f"model.n_components={n} must be a count 1-{n_pixels} (the pixels per image) or a "
                "variance share in (0, 1)"
            )
        self.image_shape = tuple(image_shape)

    def check_data(self, splits: Splits) -> None:
        n = len(splits.train)
        if isinstance(self.n_components, int) and self.n_components > n:
            raise ConfigError(
                f"model.n_components={self.n_components} exceeds the {n} training images; choose at most {n}"
            )

    def fit(self, splits: TrainingData, trainer: TrainerConfig) -> FitResult:
        x = splits.train.x.reshape(len(splits.train), -1)
        self.image_shape = tuple(splits.train.x.shape[1:])
        self.pca = PCA(n_components=self.n_components, svd_solver="full").fit(x)
        return FitResult(
            info={
                "n_components_fitted": int(self.pca.n_components_),
                "explained_variance": float(self.pca.explained_variance_ratio_.sum()),
            }
        )

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        assert self.pca is not None, "reconstructing needs a fitted or loaded PCA"
        flat = images.reshape(len(images), -1)
        rebuilt = self.pca.inverse_transform(self.pca.transform(flat))
        return rebuilt.reshape((len(images), *self.image_shape)).astype(np.float32)

    def score(self, images: np.ndarray) -> np.ndarray:
        return reconstruction_error(images, self.reconstruct(images), "sse")

    def save(self, folder: Path) -> list[str]:
        return [save_pca(self.pca, folder, PARAMETERS_FILE)]

    def load(self, folder: Path) -> None:
        self.pca = load_pca(folder, PARAMETERS_FILE)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "parameters_file": PARAMETERS_FILE,
            "n_params": int(self.pca.components_.size + self.pca.mean_.size) if self.pca is not None else None,
        }
