"""One reconstruction detector for every autoencoder: layers come from the model config.

The five autoencoders of article 000 differ only in their layer lists and two switches
(an L1 penalty on the code for the sparse AE, training-time input noise for the denoising
AE), so they share this class. The anomaly score is the per-image reconstruction error.

Shapes come from the data, never from the YAML: a Dense layer with ``units: image`` gets one
unit per pixel value (H x W x C; 784 for MNIST, 3,072 for 32 x 32 RGB), a convolution with
``filters: channels`` one map per image channel (1 grey, 3 RGB), and a layer with
``padding: fit`` uses 'valid' padding when that brings the reconstruction to the image's
size and 'same' otherwise (conv_ae: 16 -> 14 -> 28 for MNIST, 16 -> 32 for 32 x 32 images).
A decoder that still misses the image shape is a one-line error before training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from anomaly_bench.config import TrainerConfig
from anomaly_bench.errors import ConfigError
from anomaly_bench.models.base import FitResult, TrainingData
from anomaly_bench.models.keras_training import (
    MODEL_FILE,
    KerasDetector,
    fit_model,
    load_keras_model,
    make_optimizer,
    stack_layers,
)
from anomaly_bench.scoring import RECONSTRUCTION_SCORES, reconstruction_error

PREDICT_BATCH = 1024
#: ``units: image`` in a layer spec: one unit per pixel value of the image.
IMAGE_UNITS = "image"
#: ``filters: channels`` in a layer spec: one output map per image channel.
CHANNEL_FILTERS = "channels"
#: ``padding: fit`` in a layer spec: 'valid' if that makes the output the image's size, else 'same'.
FIT_PADDING = "fit"


def specs_for_image(specs: list[dict], image_shape: tuple[int, ...], padding: str) -> list[dict]:
    """Layer specs with ``units: image``, ``filters: channels`` and ``padding: fit`` made concrete for this image shape."""
    out = []
    for spec in specs:
        spec = dict(spec)
        if spec.get("units") == IMAGE_UNITS:
            spec["units"] = int(np.prod(image_shape))
        if spec.get("filters") == CHANNEL_FILTERS:
            spec["filters"] = int(image_shape[-1])
        if spec.get("padding") == FIT_PADDING:
            spec["padding"] = padding
        out.append(spec)
    return out


@keras.saving.register_keras_serializable(package="anomaly_bench")
class ClippedGaussianNoise(layers.Layer):
    """Training-only corruption x + factor * N(0, 1), clipped to [0, 1] (denoising AE).

    Being a layer, the noise is fresh every batch and absent at inference, so the model
    learns noisy -> clean while scoring sees the clean test image.
    """

    def __init__(self, factor: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor, self.seed = float(factor), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        noise = keras.random.normal(ops.shape(inputs), seed=self.seed_generator)
        return ops.clip(inputs + self.factor * noise, 0.0, 1.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "factor": self.factor, "seed": self.seed}


@keras.saving.register_keras_serializable(package="anomaly_bench")
class CodeL1Penalty(layers.Layer):
    """Adds strength * mean over the batch of sum |code| to the loss (sparse AE).

    Written out rather than ``activity_regularizer`` because Keras changed how that is
    scaled by batch size (3.14); this keeps ``model.code_l1`` meaning the same everywhere.
    """

    def __init__(self, strength: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.strength = float(strength)

    def call(self, inputs):
        flat = ops.reshape(ops.abs(inputs), (ops.shape(inputs)[0], -1))
        self.add_loss(self.strength * ops.mean(ops.sum(flat, axis=1)))
        return inputs

    def get_config(self) -> dict:
        return {**super().get_config(), "strength": self.strength}


class ReconstructionDetector(KerasDetector):
    """Autoencoder whose anomaly score is the reconstruction error of each image."""

    def __init__(
        self,
        name: str,
        encoder: list[dict],
        decoder: list[dict],
        input_layout: str = "image",
        loss: str = "binary_crossentropy",
        score: str = "mse",
        code_l1: float = 0.0,
        noise_factor: float = 0.0,
    ) -> None:
        super().__init__(name)
        self.encoder_spec, self.decoder_spec = list(encoder), list(decoder)
        self.input_layout, self.loss, self.score_kind = input_layout, loss, score
        self.code_l1, self.noise_factor = float(code_l1), float(noise_factor)
        self.model: keras.Model | None = None
        self.encoder: keras.Model | None = None
        #: position of the code layer in ``model.layers``: a reloaded model.keras has the same order
        self.code_index: int | None = None

    def check_settings(self) -> None:
        if self.input_layout not in ("image", "flat"):
            raise ConfigError(f"model.input_layout={self.input_layout!r} is not allowed; choose image or flat")
        if self.score_kind not in RECONSTRUCTION_SCORES:
            raise ConfigError(
                f"model.score={self.score_kind!r} is not allowed; choose one of: {', '.join(RECONSTRUCTION_SCORES)}"
            )
        if self.code_l1 < 0:
            raise ConfigError(f"model.code_l1={self.code_l1} must be >= 0")
        if self.noise_factor < 0:
            raise ConfigError(f"model.noise_factor={self.noise_factor} must be >= 0")
        if not self.encoder_spec or not self.decoder_spec:
            raise ConfigError("model.encoder and model.decoder must each list at least one layer")
        try:
            keras.losses.get(self.loss)
        except (ValueError, TypeError):
            raise ConfigError(
                f"model.loss={self.loss!r} is not a Keras loss (e.g. binary_crossentropy, mse, mae)"
            ) from None

    def check_shape(self, image_shape: tuple[int, ...]) -> None:
        self.build(image_shape)

    def build(self, image_shape: tuple[int, ...]) -> None:
        inputs = keras.Input(shape=image_shape, name="image")
        x = inputs
        if self.noise_factor > 0:
            x = ClippedGaussianNoise(self.noise_factor, name="input_noise")(x)
        if self.input_layout == "flat":
            x = layers.Flatten(name="flatten")(x)
        x = stack_layers(x, specs_for_image(self.encoder_spec, image_shape, "same"), "model.encoder")
        code = x
        if self.code_l1 > 0:
            x = CodeL1Penalty(self.code_l1, name="code_l1")(x)
        code_penalised = x
        fits = any(spec.get("padding") == FIT_PADDING for spec in self.decoder_spec)
        for padding in ("valid", "same") if fits else ("same",):
            x = stack_layers(code_penalised, specs_for_image(self.decoder_spec, image_shape, padding), "model.decoder")
            if self.input_layout == "flat" and int(np.prod(x.shape[1:])) == int(np.prod(image_shape)):
                x = layers.Reshape(image_shape, name="unflatten")(x)
            if tuple(x.shape[1:]) == tuple(image_shape):
                break
        else:
            hint = (
                "; give the last Dense layer units: image"
                if self.input_layout == "flat"
                else "; choose dataset.image_size so each pooling halves the sides exactly (e.g. a multiple of 8)"
            )
            raise ConfigError(
                f"model.decoder ends in shape {tuple(x.shape[1:])}, but reconstructions must have the "
                f"image shape {tuple(image_shape)}{hint}"
            )
        self.model = keras.Model(inputs, x, name=self.name)
        self.encoder = keras.Model(inputs, code, name=f"{self.name}_encoder")
        self.code_index = self.model.layers.index(code._keras_history.operation)

    def fit(self, splits: TrainingData, trainer: TrainerConfig) -> FitResult:
        if self.model is None:
            self.build(splits.train.x.shape[1:])
        assert self.model is not None  # build() sets it
        self.model.compile(optimizer=make_optimizer(trainer), loss=self.loss)
        x, val = splits.train.x, splits.val.x
        history = fit_model(self.model, x, x, trainer, (val, val) if len(val) else None)
        return FitResult(history=history)

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        assert self.model is not None, "reconstructing needs a trained or loaded autoencoder"
        return self.model.predict(images, batch_size=PREDICT_BATCH, verbose=0)

    def encode(self, images: np.ndarray) -> np.ndarray:
        assert self.encoder is not None, "encoding needs a trained or loaded autoencoder"
        return self.encoder.predict(images, batch_size=PREDICT_BATCH, verbose=0).reshape(len(images), -1)

    def score(self, images: np.ndarray) -> np.ndarray:
        return reconstruction_error(images, self.reconstruct(images), self.score_kind)

    def load(self, folder: Path) -> None:
        model = load_keras_model(Path(folder) / MODEL_FILE)
        self.build(tuple(model.input_shape[1:]))  # the config's architecture says which layer is the code
        self.model = model
        self.encoder = keras.Model(model.inputs, model.layers[self.code_index].output, name=f"{self.name}_encoder")

    def describe(self) -> dict:
        return {
            **super().describe(),
            "code_shape": list(self.encoder.output.shape[1:]) if self.encoder is not None else None,
        }
