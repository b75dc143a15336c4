"""The one interface every detector implements, so the pipeline runs any model the same way.

A detector is built from its config group (``model/<name>.yaml``), checks its settings alone
before any data is loaded (so bad settings fail fast), then against the image shape and the
data's size once the data is loaded (still before any run folder starts),
learns from the training split, and turns images into anomaly scores (higher = more anomalous).
Images reach it as float32 in [0, 1] with the data's own shape (N x H x W x C).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly_bench.config import TrainerConfig
from anomaly_bench.data.split import Splits


@dataclass
class FitResult:
    """What training produced: per-epoch losses (empty for non-iterative models) and facts for metrics."""

    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    info: dict = field(default_factory=dict)


class Detector(ABC):
    #: "supervised" detectors use the labels of dataset.labelled_anomalies.
    supervision: str = "unsupervised"
    #: The run folder, set by the pipeline before fit() for models that write files while
    #: training (GAN sample grids, checkpoints); None when a detector is used on its own.
    run_dir: Path | None = None
    #: True if training needs labelled anomalies (dataset.labelled_anomalies > 0); checked before data loading.
    needs_labelled_anomalies: bool = False
    #: True if fit() needs held-out normal images (dataset.val_fraction > 0); checked before data loading.
    needs_validation: bool = False

    def __init__(self, name: str) -> None:
        self.name = name

    def check_settings(self) -> None:
        """Raise ConfigError for settings that cannot work whatever the data. Runs before data loading."""

    def check_shape(self, image_shape: tuple[int, ...]) -> None:
        """Raise ConfigError for settings that cannot work on images of ``image_shape`` (H, W, C);
        may build the network."""

    def check(self, image_shape: tuple[int, ...]) -> None:
        """All checks for images of ``image_shape``: the settings, then the shape. Runs after the
        data is loaded, before the run folder starts."""
        self.check_settings()
        self.check_shape(image_shape)

    def check_data(self, splits: Splits) -> None:
        """Raise ConfigError for settings the data's size rules out (e.g. more neighbours than
        training images). Runs after :meth:`check`, before the run folder starts."""

    @abstractmethod
    def fit(self, splits: Splits, trainer: TrainerConfig) -> FitResult:
        """Learn normality from ``splits.train`` (``splits.val`` for early stopping / validation loss)."""

    @abstractmethod
    def score(self, images: np.ndarray) -> np.ndarray:
        """Anomaly score per image, higher = more anomalous."""

    def reconstruct(self, images: np.ndarray) -> np.ndarray | None:
        """The model's idea of the normal version of each image, if it has one (for reconstructions.png)."""
        return None

    def save(self, folder: Path) -> list[str]:
        """Write the trained model into the run folder; return the file names written."""
        return []

    def write_extra_artifacts(self, folder: Path, splits: Splits, test_scores: np.ndarray) -> list[str]:
        """Model-specific figures (latent plots, sample grids); return the file names written."""
        return []

    def describe(self) -> dict:
        """Facts about the model for metrics.json (parameter count, supervision, ...)."""
        return {"supervision": self.supervision}
