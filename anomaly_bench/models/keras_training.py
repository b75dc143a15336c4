"""Shared Keras plumbing: layers from config, optimizer, the callbacks of every fit, saving.

:func:`callbacks` is the one list every Keras model trains with (AnoGAN and its encoder
included): a log line per epoch, early stopping where it applies, and the announcement of each
epoch's logged values to whoever listens (the pipeline's trackers, see :func:`epoch_listener`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from keras import layers

from anomaly_bench.config import EarlyStoppingConfig, TrainerConfig
from anomaly_bench.errors import ConfigError
from anomaly_bench.models.base import Detector

log = logging.getLogger("anomaly_bench")


def make_layer(spec: dict, where: str) -> layers.Layer:
    """A Keras layer from ``{class_name: Dense, units: 32, ...}``; errors name the config path."""
    spec = dict(spec)
    class_name = spec.pop("class_name", None)
    cls = getattr(layers, str(class_name), None)
    if not (isinstance(cls, type) and issubclass(cls, layers.Layer)):
        raise ConfigError(
            f"{where}.class_name={class_name!r} is not a keras.layers class (e.g. Dense, Conv2D, MaxPooling2D) or ResidualBlock"
        )
    try:
        return cls(**spec)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {class_name}({spec}) is invalid: {exc}") from None


RESIDUAL_BLOCK = "ResidualBlock"


def residual_block(x, spec: dict, where: str):
    """``{class_name: ResidualBlock, filters: F, strides: S}``: He et al.'s basic block from plain layers.

    Conv 3x3 (stride S) - BN - ReLU - Conv 3x3 - BN, added to the input (through a 1x1 conv + BN
    when the stride or the channel count changes), then ReLU. Built from stock Keras layers, so
    a network using it saves and loads in safe mode without custom objects.
    """
    settings = dict(spec)
    settings.pop("class_name")
    filters, strides = settings.pop("filters", None), settings.pop("strides", 1)
    if settings or not (isinstance(filters, int) and filters >= 1 and strides in (1, 2)):
        raise ConfigError(
            f"{where}: {RESIDUAL_BLOCK} takes filters (a positive integer) and strides (1 or 2) only; got {dict(spec)}"
        )
    y = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    y = layers.ReLU()(layers.BatchNormalization()(y))
    y = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same", use_bias=False)(y))
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.BatchNormalization()(layers.Conv2D(filters, 1, strides=strides, use_bias=False)(x))
    return layers.ReLU()(layers.Add()([y, shortcut]))


def stack_layers(x, specs: list[dict], where: str):
    """Apply the layers a config lists (e.g. model.encoder) to x, in order; a ``ResidualBlock``
    entry adds a residual block (see :func:`residual_block`)."""
    for i, spec in enumerate(specs):
        if dict(spec).get("class_name") == RESIDUAL_BLOCK:
            x = residual_block(x, dict(spec), f"{where}[{i}]")
        else:
            x = make_layer(spec, f"{where}[{i}]")(x)
    return x


class EpochLogger(keras.callbacks.Callback):
    """One plain line per epoch (no progress-bar carriage returns in run.log)."""

    def __init__(self, epochs: int, label: str = "epoch") -> None:
        super().__init__()
        self.epochs, self.label = epochs, label
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        values = " - ".join(f"{k} {v:.5g}" for k, v in (logs or {}).items())
        log.info(
            "%s %d/%d - %s - %.1f s", self.label, epoch + 1, self.epochs, values, time.perf_counter() - self._start
        )


def make_optimizer(trainer: TrainerConfig) -> keras.optimizers.Optimizer:
    try:
        return keras.optimizers.get(
            {"class_name": trainer.optimizer, "config": {"learning_rate": trainer.learning_rate}}
        )
    except (ValueError, TypeError):
        raise ConfigError(
            f"trainer.optimizer={trainer.optimizer!r} is not a Keras optimizer; e.g. adam, adadelta, sgd, rmsprop, adamw"
        ) from None


def learning_rate_schedule(trainer: TrainerConfig) -> list[keras.callbacks.Callback]:
    """The callback that moves the learning rate per ``trainer.lr_schedule`` (none for constant).
    Cosine: ``learning_rate * (1 + cos(pi * epoch / epochs)) / 2`` at the start of each epoch
    (0-based), so the first epoch uses the full rate and the last a small fraction of it; the
    rate of each epoch lands in history.csv as ``learning_rate``."""
    if trainer.lr_schedule != "cosine":
        return []
    base, epochs = trainer.learning_rate, trainer.epochs

    def cosine(epoch: int, current: float) -> float:
        return base * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))

    return [keras.callbacks.LearningRateScheduler(cosine)]


EpochListener = Callable[[int, dict[str, float]], None]
_listeners: ContextVar[tuple[EpochListener, ...]] = ContextVar("epoch_listeners", default=())


@contextmanager
def epoch_listener(listener: EpochListener) -> Iterator[None]:
    """Within the block, every fit of every model (nested ones included) calls ``listener(epoch, logs)``
    after each epoch, with the 1-based epoch and every value Keras logged."""
    token = _listeners.set((*_listeners.get(), listener))
    try:
        yield
    finally:
        _listeners.reset(token)


class EpochAnnouncer(keras.callbacks.Callback):
    """Hands each epoch's logged values to the listeners of :func:`epoch_listener`."""

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        values = {key: float(value) for key, value in (logs or {}).items()}
        for listener in _listeners.get():
            listener(epoch + 1, values)


