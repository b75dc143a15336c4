"""Classical detectors on raw pixels (article 002's baseline): One-Class SVM, Isolation Forest.

One class serves every scikit-learn outlier detector: the estimator comes from the config
(``model.estimator._target_``), optionally after a PCA of the flattened pixels
(``model.pca_components``). Nothing is trained iteratively, so there is no ``history.csv``;
with PCA on, ``reconstructions.png`` shows the PCA reconstruction the estimator sees.
``metrics.json -> skipped_artifacts`` lists what a Keras model would have written and why
it is absent here. One-Class SVM and Isolation Forest are saved as plain arrays
(``estimator.npz/.json``) and reload without scikit-learn's pickles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA

from anomaly_bench.config import TrainerConfig
from anomaly_bench.data.split import Splits
from anomaly_bench.errors import ConfigError
from anomaly_bench.models.base import Detector, FitResult, TrainingData
from anomaly_bench.models.checks import integer
from anomaly_bench.models.estimators import (
    anomaly_scores,
    check_estimator,
    load_estimator,
    load_pca,
    save_estimator,
    save_pca,
    why_not_saved,
)

ESTIMATOR_STEM = "estimator"
NOT_ITERATIVE = "scikit-learn estimator: fitted in one call, no per-epoch losses"


class PixelDetector(Detector):
    """Anomaly score = -decision_function of a scikit-learn outlier detector on (PCA-reduced) pixels."""

    trains_by_epochs = False  # one call to the estimator's fit

    def __init__(self, name: str, estimator, pca_components: int | None = None) -> None:
        super().__init__(name)
        self.estimator, self.pca_components = estimator, pca_components
        self.pca: PCA | None = None
        self.image_shape: tuple[int, ...] = ()

    def check_settings(self) -> None:
        n = self.pca_components
        if n is not None:
            integer("pca_components", n, must="null (raw pixels) or a count >= 1")
        check_estimator(self.estimator, "model.estimator")

    def check_shape(self, image_shape: tuple[int, ...]) -> None:
        n, n_pixels = self.pca_components, int(np.prod(image_shape))
        if n is not None and n > n_pixels:
            raise ConfigError(
                f"model.pca_components={n} must be null (raw pixels) or a count 1-{n_pixels} (the pixels per image)"
            )
        self.image_shape = tuple(image_shape)

    def check_data(self, splits: Splits) -> None:
        n = len(splits.train)
        if self.pca_components is not None and self.pca_components > n:
            raise ConfigError(
                f"model.pca_components={self.pca_components} exceeds the {n} training images; choose at most {n}"
            )

    def _features(self, images: np.ndarray) -> np.ndarray:
        flat = images.reshape(len(images), -1)
        return self.pca.transform(flat) if self.pca is not None else flat

    def fit(self, splits: TrainingData, trainer: TrainerConfig) -> FitResult:
        flat = splits.train.x.reshape(len(splits.train), -1)
        info: dict = {"feature_dim": int(flat.shape[1])}
        if self.pca_components is not None:
            self.pca = PCA(n_components=self.pca_components, svd_solver="full").fit(flat)
            info.update(
                feature_dim=int(self.pca_components),
                pca_explained_variance=float(self.pca.explained_variance_ratio_.sum()),
            )
        self.estimator.fit(self._features(splits.train.x))
        if hasattr(self.estimator, "support_vectors_"):
            info["n_support"] = len(self.estimator.support_vectors_)
        return FitResult(info=info)

    def score(self, images: np.ndarray) -> np.ndarray:
        return anomaly_scores(self.estimator, self._features(images))

    def reconstruct(self, images: np.ndarray) -> np.ndarray | None:
        if self.pca is None:
            return None
        rebuilt = self.pca.inverse_transform(self._features(images))
        return np.clip(rebuilt, 0.0, 1.0).reshape((len(images), *self.image_shape)).astype(np.float32)

    def save(self, folder: Path) -> list[str]:
        written = save_estimator(self.estimator, folder, ESTIMATOR_STEM)
        if self.pca is not None:
            written.append(save_pca(self.pca, folder))
        return written

    def load(self, folder: Path) -> None:
        self.estimator = load_estimator(folder, ESTIMATOR_STEM)
        self.pca = load_pca(folder) if self.pca_components is not None else None

    def describe(self) -> dict:
        skipped = {
            "history.csv": NOT_ITERATIVE,
            "training_curve.png": NOT_ITERATIVE,
            "model.keras": "no Keras model; the fitted estimator is saved as arrays when it has a plain form",
        }
        if self.pca is None:
            skipped["reconstructions.png"] = "raw pixels without PCA: nothing to reconstruct (set model.pca_components)"
        reason = why_not_saved(self.estimator)
        if reason is not None:
            skipped[f"{ESTIMATOR_STEM}.npz"] = reason
        return {
            **super().describe(),
            "estimator": type(self.estimator).__name__,
            "estimator_params": {
                k: v
                for k, v in self.estimator.get_params().items()
                if isinstance(v, (int, float, str, bool, type(None)))
            },
            "pca_components": self.pca_components,
            "skipped_artifacts": skipped,
        }
