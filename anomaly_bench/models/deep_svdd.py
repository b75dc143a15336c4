"""One-class Deep SVDD (Ruff et al. 2018): map normal images close to a fixed centre c.

The encoder has no bias terms anywhere (``use_bias=False``, batch normalisation without
centre or scale) and c is fixed from one forward pass before training: with biases or a
learnable c the network could map every input to c and reach zero loss without learning
anything ("hypersphere collapse"). Coordinates of c near zero are pushed to +/-eps for the
same reason. Loss = mean squared distance to c (``compute_loss``); score = squared distance.
``model.pretrain_epochs`` > 0 first trains the encoder as part of an autoencoder, as in the paper.
The centre is a non-trainable weight of the registered model, so ``model.keras`` holds it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from anomaly_bench.config import TrainerConfig
from anomaly_bench.errors import ConfigError
from anomaly_bench.models.autoencoder import PREDICT_BATCH
from anomaly_bench.models.base import FitResult, TrainingData
from anomaly_bench.models.checks import integer, integers
from anomaly_bench.models.keras_training import KerasDetector, fit_model, make_optimizer

log = logging.getLogger("anomaly_bench")


def _bias_free_block(x, filters: int, kernel_size: int, slope: float, weight_decay: float):
    x = layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        use_bias=False,
        kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay else None,
    )(x)
    # momentum 0.9 = PyTorch's default 0.1 in the paper's code: moving statistics settle within tens of steps.
    x = layers.BatchNormalization(center=False, scale=False, epsilon=1e-4, momentum=0.9)(x)
    return layers.LeakyReLU(negative_slope=slope)(x)


def adjust_center(center: np.ndarray, eps: float) -> np.ndarray:
    """Coordinates within eps of zero move to +/-eps (sign kept, 0 -> +eps): a zero centre is trivial to hit."""
    center = np.array(center, dtype=np.float32)
    near = np.abs(center) < eps
    center[near] = np.where(center[near] < 0, -eps, eps)
    return center


@keras.saving.register_keras_serializable(package="anomaly_bench")
class DeepSVDD(keras.Model):
    """Bias-free conv encoder + fixed centre; ``call`` returns the representation."""

    def __init__(
        self,
        image_shape: tuple[int, ...],
        filters: Sequence[int] = (8, 4),
        kernel_size: int = 5,
        rep_dim: int = 32,
        leaky_slope: float = 0.01,
        weight_decay: float = 1e-6,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image_shape, self.filters = tuple(image_shape), tuple(int(f) for f in filters)
        self.kernel_size, self.rep_dim = int(kernel_size), int(rep_dim)
        self.leaky_slope, self.weight_decay = float(leaky_slope), float(weight_decay)
        inputs = keras.Input(shape=self.image_shape, name="image")
        x = inputs
        for f in self.filters:
            x = _bias_free_block(x, f, self.kernel_size, self.leaky_slope, self.weight_decay)
            x = layers.MaxPooling2D(2)(x)
        self.feature_shape = tuple(x.shape[1:])
        x = layers.Dense(
            self.rep_dim,
            use_bias=False,
            kernel_regularizer=keras.regularizers.L2(self.weight_decay) if self.weight_decay else None,
        )(layers.Flatten()(x))
        self.encoder = keras.Model(inputs, x, name="encoder")
        self.center = self.add_weight(shape=(self.rep_dim,), initializer="zeros", trainable=False, name="center")

    def call(self, images, training=False):
        return self.encoder(images, training=training)

    def squared_distance(self, representation):
        return ops.sum(ops.square(representation - self.center), axis=1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = ops.mean(self.squared_distance(y_pred))
        for penalty in self.losses:  # the L2 weight decay of the kernels
            loss = loss + penalty
        return loss

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "image_shape": list(self.image_shape),
            "filters": list(self.filters),
            "kernel_size": self.kernel_size,
            "rep_dim": self.rep_dim,
            "leaky_slope": self.leaky_slope,
            "weight_decay": self.weight_decay,
        }


def pretraining_autoencoder(svdd: DeepSVDD) -> keras.Model:
    """The encoder followed by a mirrored bias-free decoder (sigmoid output), for MSE pre-training."""
    image_shape = svdd.image_shape
    code = keras.Input(shape=(svdd.rep_dim,))
    y = layers.Dense(int(np.prod(svdd.feature_shape)), use_bias=False)(code)
    y = layers.Reshape(svdd.feature_shape)(layers.LeakyReLU(negative_slope=svdd.leaky_slope)(y))
    for f in reversed(svdd.filters):
        y = layers.UpSampling2D(2)(y)
        y = _bias_free_block(y, f, svdd.kernel_size, svdd.leaky_slope, svdd.weight_decay)
    y = layers.Conv2D(image_shape[-1], svdd.kernel_size, padding="same", use_bias=False, activation="sigmoid")(y)
    decoder = keras.Model(code, y, name="decoder")
    inputs = keras.Input(shape=image_shape)
    return keras.Model(inputs, decoder(svdd.encoder(inputs)), name="pretraining_autoencoder")


class DeepSVDDDetector(KerasDetector):
    """Score = squared distance of an image's representation to the fixed centre c."""

    def __init__(
        self,
        name: str,
        filters: list[int],
        kernel_size: int = 5,
        rep_dim: int = 32,
        leaky_slope: float = 0.01,
        weight_decay: float = 1e-6,
        eps: float = 0.1,
        pretrain_epochs: int = 0,
    ) -> None:
        super().__init__(name)
        self.filters, self.kernel_size, self.rep_dim = list(filters), kernel_size, rep_dim
        self.leaky_slope, self.weight_decay = float(leaky_slope), float(weight_decay)
        self.eps, self.pretrain_epochs = float(eps), pretrain_epochs
        self.model: DeepSVDD | None = None

    def check_settings(self) -> None:
        for key in ("rep_dim", "kernel_size"):
            integer(key, getattr(self, key), must="a positive integer")
        integers("filters", self.filters)
        if self.eps <= 0:
            raise ConfigError(f"model.eps={self.eps} must be > 0 (centre coordinates nearer zero move to +/-eps)")
        if self.weight_decay < 0 or not 0 <= self.leaky_slope < 1:
            raise ConfigError(
                f"model.weight_decay={self.weight_decay} must be >= 0 and model.leaky_slope="
                f"{self.leaky_slope} in [0, 1)"
            )
        integer("pretrain_epochs", self.pretrain_epochs, low=0, must="an integer >= 0 (0 = no pre-training)")

    def check_shape(self, image_shape: tuple[int, ...]) -> None:
        if any(s % 2 ** len(self.filters) for s in image_shape[:2]):
            raise ConfigError(
                f"model.filters={self.filters}: {len(self.filters)} poolings by 2 do not divide "
                f"the image sides {image_shape[0]}x{image_shape[1]}; use fewer layers or set "
                "dataset.image_size"
            )
        self.model = DeepSVDD(
            image_shape,
            self.filters,
            self.kernel_size,
            self.rep_dim,
            self.leaky_slope,
            self.weight_decay,
            name=self.name,
        )

    def fit(self, splits: TrainingData, trainer: TrainerConfig) -> FitResult:
        assert self.model is not None, "check_shape() builds the network before fit()"
        x, val = splits.train.x, splits.val.x
        info: dict = {}
        if self.pretrain_epochs:
            autoencoder = pretraining_autoencoder(self.model)
            log.info("pre-training the encoder as an autoencoder for %d epochs", self.pretrain_epochs)
            autoencoder.compile(optimizer=make_optimizer(trainer), loss="mse")
            pre = fit_model(
                autoencoder,
                x,
                x,
                dataclasses.replace(trainer, epochs=self.pretrain_epochs),
                (val, val) if len(val) else None,
            )
            info["pretrain_final_loss"] = float(pre["loss"].iloc[-1])
        center = adjust_center(self.training_mode_mean(x, trainer.batch_size), self.eps)
        self.model.center.assign(center)
        info["center_norm"] = float(np.linalg.norm(center))
        log.info("centre c fixed (norm %.4g); training towards it", info["center_norm"])
        self.model.compile(optimizer=make_optimizer(trainer))
        history = fit_model(self.model, x, x, trainer, (val, val) if len(val) else None)
        return FitResult(history=history, info=info)

    def training_mode_mean(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        """Mean representation as training sees it (batch statistics in batch normalisation).

        Training pulls training-mode representations towards c, so c is measured the same way;
        the pass also moves the normalisation's moving statistics towards the data.
        """
        assert self.model is not None, "check_shape() builds the network before fit()"
        total = np.zeros(self.rep_dim, dtype=np.float64)
        for start in range(0, len(images), batch_size):
            batch = self.model.encoder(images[start : start + batch_size], training=True)
            total += ops.convert_to_numpy(ops.sum(batch, axis=0))
        return total / len(images)

    def representation(self, images: np.ndarray) -> np.ndarray:
        assert self.model is not None, "scoring needs a trained or loaded network"
        return self.model.predict(images, batch_size=PREDICT_BATCH, verbose=0)

    def score(self, images: np.ndarray) -> np.ndarray:
        assert self.model is not None, "scoring needs a trained or loaded network"
        center = ops.convert_to_numpy(self.model.center).astype(np.float64)
        return np.sum((self.representation(images).astype(np.float64) - center) ** 2, axis=1)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "rep_dim": self.rep_dim,
            "pretrain_epochs": self.pretrain_epochs,
            "skipped_artifacts": {"reconstructions.png": "Deep SVDD maps images to points, it does not reconstruct"},
        }
