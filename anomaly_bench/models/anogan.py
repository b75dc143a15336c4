"""AnoGAN (article 004): a DCGAN learns normal images; an image's anomaly score is how badly the
generator can imitate it.

Scoring finds, per test image, the latent z whose generated image is closest under
(1-lambda) * sum|x - G(z)| + lambda * sum|f(x) - f(G(z))| (f = an intermediate discriminator
layer), either by AnoGAN's latent search (``model.scoring: search``, all images of a batch
optimised together) or in one pass with an encoder trained after the GAN
(``model.scoring: encoder``, f-AnoGAN's izi_f), evaluating the same loss at z = E(x).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from anomaly_bench.config import TrainerConfig
from anomaly_bench.data.split import Splits
from anomaly_bench.errors import ConfigError
from anomaly_bench.models.anogan_networks import (
    AnoGAN,
    EncoderTraining,
    anomaly_loss,
    build_discriminator,
    build_encoder,
    build_generator,
    feature_extractor,
    to_tanh_range,
    to_unit_range,
)
from anomaly_bench.models.base import Detector, FitResult, TrainingData
from anomaly_bench.models.checks import integer, integers, one_of
from anomaly_bench.models.keras_training import MODEL_FILE, callbacks, load_keras_model
from anomaly_bench.models.latent_search import BatchedLatentSearch
from anomaly_bench.models.train_steps import compiled

log = logging.getLogger("anomaly_bench")
SCORINGS = ("search", "encoder")
PREDICT_BATCH = 512


def save_grid(images: np.ndarray, path: Path, columns: int) -> None:
    """Tile images in [0, 1] into one PNG, ``columns`` per row: grey for one channel, colour for three."""
    rows = -(-len(images) // columns)
    h, w, c = images.shape[1:4]
    canvas = np.ones((rows * h, columns * w, c), "float32")
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        canvas[r * h : (r + 1) * h, col * w : (col + 1) * w] = image
    if c == 1:
        plt.imsave(path, canvas[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        plt.imsave(path, np.clip(canvas, 0.0, 1.0))


class GANProgress(keras.callbacks.Callback):
    """Writes ``samples/epoch_XXX.png`` (fixed z, so grids are comparable across epochs) every
    ``sample_every`` epochs and after the last one, and generator/discriminator checkpoints
    ``checkpoints/*_epoch_XXX.keras`` every ``checkpoint_every`` epochs (0 turns either off)."""

    def __init__(
        self, folder: Path, epochs: int, sample_every: int, checkpoint_every: int, z: np.ndarray, columns: int
    ) -> None:
        super().__init__()
        self.folder, self.epochs = folder, epochs
        self.sample_every, self.checkpoint_every = sample_every, checkpoint_every
        self.z, self.columns = z, columns
        self.written: list[str] = []

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        n = epoch + 1
        if self.sample_every and (n % self.sample_every == 0 or n == self.epochs):
            (self.folder / "samples").mkdir(exist_ok=True)
            name = f"samples/epoch_{n:03d}.png"
            save_grid(keras.ops.convert_to_numpy(self.model(self.z)), self.folder / name, self.columns)
            self.written.append(name)
        if self.checkpoint_every and n % self.checkpoint_every == 0:
            (self.folder / "checkpoints").mkdir(exist_ok=True)
            for net in (self.model.generator, self.model.discriminator):
                name = f"checkpoints/{net.name}_epoch_{n:03d}.keras"
                net.save(self.folder / name)
                self.written.append(name)


class AnoGANDetector(Detector):
    """DCGAN + AnoGAN scoring. GAN training uses Adam with ``g_learning_rate``/``d_learning_rate``
    and ``beta_1`` (DCGAN practice); from ``trainer`` it takes epochs, batch_size and seed."""

    reconstruction_label = "nearest generated image"

    @property
    def unused_settings(self) -> tuple[str, ...]:
        """The GAN's own Adam settings (and no early stopping) replace the trainer's."""
        return ("trainer.optimizer", "trainer.learning_rate", "trainer.lr_schedule", "trainer.early_stopping")

    def __init__(
        self,
        name: str = "anogan",
        latent_dim: int = 30,
        generator_filters: Sequence[int] = (128, 64),
        discriminator_filters: Sequence[int] = (64, 128),
        kernel_size: int = 5,
        leaky_slope: float = 0.2,
        g_learning_rate: float = 2e-4,
        d_learning_rate: float = 2e-4,
        beta_1: float = 0.5,
        lambda_: float = 0.1,
        scoring: str = "search",
        search_steps: int = 100,
        search_lr: float = 0.2,
        search_batch: int = 32,
        encoder_epochs: int = 10,
        encoder_learning_rate: float = 1e-3,
        sample_every: int = 10,
        checkpoint_every: int = 50,
        sample_grid: int = 4,
    ) -> None:
        super().__init__(name)
        self.latent_dim, self.kernel_size, self.leaky_slope = latent_dim, kernel_size, float(leaky_slope)
        self.generator_filters, self.discriminator_filters = list(generator_filters), list(discriminator_filters)
        self.g_learning_rate, self.d_learning_rate, self.beta_1 = (
            float(g_learning_rate),
            float(d_learning_rate),
            float(beta_1),
        )
        self.lambda_, self.scoring = float(lambda_), scoring
        self.search_steps, self.search_lr, self.search_batch = search_steps, float(search_lr), search_batch
        self.encoder_epochs, self.encoder_learning_rate = encoder_epochs, float(encoder_learning_rate)
        self.sample_every, self.checkpoint_every, self.sample_grid = sample_every, checkpoint_every, sample_grid
        self.gan: AnoGAN | None = None
        self.seed = 0
        self.progress: GANProgress | None = None
        self.encoder_history = pd.DataFrame()
        self._search: BatchedLatentSearch | None = None
        self._encoder_pass: Callable[[Any], Any] | None = None

    # ----------------------------------------------------------------- settings
    def check_settings(self) -> None:
        integer("latent_dim", self.latent_dim)
        integers("generator_filters", self.generator_filters)
        integers("discriminator_filters", self.discriminator_filters)
        integer("kernel_size", self.kernel_size)
        if self.leaky_slope < 0:
            raise ConfigError(f"model.leaky_slope={self.leaky_slope} must be >= 0")
        for key in ("g_learning_rate", "d_learning_rate", "search_lr", "encoder_learning_rate"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"model.{key}={getattr(self, key)} must be > 0")
        if not 0.0 <= self.beta_1 < 1.0:
            raise ConfigError(f"model.beta_1={self.beta_1} must be in [0, 1)")
        if not 0.0 <= self.lambda_ <= 1.0:
            raise ConfigError(f"model.lambda_={self.lambda_} must be in [0, 1] (weight of the feature loss)")
        one_of("scoring", self.scoring, SCORINGS)
        integer("search_steps", self.search_steps)
        integer("search_batch", self.search_batch)
        integer("encoder_epochs", self.encoder_epochs)
        integer("sample_every", self.sample_every, low=0)
        integer("checkpoint_every", self.checkpoint_every, low=0)
        integer("sample_grid", self.sample_grid)

    def check_shape(self, image_shape: tuple[int, ...]) -> None:
        factor = 2 ** len(self.generator_filters)
        if any(side % factor for side in image_shape[:2]):
            raise ConfigError(
                f"model.generator_filters={self.generator_filters} up-samples {len(self.generator_filters)} times, "
                f"but the image sides {image_shape[0]}x{image_shape[1]} are not divisible by {factor}; use fewer "
                "filters or set dataset.image_size"
            )
        self.build(image_shape)

    def build(self, image_shape: tuple[int, ...]) -> None:
        generator = build_generator(
            self.latent_dim, self.generator_filters, self.kernel_size, self.leaky_slope, image_shape
        )
        discriminator = build_discriminator(self.discriminator_filters, self.kernel_size, self.leaky_slope, image_shape)
        encoder = (
            build_encoder(self.latent_dim, self.discriminator_filters, self.kernel_size, self.leaky_slope, image_shape)
            if self.scoring == "encoder"
            else None
        )
        self.gan = AnoGAN(generator, discriminator, encoder, name=self.name)

    # ----------------------------------------------------------------- training
    def fit(self, splits: TrainingData, trainer: TrainerConfig) -> FitResult:
        x = splits.train.x
        self.seed = trainer.seed
        if self.gan is None:
            self.build(x.shape[1:])
        assert self.gan is not None  # build() sets it
        self.gan.compile(
            d_optimizer=keras.optimizers.Adam(self.d_learning_rate, beta_1=self.beta_1),
            g_optimizer=keras.optimizers.Adam(self.g_learning_rate, beta_1=self.beta_1),
        )
        extra: list[keras.callbacks.Callback] = []
        if self.run_dir is not None:
            z = (
                np.random.default_rng(trainer.seed)
                .standard_normal((self.sample_grid**2, self.latent_dim))
                .astype("float32")
            )
            self.progress = GANProgress(
                Path(self.run_dir), trainer.epochs, self.sample_every, self.checkpoint_every, z, self.sample_grid
            )
            extra.append(self.progress)
        # No early stopping: the GAN's losses say little about when its generator is good.
        history = self.gan.fit(
            x,
            epochs=trainer.epochs,
            batch_size=trainer.batch_size,
            shuffle=True,
            verbose=0,
            callbacks=callbacks(trainer.epochs, extra=extra),
        )
        table = pd.DataFrame(history.history)
        table.insert(0, "epoch", np.arange(1, len(table) + 1))
        info = {}
        if self.scoring == "encoder":
            self.encoder_history = self.fit_encoder(x, trainer.batch_size)
            info["encoder_final_loss"] = float(self.encoder_history["encoder_loss"].iloc[-1])
        return FitResult(history=table, info=info)

    def fit_encoder(self, x: np.ndarray, batch_size: int) -> pd.DataFrame:
        """f-AnoGAN's second stage: learn z = E(x) with the GAN frozen (builds the encoder if missing)."""
        assert self.gan is not None, "fit_encoder() needs the trained GAN"
        if self.gan.encoder is None:
            self.gan.encoder = build_encoder(
                self.latent_dim, self.discriminator_filters, self.kernel_size, self.leaky_slope, x.shape[1:]
            )
        log.info("encoder: training for %d epochs with the GAN frozen", self.encoder_epochs)
        training = EncoderTraining(self.gan.encoder, self.gan.generator, self.features, self.lambda_)
        training.compile(optimizer=keras.optimizers.Adam(self.encoder_learning_rate))
        history = training.fit(
            x,
            epochs=self.encoder_epochs,
            batch_size=batch_size,
            shuffle=True,
            verbose=0,
            callbacks=callbacks(self.encoder_epochs, "encoder epoch"),
        )
        table = pd.DataFrame(history.history)
        table.insert(0, "epoch", np.arange(1, len(table) + 1))
        return table

    # ----------------------------------------------------------------- scoring
    @property
    def features(self) -> keras.Model:
        assert self.gan is not None, "the discriminator's features need a built or loaded GAN"
        return feature_extractor(self.gan.discriminator)

    @property
    def latent_search(self) -> BatchedLatentSearch:
        if self._search is None:
            assert self.gan is not None, "the latent search needs a trained or loaded GAN"
            self._search = BatchedLatentSearch(
                self.gan.generator,
                self.features,
                self.lambda_,
                self.search_steps,
                self.search_lr,
                self.search_batch,
                self.seed,
            )
        return self._search

    def encoder_score(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The AnoGAN loss at z = E(x), in one compiled forward pass per batch; also returns G(E(x))."""
        if self._encoder_pass is None:
            features = self.features
            gan = self.gan
            assert gan is not None and gan.encoder is not None, "encoder scoring needs a GAN with its trained encoder"
            encoder = gan.encoder

            def encoder_pass(images):
                x = to_tanh_range(images)
                g = gan.generator(encoder(x, training=False), training=False)
                return (
                    anomaly_loss(x, features(x, training=False), g, features(g, training=False), self.lambda_),
                    to_unit_range(g),
                )

            self._encoder_pass = compiled(
                encoder_pass, [*gan.generator.variables, *encoder.variables, *gan.discriminator.variables]
            )
        losses, generated = [], []
        for start in range(0, len(images), PREDICT_BATCH):
            loss, g = self._encoder_pass(keras.ops.convert_to_tensor(images[start : start + PREDICT_BATCH], "float32"))
            losses.append(keras.ops.convert_to_numpy(loss))
            generated.append(keras.ops.convert_to_numpy(g))
        return np.concatenate(losses), np.concatenate(generated)

    def _score_and_nearest(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.scoring == "encoder":
            return self.encoder_score(images)
        return self.latent_search(images)

    def score(self, images: np.ndarray) -> np.ndarray:
        return self._score_and_nearest(images)[0].astype("float64")

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """The generated image nearest to each input (G(z*) or G(E(x)))."""
        return self._score_and_nearest(images)[1]

    # ----------------------------------------------------------------- outputs
    def save(self, folder: Path) -> list[str]:
        # A fresh, uncompiled wrapper: the file holds the networks, not the GAN optimizers.
        assert self.gan is not None, "save() needs a trained GAN"
        wrapper = AnoGAN(self.gan.generator, self.gan.discriminator, self.gan.encoder, seed=self.seed, name=self.name)
        wrapper(keras.ops.zeros((1, self.latent_dim)))  # builds it
        wrapper.save(Path(folder) / MODEL_FILE)
        return [MODEL_FILE]

    def load(self, folder: Path) -> None:
        self.gan = load_keras_model(Path(folder) / MODEL_FILE)
        self.seed = self.gan.seed if self.gan.seed is not None else 0  # the latent search starts from it
        self._search, self._encoder_pass = None, None

    def write_extra_artifacts(self, folder: Path, splits: Splits, test_scores: np.ndarray) -> list[str]:
        written = list(self.progress.written) if self.progress is not None else []
        if len(self.encoder_history):
            self.encoder_history.to_csv(folder / "encoder_history.csv", index=False)
            written.append("encoder_history.csv")
        return written

    def describe(self) -> dict:
        nets = (self.gan.generator, self.gan.discriminator, self.gan.encoder) if self.gan is not None else ()
        sizes = {net.name: int(net.count_params()) for net in nets if net is not None}
        return {
            **super().describe(),
            "n_params": sum(sizes.values()) if sizes else None,
            "n_params_by_network": sizes or None,
            "scoring": self.scoring,
            "search_steps": self.search_steps if self.scoring == "search" else None,
        }