def callbacks(
    epochs: int,
    label: str = "epoch",
    early_stopping: EarlyStoppingConfig | None = None,
    has_validation: bool = False,
    extra: Sequence[keras.callbacks.Callback] = (),
) -> list[keras.callbacks.Callback]:
    """The callbacks of a fit: log line, announcement of the epoch, the model's ``extra`` ones and
    early stopping (``trainer.early_stopping``, for the models that use it; a ``val_`` monitor
    needs validation data)."""
    result: list[keras.callbacks.Callback] = [EpochLogger(epochs, label), EpochAnnouncer(), *extra]
    es = early_stopping
    if es is not None and es.enabled and (has_validation or not es.monitor.startswith("val_")):
        result.append(
            keras.callbacks.EarlyStopping(
                monitor=es.monitor,
                patience=es.patience,
                min_delta=es.min_delta,
                restore_best_weights=es.restore_best_weights,
            )
        )
    return result


def fit_model(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray | None,
    trainer: TrainerConfig,
    validation: tuple[np.ndarray, np.ndarray] | None,
    class_weight: dict[int, float] | None = None,
) -> pd.DataFrame:
    """Fit a compiled model and return its history as a table (one row per epoch).

    ``class_weight`` scales the training loss per class (supervised models with rare anomalies)."""
    has_val = validation is not None and len(validation[0]) > 0
    history = model.fit(
        x,
        y,
        epochs=trainer.epochs,
        batch_size=trainer.batch_size,
        validation_data=validation if has_val else None,
        shuffle=True,
        class_weight=class_weight,
        verbose=0,
        callbacks=callbacks(
            trainer.epochs,
            early_stopping=trainer.early_stopping,
            has_validation=has_val,
            extra=learning_rate_schedule(trainer),
        ),
    )
    table = pd.DataFrame(history.history)
    table.insert(0, "epoch", np.arange(1, len(table) + 1))
    return table


MODEL_FILE = "model.keras"


def load_keras_model(path: Path) -> keras.Model:
    """A saved Keras model in safe mode, with the project's custom layers registered first."""
    from anomaly_bench.models import load_model

    return load_model(path)


class KerasDetector(Detector):
    """A detector whose trained state is one Keras model: saved as model.keras, counted in metrics."""

    model: keras.Model | None = None

    def save(self, folder: Path) -> list[str]:
        assert self.model is not None, "save() needs a trained model"
        self.model.save(Path(folder) / MODEL_FILE)
        return [MODEL_FILE]

    def load(self, folder: Path) -> None:
        self.model = load_keras_model(Path(folder) / MODEL_FILE)

    def describe(self) -> dict:
        n_params = int(self.model.count_params()) if self.model is not None and self.model.built else None
        return {**super().describe(), "n_params": n_params}
