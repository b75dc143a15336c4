"""The one interface every detector implements, so the pipeline runs any model the same way.

A detector is built from its config group (``model/<name>.yaml``), checks its settings alone
before any data is loaded (so bad settings fail fast), then against the image shape and the
data's size once the data is loaded (still before any run folder starts),
learns from the training split, and turns images into anomaly scores (higher = more anomalous).
Images reach it as float32 in [0, 1] with the data's own shape (N x H x W x C).

Save and load are symmetric: ``save(folder)`` writes the trained state, and a detector built
from the same config, checked with the same image shape, gets it back with ``load(folder)``.
Files are plain: Keras models load in safe mode, arrays as ``.npz`` read with
``allow_pickle=False``, settings as JSON; nothing is ever pickled, because run folders get
shared and unpickling a shared file runs arbitrary code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly_bench.config import TrainerConfig
from anomaly_bench.data.split import Split, Splits

#: The trainer settings that only epoch-by-epoch training reads (config keys; a key names its subtree).
EPOCH_SETTINGS = (
    "trainer.epochs",
    "trainer.batch_size",
    "trainer.optimizer",
    "trainer.learning_rate",
    "trainer.early_stopping",
)


@dataclass(frozen=True)
class TrainingData:
    """What ``fit`` may learn from: the training images (normal ones, plus labelled anomalies for
    supervised models) and the held-out normal validation images. The test split is not part of
    it, so no detector can tune itself on the images it is evaluated on."""

    train: Split
    val: Split

    @classmethod
    def of(cls, splits: Splits) -> TrainingData:
        return cls(splits.train, splits.val)


@dataclass
class FitResult:
    """What training produced: per-epoch losses (empty for non-iterative models) and facts for metrics."""

    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    info: dict = field(default_factory=dict)


class Detector(ABC):
    #: The one statement of what a detector learns from: "supervised" detectors train on the labels
    #: of dataset.labelled_anomalies (the pipeline refuses dataset.labelled_anomalies=0 for them,
    #: benchmarks of the one-class protocol leave them out); "unsupervised" ones on normal images.
    supervision: str = "unsupervised"
    #: The run folder, set by the pipeline before fit() for models that write files while
    #: training (GAN sample grids, checkpoints); None when a detector is used on its own.
    run_dir: Path | None = None
    #: True if fit() needs held-out normal images (dataset.val_fraction > 0); checked before data loading.
    needs_validation: bool = False
    #: What :meth:`reconstruct` returns, in words (figure labels).
    reconstruction_label: str = "reconstruction"
    #: False for detectors fitted in one pass (PCA, nearest neighbours, scikit-learn estimators):
    #: they have no epochs, so the run log does not promise any and the trainer's epoch settings
    #: (:data:`EPOCH_SETTINGS`) have no effect on them.
    trains_by_epochs: bool = True

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
    def fit(self, splits: TrainingData, trainer: TrainerConfig) -> FitResult:
        """Learn normality from ``splits.train`` (``splits.val`` for early stopping / validation loss)."""

    @abstractmethod
    def score(self, images: np.ndarray) -> np.ndarray:
        """Anomaly score per image, higher = more anomalous."""

    def reconstruct(self, images: np.ndarray) -> np.ndarray | None:
        """The model's idea of the normal version of each image, if it has one (for reconstructions.png)."""
        return None

    def save(self, folder: Path) -> list[str]:
        """Write the trained state into ``folder``; return the file names written (relative to it)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement save()")

    def load(self, folder: Path) -> None:
        """Read back what :meth:`save` wrote, so :meth:`score` works without fitting again."""
        raise NotImplementedError(f"{type(self).__name__} does not implement load()")

    def write_extra_artifacts(self, folder: Path, splits: Splits, test_scores: np.ndarray) -> list[str]:
        """Model-specific figures (latent plots, sample grids); return the file names written."""
        return []

    @property
    def unused_settings(self) -> tuple[str, ...]:
        """Config keys this detector never reads. Recorded in metrics.json, so that comparisons do not
        present a setting that changed nothing (trainer.epochs of a PCA run) as a difference."""
        return () if self.trains_by_epochs else EPOCH_SETTINGS

    def describe(self) -> dict:
        """Facts about the model for metrics.json (parameter count, supervision, ...)."""
        return {"supervision": self.supervision, "unused_settings": list(self.unused_settings)}
