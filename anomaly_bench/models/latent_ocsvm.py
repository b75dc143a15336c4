"""Article 002: a One-Class SVM on the codes of a deep autoencoder.

The autoencoder (``model.autoencoder``, a :class:`ReconstructionDetector`) is trained first;
its encoder maps every image to a low-dimensional code, and a scikit-learn outlier detector
(``model.estimator``, the article's ``OneClassSVM()``) is fitted on the codes of the normal
training images. Score = -decision_function of the code.

With ``standardize_codes`` each code dimension is centred and scaled by the normal training
codes first: the raw codes of a trained autoencoder span arbitrary, unequal ranges, and an
RBF kernel measures every dimension with one width. Files: ``model.keras`` (the whole
autoencoder; its encoder gives the codes), the SVM as arrays (``estimator.npz/.json``) and,
when standardising, ``code_scaler.npz`` (features = (code - mean) / scale).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from anomaly_bench import plots
from anomaly_bench.config import TrainerConfig
from anomaly_bench.data.split import Splits
from anomaly_bench.errors import ConfigError
from anomaly_bench.models.autoencoder import ReconstructionDetector
from anomaly_bench.models.base import Detector, FitResult, TrainingData
from anomaly_bench.models.estimators import (
    anomaly_scores,
    check_estimator,
    load_estimator,
    save_estimator,
    why_not_saved,
)

ESTIMATOR_STEM = "estimator"
SCALER_FILE = "code_scaler.npz"
log = logging.getLogger("anomaly_bench")


class LatentOCSVMDetector(Detector):
    """Autoencoder codes -> scikit-learn outlier detector (One-Class SVM by default)."""

    def __init__(
        self, name: str, autoencoder: ReconstructionDetector, estimator, standardize_codes: bool = True
    ) -> None:
        super().__init__(name)
        self.autoencoder, self.estimator = autoencoder, estimator
        self.standardize_codes = standardize_codes
        self.code_mean: np.ndarray | None = None
        self.code_scale: np.ndarray | None = None

    def check_settings(self) -> None:
        if not isinstance(self.autoencoder, ReconstructionDetector):
            raise ConfigError(
                "model.autoencoder must be the config of a ReconstructionDetector (see conf/model/ae_ocsvm.yaml)"
            )
        check_estimator(self.estimator, "model.estimator")
        if not isinstance(self.standardize_codes, bool):
            raise ConfigError(f"model.standardize_codes={self.standardize_codes!r} must be true or false")
        self.autoencoder.check_settings()

    def check_shape(self, image_shape: tuple[int, ...]) -> None:
        self.autoencoder.check_shape(image_shape)

    @property
    def code_dim(self) -> int:
        assert self.autoencoder.encoder is not None, "the code size needs a built autoencoder"
        return int(np.prod(self.autoencoder.encoder.output.shape[1:]))

    def fit(self, splits: TrainingData, trainer: TrainerConfig) -> FitResult:
        fit = self.autoencoder.fit(splits, trainer)
        codes = self.autoencoder.encode(splits.train.normal.x)
        spread = codes.std(axis=0)
        if self.standardize_codes:
            # A constant dimension keeps scale 1 (as scikit-learn's StandardScaler does).
            self.code_mean, self.code_scale = codes.mean(axis=0), np.where(spread > 0, spread, 1.0)
        self.estimator.fit(self._features(codes))
        info = {
            **fit.info,
            "code_dim": self.code_dim,
            "n_estimator_train": len(codes),
            # A ReLU code can die (all zeros in a dimension): the SVM then sees a line, not a plane.
            "code_dims_constant": int(np.sum(spread == 0)),
        }
        if info["code_dims_constant"]:
            log.warning(
                "%d of %d code dimensions are constant on the training images (dead ReLU units); "
                "the estimator sees a degenerate code - try another trainer.seed or a linear code layer",
                info["code_dims_constant"],
                self.code_dim,
            )
        if hasattr(self.estimator, "support_vectors_"):
            info["n_support"] = len(self.estimator.support_vectors_)
        return FitResult(history=fit.history, info=info)

    def _features(self, codes: np.ndarray) -> np.ndarray:
        """What the estimator sees: the codes, standardised by the normal training codes if asked."""
        if not self.standardize_codes:
            return codes
        return (codes - self.code_mean) / self.code_scale

    def score(self, images: np.ndarray) -> np.ndarray:
        return anomaly_scores(self.estimator, self._features(self.autoencoder.encode(images)))

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        return self.autoencoder.reconstruct(images)

    def write_extra_artifacts(self, folder: Path, splits: Splits, test_scores: np.ndarray) -> list[str]:
        if self.code_dim != 2:
            return []
        codes = self.autoencoder.encode(splits.test.x)
        plots.latent(
            codes,
            splits.test.labels,
            folder / "latent.png",
            f"{self.name}: test codes and the estimator's boundary",
            self._score_grid(codes),
        )
        return ["latent.png"]

    def _score_grid(self, codes: np.ndarray, steps: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Anomaly scores over the codes' bounding box; the level is the estimator's own boundary (score 0)."""
        low, high = codes.min(axis=0), codes.max(axis=0)
        pad = 0.05 * np.maximum(high - low, 1e-6)
        xx, yy = np.meshgrid(
            np.linspace(low[0] - pad[0], high[0] + pad[0], steps), np.linspace(low[1] - pad[1], high[1] + pad[1], steps)
        )
        grid = self._features(np.column_stack([xx.ravel(), yy.ravel()]))
        zz = anomaly_scores(self.estimator, grid).reshape(xx.shape)
        return xx, yy, zz, 0.0

    def save(self, folder: Path) -> list[str]:
        files = self.autoencoder.save(folder) + save_estimator(self.estimator, folder, ESTIMATOR_STEM)
        if self.standardize_codes:
            assert self.code_mean is not None and self.code_scale is not None, "save() needs a fitted scaler"
            np.savez(Path(folder) / SCALER_FILE, mean=self.code_mean, scale=self.code_scale)
            files.append(SCALER_FILE)
        return files

    def load(self, folder: Path) -> None:
        self.autoencoder.load(folder)
        self.estimator = load_estimator(folder, ESTIMATOR_STEM)
        if self.standardize_codes:
            with np.load(Path(folder) / SCALER_FILE, allow_pickle=False) as saved:
                self.code_mean, self.code_scale = saved["mean"], saved["scale"]

    def describe(self) -> dict:
        skipped = {}
        if self.code_dim != 2:
            skipped["latent.png"] = f"the code is {self.code_dim}-D, not 2-D"
        reason = why_not_saved(self.estimator)
        if reason is not None:
            skipped[f"{ESTIMATOR_STEM}.npz"] = reason
        return {
            **super().describe(),
            "autoencoder": self.autoencoder.describe(),
            "estimator": type(self.estimator).__name__,
            "standardize_codes": self.standardize_codes,
            "skipped_artifacts": skipped,
        }
