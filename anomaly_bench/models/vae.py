"""Convolutional variational autoencoder: reconstruction error or negative ELBO as the score.

The network is a registered Keras model (encoder -> (mean, log-variance) -> sampled code ->
decoder) whose loss lives in ``compute_loss``: per image, the summed binary cross-entropy of
the reconstruction plus ``beta`` times the KL divergence of the code distribution from N(0, I).
Sampling is a layer with its own ``SeedGenerator``, so training is reproducible from the seed
and the saved ``model.keras`` reloads in safe mode. Scoring is deterministic: it decodes the
posterior mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from anomaly_bench import plots
from anomaly_bench.config import TrainerConfig
from anomaly_bench.data.split import Splits
from anomaly_bench.errors import ConfigError
from anomaly_bench.models.autoencoder import PREDICT_BATCH
from anomaly_bench.models.base import FitResult, TrainingData
from anomaly_bench.models.checks import integer, integers, one_of
from anomaly_bench.models.keras_training import KerasDetector, fit_model, make_optimizer
from anomaly_bench.scoring import reconstruction_error

SCORES = ("mse", "elbo")


@keras.saving.register_keras_serializable(package="anomaly_bench")
class Sampling(layers.Layer):
    """z = mean + exp(log_var / 2) * N(0, I): the reparameterisation trick, seeded."""

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        mean, log_var = inputs
        noise = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
        return mean + ops.exp(0.5 * log_var) * noise

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed}


def per_image_terms(images, reconstruction, mean, log_var):
    """(summed binary cross-entropy over pixels, KL(q(z|x) || N(0, I))) for each image."""
    mean, log_var = ops.convert_to_tensor(mean), ops.convert_to_tensor(log_var)  # NumPy - torch.Tensor fails
    bce = ops.binary_crossentropy(images, ops.clip(reconstruction, 1e-7, 1.0 - 1e-7))
    reconstruction_term = ops.sum(ops.reshape(bce, (ops.shape(images)[0], -1)), axis=1)
    kl = -0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=1)
    return reconstruction_term, kl


@keras.saving.register_keras_serializable(package="anomaly_bench")
class ConvVAE(keras.Model):
    """Strided conv encoder to a ``latent_dim`` Gaussian, transposed-conv decoder back to the image."""

    def __init__(
        self,
        image_shape: tuple[int, ...],
        filters: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        dense_units: int = 16,
        latent_dim: int = 2,
        beta: float = 1.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image_shape, self.filters = tuple(image_shape), tuple(int(f) for f in filters)
        self.kernel_size, self.dense_units, self.latent_dim = int(kernel_size), int(dense_units), int(latent_dim)
        self.beta, self.seed = float(beta), seed

        inputs = keras.Input(shape=self.image_shape, name="image")
        x = inputs
        for f in self.filters:
            x = layers.Conv2D(f, self.kernel_size, strides=2, padding="same", activation="relu")(x)
        feature_shape = tuple(x.shape[1:])
        x = layers.Dense(self.dense_units, activation="relu")(layers.Flatten()(x))
        mean = layers.Dense(self.latent_dim, name="z_mean")(x)
        log_var = layers.Dense(self.latent_dim, name="z_log_var")(x)
        self.encoder = keras.Model(inputs, [mean, log_var], name="encoder")

        code = keras.Input(shape=(self.latent_dim,), name="code")
        y = layers.Dense(int(np.prod(feature_shape)), activation="relu")(code)
        y = layers.Reshape(feature_shape)(y)
        for f in reversed(self.filters):
            y = layers.Conv2DTranspose(f, self.kernel_size, strides=2, padding="same", activation="relu")(y)
        y = layers.Conv2D(self.image_shape[-1], self.kernel_size, padding="same", activation="sigmoid")(y)
        self.decoder = keras.Model(code, y, name="decoder")
        self.sampling = Sampling(seed, name="sampling")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")

    def call(self, images, training=False):
        mean, log_var = self.encoder(images, training=training)
        return self.decoder(self.sampling([mean, log_var]), training=training), mean, log_var

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        reconstruction, mean, log_var = y_pred
        reconstruction_term, kl = per_image_terms(x, reconstruction, mean, log_var)
        self.reconstruction_tracker.update_state(reconstruction_term)
        self.kl_tracker.update_state(kl)
        return ops.mean(reconstruction_term + self.beta * kl)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "image_shape": list(self.image_shape),
            "filters": list(self.filters),
            "kernel_size": self.kernel_size,
            "dense_units": self.dense_units,
            "latent_dim": self.latent_dim,
            "beta": self.beta,
            "seed": self.seed,
        }


class VAEDetector(KerasDetector):
    """Score = reconstruction error of the decoded posterior mean (mse) or the per-image training objective (elbo)."""

    def __init__(
        self,
        name: str,
        filters: list[int],
        kernel_size: int = 3,
        dense_units: int = 16,
        latent_dim: int = 2,
        beta: float = 1.0,
        score: str = "elbo",
    ) -> None:
        super().__init__(name)
        self.filters, self.kernel_size, self.dense_units = list(filters), kernel_size, dense_units
        self.latent_dim, self.beta, self.score_kind = latent_dim, float(beta), score
        self.model: ConvVAE | None = None

    def check_settings(self) -> None:
        for key in ("latent_dim", "kernel_size", "dense_units"):
            integer(key, getattr(self, key), must="a positive integer")
        integers("filters", self.filters)
        if self.beta < 0:
            raise ConfigError(f"model.beta={self.beta} must be >= 0")
        one_of("score", self.score_kind, SCORES)

    def check_shape(self, image_shape: tuple[int, ...]) -> None:
        side = 2 ** len(self.filters)
        if any(s % side for s in image_shape[:2]):
            raise ConfigError(
                f"model.filters has {len(self.filters)} stride-2 layers; the image sides "
                f"{image_shape[0]}x{image_shape[1]} must divide by {side} (use at most "
                f"{min(_max_halvings(s) for s in image_shape[:2])} filters, or set dataset.image_size)"
            )

    def fit(self, splits: TrainingData, trainer: TrainerConfig) -> FitResult:
        self.model = ConvVAE(
            splits.train.x.shape[1:],
            self.filters,
            self.kernel_size,
            self.dense_units,
            self.latent_dim,
            self.beta,
            seed=trainer.seed,
            name=self.name,
        )
        self.model.compile(optimizer=make_optimizer(trainer))
        x, val = splits.train.x, splits.val.x
        history = fit_model(self.model, x, x, trainer, (val, val) if len(val) else None)
        return FitResult(history=history)

    def encode(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.model is not None, "encoding needs a trained or loaded VAE"
        mean, log_var = self.model.encoder.predict(images, batch_size=PREDICT_BATCH, verbose=0)
        return mean, log_var

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        assert self.model is not None, "reconstructing needs a trained or loaded VAE"
        return self.model.decoder.predict(self.encode(images)[0], batch_size=PREDICT_BATCH, verbose=0)

    def score(self, images: np.ndarray) -> np.ndarray:
        mean, log_var = self.encode(images)
        assert self.model is not None, "scoring needs a trained or loaded VAE"
        reconstruction = self.model.decoder.predict(mean, batch_size=PREDICT_BATCH, verbose=0)
        if self.score_kind == "mse":
            return reconstruction_error(images, reconstruction, "mse")
        terms = per_image_terms(images, reconstruction, mean, log_var)
        rec, kl = (ops.convert_to_numpy(t).astype(np.float64) for t in terms)
        return rec + self.beta * kl

    def write_extra_artifacts(self, folder: Path, splits: Splits, test_scores: np.ndarray) -> list[str]:
        if self.latent_dim != 2:
            return []
        plots.latent(
            self.encode(splits.test.x)[0],
            splits.test.labels,
            folder / "latent.png",
            f"{self.name}: posterior means of the test images",
        )
        return ["latent.png"]

    def describe(self) -> dict:
        info = {**super().describe(), "latent_dim": self.latent_dim, "beta": self.beta, "score": self.score_kind}
        if self.latent_dim != 2:
            info["skipped_artifacts"] = {"latent.png": f"the latent is {self.latent_dim}-D, not 2-D"}
        return info


def _max_halvings(side: int) -> int:
    count = 0
    while side % 2 == 0:
        side //= 2
        count += 1
    return count
