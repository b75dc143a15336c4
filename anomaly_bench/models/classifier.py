"""The supervised baseline of article 001: a small CNN that classifies normal vs anomaly.

Unlike every other detector it learns from labelled anomalies (``dataset.labelled_anomalies``,
10 in the article), which is exactly what article 001 sets out to show is fragile: with 10
anomalies beside 6,000 normal images the plain cross-entropy barely sees them. Balanced class
weights (``model.class_weight: balanced``) make each class count equally in the loss;
``none`` (the default) reproduces the article. The anomaly score is the predicted anomaly probability.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from anomaly_bench.config import TrainerConfig
from anomaly_bench.errors import ConfigError
from anomaly_bench.models.autoencoder import PREDICT_BATCH
from anomaly_bench.models.base import FitResult, TrainingData
from anomaly_bench.models.keras_training import KerasDetector, fit_model, make_optimizer, stack_layers

CLASS_WEIGHTS = ("balanced", "none")
N_CLASSES = 2  # output unit 0 = normal, 1 = anomaly
log = logging.getLogger("anomaly_bench")


class CNNClassifierDetector(KerasDetector):
    """Softmax classifier trained on normal + labelled anomalous images; score = P(anomaly)."""

    supervision = "supervised"

    def __init__(
        self, name: str, layers: list[dict], validation_split: float = 0.3, class_weight: str = "none"
    ) -> None:
        super().__init__(name)
        self.layer_specs, self.validation_split, self.class_weight = list(layers), float(validation_split), class_weight
        self.model: keras.Model | None = None
        self.weights_used: dict[int, float] | None = None

    def check_settings(self) -> None:
        if not 0.0 <= self.validation_split < 1.0:
            raise ConfigError(f"model.validation_split={self.validation_split} must be in [0, 1)")
        if self.class_weight not in CLASS_WEIGHTS:
            raise ConfigError(
                f"model.class_weight={self.class_weight!r} is not allowed; choose one of: {', '.join(CLASS_WEIGHTS)}"
            )
        if not self.layer_specs:
            raise ConfigError("model.layers must list at least one layer")

    def check_shape(self, image_shape: tuple[int, ...]) -> None:
        self.build(image_shape)

    def build(self, image_shape: tuple[int, ...]) -> None:
        inputs = keras.Input(shape=image_shape, name="image")
        x = stack_layers(inputs, self.layer_specs, "model.layers")
        if tuple(x.shape[1:]) != (N_CLASSES,):
            raise ConfigError(
                f"model.layers ends in shape {tuple(x.shape[1:])}; the classifier needs ({N_CLASSES},) "
                "softmax outputs (normal, anomaly)"
            )
        self.model = keras.Model(inputs, x, name=self.name)

    def _split(self, splits: TrainingData, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The article's hold-out: ``validation_split`` of the training images (anomalies included), stratified."""
        x, y = splits.train.x, splits.train.labels
        if self.validation_split == 0:
            return x, y, x[:0], y[:0]
        # Stratifying needs two of each class; with a single labelled anomaly it goes to training.
        stratify = y if np.bincount(y, minlength=N_CLASSES).min() >= 2 else None
        if stratify is None:
            log.info("only %d labelled anomaly: validation split not stratified", int(y.sum()))
        x_fit, x_val, y_fit, y_val = train_test_split(
            x, y, test_size=self.validation_split, stratify=stratify, random_state=seed
        )
        return x_fit, y_fit, x_val, y_val

    def fit(self, splits: TrainingData, trainer: TrainerConfig) -> FitResult:
        if splits.train.labels.sum() == 0:
            raise ConfigError("dataset.labelled_anomalies=0: the classifier has no anomalous training images")
        if self.model is None:
            self.build(splits.train.x.shape[1:])
        assert self.model is not None  # build() sets it
        x_fit, y_fit, x_val, y_val = self._split(splits, trainer.seed)
        if self.class_weight == "balanced":
            weights = compute_class_weight("balanced", classes=np.arange(N_CLASSES), y=y_fit)
            self.weights_used = {c: float(w) for c, w in enumerate(weights)}
        self.model.compile(optimizer=make_optimizer(trainer), loss="sparse_categorical_crossentropy")
        history = fit_model(
            self.model, x_fit, y_fit, trainer, (x_val, y_val) if len(x_val) else None, class_weight=self.weights_used
        )
        return FitResult(
            history=history,
            info={
                "n_fit": len(y_fit),
                "n_fit_anomalies": int(y_fit.sum()),
                "n_holdout": len(y_val),
                "n_holdout_anomalies": int(y_val.sum()),
                "class_weight_used": self.weights_used,
            },
        )

    def score(self, images: np.ndarray) -> np.ndarray:
        assert self.model is not None, "scoring needs a trained or loaded classifier"
        return self.model.predict(images, batch_size=PREDICT_BATCH, verbose=0)[:, 1].astype(np.float64)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "validation_split": self.validation_split,
            "class_weight": self.class_weight,
            "skipped_artifacts": {"reconstructions.png": "a classifier has no reconstruction of its input"},
        }
