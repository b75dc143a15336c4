"""The one interface every detector implements, so the pipeline runs any model the same way.

A detector is built from its config group (``model/<name>.yaml``), checks its settings alone
before any data is loaded (so bad settings fail fast), then against the image shape and the
data's size once the data is loaded (still before any run folder starts),
learns from the training split, and turns images into anomaly scores (higher = more anomalous).
Images reach it as float32 in [0, 1] with the data's own shape (N x H x W x C).

Checks have one entry point, :meth:`Detector.check`, which the pipeline and ``load_detector``
both call; it runs the hooks a detector overrides (``CHECK_HOOKS``) in one fixed order. A class
that overrides ``check`` itself, or defines a ``check_*`` method that is not a hook, is refused
when it is defined: such a check would otherwise never run.

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
from typing import Any

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
    "trainer.lr_schedule",
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


#: The checks a detector may override, in the order :meth:`Detector.check` runs them.
CHECK_HOOKS = ("check_settings", "check_shape", "check_data")


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

    #: Set once check_settings() has passed, so the pipeline's second check() does not repeat it.
    _settings_checked: bool = False

    def __init__(self, name: str) -> None:
        self.name = name

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse, when the class is defined, a check method that check() would never call."""
        super().__init_subclass__(**kwargs)
        for attr, value in vars(cls).items():
            if attr in CHECK_HOOKS or not callable(value) or not (attr == "check" or attr.startswith("check_")):
                continue
            problem = (
                "overrides check(), the entry point the pipeline and load_detector call"
                if attr == "check"
                else f"defines {attr}(), which is not a check hook, so nothing would call it"
            )
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__} {problem}; put its checks in the hooks "
                f"{', '.join(CHECK_HOOKS)} (see anomaly_bench.models.base)"
            )

    def check(self, image_shape: tuple[int, ...] | None = None, splits: Splits | None = None) -> None:
        """The one entry point for a detector's checks; subclasses override the hooks, never this.

        Runs, in this order, the hooks for what is known: :meth:`check_settings` (once per
        detector), :meth:`check_shape` when an image shape is known (``splits`` bring their own),
        :meth:`check_data` when ``splits`` are given. The pipeline calls ``check()`` before the
        data is loaded, so bad settings fail before any download, then ``check(image_shape,
        splits)`` once it is loaded; ``load_detector`` calls ``check(image_shape)`` with the saved
        shape before loading the saved state.
        """
        if not self._settings_checked:
            self.check_settings()
            self._settings_checked = True
        if image_shape is None and splits is not None:
            image_shape = splits.image_shape
        if image_shape is not None:
            self.check_shape(tuple(image_shape))
        if splits is not None:
            self.check_data(splits)

    def check_settings(self) -> None:
        """Hook: raise ConfigError for settings that cannot work whatever the data (a count below 1,
        an unknown option). Needs no data, so it runs before anything is loaded."""

    def check_shape(self, image_shape: tuple[int, ...]) -> None:
        """Hook: raise ConfigError for settings that cannot work on images of ``image_shape``
        (H, W, C), e.g. more poolings than the image sides allow; may build the network, which
        :meth:`load` then fills. Runs after :meth:`check_settings`."""

    def check_data(self, splits: Splits) -> None:
        """Hook: raise ConfigError for settings the data's size rules out (e.g. more neighbours
        than training images). Runs after :meth:`check_shape`, only where there is data (a run,
        not ``load_detector``)."""

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
