"""Self-supervised geometric-transformation prediction (Golan & El-Yaniv 2018, "GeoTrans").

A CNN trained on the normal images to tell which of T geometric transformations was
applied learns what normal images look like: on an anomaly it cannot recognise the
transformations. ``score: cross_entropy`` is -1/T * sum_t log p(t | t(x)); ``score: dirichlet``
is the paper's normality score: a Dirichlet fitted per transformation to the softmax outputs
on the normal training images, score = -1/T * sum_t sum_k (alpha_tk - 1) log p_k(t(x)), which
also credits the confusions normal images always show (a "1" turned by 180 degrees looks
like an unturned "1"). The transformations are
compositions of a horizontal flip, a translation by ``shift`` pixels and a rotation by a
multiple of 90 degrees, in the paper's order of application (flip, translate, rotate);
``n_transforms`` takes the first T of the 72 combinations, listed untranslated first so
T=8 is flips x rotations and T=72 is the paper's full set. The network is plain Keras
layers from the config (no custom objects; ``ResidualBlock`` entries make a small ResNet, as the
paper's Wide ResNet), so model.keras loads in safe mode.

For natural images (Hendrycks et al. 2019, "Using Self-Supervised Learning Can Improve Model
Robustness and Uncertainty") the rotations alone are the task and the training images get the
usual augmentation first: ``augment_flip`` mirrors half of them, ``augment_shift`` moves each by a
random offset of up to that many pixels (zero-filled, as a padded random crop). ``tta`` scores an
image as the mean score of several views of it: itself and its mirror image (``flip``), also
shifted by ``augment_shift`` pixels up, down, left and right (``flip_shift``, 10 views). A mirror
image is only another view of the same image when the flip is not one of the transformations to
tell apart, so both flip options need ``n_transforms`` <= 4 (the rotations alone).
"""

from __future__ import annotations

import math
from itertools import product
from pathlib import Path

import keras
import numpy as np
from keras import layers
from scipy.special import digamma, polygamma

from anomaly_bench.config import TrainerConfig
from anomaly_bench.errors import ConfigError
from anomaly_bench.models.autoencoder import PREDICT_BATCH
from anomaly_bench.models.base import FitResult, TrainingData
from anomaly_bench.models.checks import integer, is_whole, one_of
from anomaly_bench.models.keras_training import KerasDetector, fit_model, make_optimizer, stack_layers

# Translation directions in units of ``shift`` (dy, dx): none first, then the 8 neighbours.
SHIFTS = [(0, 0), (0, -1), (0, 1), (-1, 0), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1)]
# (flip, (dy, dx), quarter turns), untranslated combinations first.
TRANSFORMS = [(flip, shift, turns) for shift, flip, turns in product(SHIFTS, (False, True), range(4))]
MIN_TRANSFORMS, MAX_TRANSFORMS = 2, len(TRANSFORMS)
SCORES = ("cross_entropy", "dirichlet")
TTA = ("none", "flip", "flip_shift")
UNFLIPPED = 4  # the first 4 transformations are the rotations alone
DIRICHLET_FILE = "dirichlet.npz"
_EPS = 1e-12


def inverse_digamma(y: np.ndarray, steps: int = 5) -> np.ndarray:
    """x with digamma(x) = y, by Newton's method from Minka's starting point."""
    x = np.where(y >= -2.22, np.exp(y) + 0.5, -1.0 / np.minimum(y - digamma(1.0), -_EPS))
    for _ in range(steps):
        x = x - (digamma(x) - y) / polygamma(1, x)
    return x


def dirichlet_mle(log_p: np.ndarray, iterations: int = 1000, tol: float = 1e-9) -> np.ndarray:
    """Maximum-likelihood Dirichlet concentration for rows of log-probabilities (Minka's fixed point)."""
    mean_log = log_p.mean(axis=0)
    p = np.exp(log_p)
    m1, m2 = p.mean(axis=0), (p**2).mean(axis=0)
    alpha = m1 * max((m1[0] - m2[0]) / max(m2[0] - m1[0] ** 2, _EPS), _EPS)  # method-of-moments start
    for _ in range(iterations):
        updated = inverse_digamma(digamma(alpha.sum()) + mean_log)
        if np.max(np.abs(updated - alpha)) < tol:
            return updated
        alpha = updated
    return alpha


def translate(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift [n, h, w, c] images by (dy, dx) pixels, filling the uncovered border with zeros."""
    out = np.zeros_like(images)
    h, w = images.shape[1:3]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def apply_transform(images: np.ndarray, index: int, shift: int) -> np.ndarray:
    """Transformation ``index`` of TRANSFORMS applied to a batch of [n, h, w, c] images."""
    flip, (dy, dx), turns = TRANSFORMS[index]
    x = images[:, :, ::-1] if flip else images
    if dy or dx:
        x = translate(x, dy * shift, dx * shift)
    return np.ascontiguousarray(np.rot90(x, turns, axes=(1, 2)))


def random_augment(images: np.ndarray, rng: np.random.Generator, flip: bool, max_shift: int) -> np.ndarray:
    """Each image mirrored with probability 1/2 (``flip``) and moved by a random offset of up to
    ``max_shift`` pixels per axis, zero-filled (a padded random crop)."""
    out = images.copy()
    if flip:
        mirrored = rng.random(len(out)) < 0.5
        out[mirrored] = out[mirrored, :, ::-1]
    if max_shift:
        offsets = rng.integers(-max_shift, max_shift + 1, size=(len(out), 2))
        for dy, dx in np.unique(offsets, axis=0):
            chosen = (offsets[:, 0] == dy) & (offsets[:, 1] == dx)
            out[chosen] = translate(out[chosen], int(dy), int(dx))
    return out


def scoring_views(images: np.ndarray, tta: str, shift: int) -> list[np.ndarray]:
    """The views of ``images`` scored and averaged: the images; for ``flip`` also their mirror
    images; for ``flip_shift`` both of these also moved by ``shift`` pixels in four directions."""
    if tta == "none":
        return [images]
    views = [images, np.ascontiguousarray(images[:, :, ::-1])]
    if tta == "flip_shift":
        views += [
            translate(v, dy, dx) for v in views[:2] for dy, dx in ((shift, 0), (-shift, 0), (0, shift), (0, -shift))
        ]
    return views


def apply_transforms(images: np.ndarray, indices: np.ndarray, shift: int) -> np.ndarray:
    """Image i under transformation indices[i]; vectorised per transformation, not per image."""
    out = np.empty_like(images)
    for t in np.unique(indices):
        chosen = indices == t
        out[chosen] = apply_transform(images[chosen], int(t), shift)
    return out


class RandomTransformBatches(keras.utils.PyDataset):
    """One epoch = every training image ``views`` times, each under a different transformation.

    The transformations of an image are drawn afresh each epoch, without repeats, so with
    ``views = T`` an epoch is the paper's (every image under every transformation) and with
    ``views = 1`` it costs n images whatever T is; over the epochs each image is seen under
    many transformations either way. Each batch is augmented afresh (:func:`random_augment`)
    before the transformations are applied.
    """

    def __init__(
        self,
        images: np.ndarray,
        n_transforms: int,
        shift: int,
        batch_size: int,
        seed: int,
        views: int = 1,
        augment_flip: bool = False,
        augment_shift: int = 0,
    ) -> None:
        super().__init__()
        self.images, self.n_transforms, self.shift, self.batch_size = images, n_transforms, shift, batch_size
        self.views, self.augment_flip, self.augment_shift = views, augment_flip, augment_shift
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def on_epoch_end(self) -> None:
        n = len(self.images)
        # k distinct transformations per image: the first k columns of a random permutation per row.
        drawn = np.argsort(self.rng.random((n, self.n_transforms)), axis=1)[:, : self.views]
        self.rows = np.repeat(np.arange(n), self.views)
        self.targets = drawn.reshape(-1)
        self.order = self.rng.permutation(len(self.rows))

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __getitem__(self, batch: int):
        pairs = self.order[batch * self.batch_size : (batch + 1) * self.batch_size]
        targets = self.targets[pairs]
        images = self.images[self.rows[pairs]]
        if self.augment_flip or self.augment_shift:
            images = random_augment(images, self.rng, self.augment_flip, self.augment_shift)
        return apply_transforms(images, targets, self.shift), targets


class TransformClassifier(KerasDetector):
    """Anomaly score = mean negative log-probability the CNN gives each true transformation."""

    def __init__(
        self,
        name: str,
        n_transforms: int,
        shift: int,
        network: list[dict],
        score: str = "cross_entropy",
        views_per_image: int = 1,
        augment_flip: bool = False,
        augment_shift: int = 0,
        tta: str = "none",
    ) -> None:
        super().__init__(name)
        self.n_transforms, self.shift, self.network_spec = n_transforms, shift, list(network)
        self.views_per_image = views_per_image
        self.augment_flip, self.augment_shift, self.tta = augment_flip, augment_shift, tta
        self.score_kind = score
        self.model: keras.Model | None = None
        self.alphas: np.ndarray | None = None  # [T, T] Dirichlet concentrations (score=dirichlet)

    def check_settings(self) -> None:
        t = self.n_transforms
        if not (is_whole(t) and MIN_TRANSFORMS <= t <= MAX_TRANSFORMS):
            raise ConfigError(
                f"model.n_transforms={t!r} is not allowed; choose {MIN_TRANSFORMS}-{MAX_TRANSFORMS} "
                "(8 = flips x rotations, 72 = with the 9 translations of the paper)"
            )
        integer("shift", self.shift, must="a whole number of pixels >= 1")
        integer(
            "views_per_image",
            self.views_per_image,
            1,
            t,
            must=f"a count 1-{t} (model.n_transforms): the distinct transformations of each image per epoch",
        )
        one_of("score", self.score_kind, SCORES)
        one_of("tta", self.tta, TTA)
        if not isinstance(self.augment_flip, bool):
            raise ConfigError(f"model.augment_flip={self.augment_flip!r} must be true or false")
        integer("augment_shift", self.augment_shift, 0, must="a whole number of pixels >= 0 (0 = no random shifts)")
        if (self.augment_flip or self.tta != "none") and t > UNFLIPPED:
            raise ConfigError(
                f"model.augment_flip={self.augment_flip} / model.tta={self.tta} mirror images, but "
                f"model.n_transforms={t} includes the mirror image among the transformations to tell apart; "
                f"use n_transforms <= {UNFLIPPED} (rotations only), or augment_flip=false and tta=none"
            )
        if self.tta == "flip_shift" and not self.augment_shift:
            raise ConfigError("model.tta=flip_shift shifts by model.augment_shift pixels, which is 0; set it >= 1")
        if not self.network_spec:
            raise ConfigError("model.network must list at least one layer (the softmax over transformations is added)")

    def check_shape(self, image_shape: tuple[int, ...]) -> None:
        if image_shape[0] != image_shape[1]:
            raise ConfigError(
                f"model={self.name} rotates images by 90 degrees, which needs square images; these are "
                f"{image_shape[0]}x{image_shape[1]}: set dataset.image_size=[S, S]"
            )
        max_shift = min(image_shape[:2]) // 2
        if self.shift >= max_shift:
            raise ConfigError(f"model.shift={self.shift!r} must be a whole number of pixels 1-{max_shift - 1}")
        if self.augment_shift >= max_shift:
            raise ConfigError(f"model.augment_shift={self.augment_shift!r} must be 0-{max_shift - 1} pixels")
        self.build(image_shape)

    def build(self, image_shape: tuple[int, ...]) -> None:
        inputs = keras.Input(shape=image_shape, name="transformed_image")
        x = stack_layers(inputs, self.network_spec, "model.network")
        if len(x.shape) != 2:
            x = layers.Flatten(name="flatten")(x)
        outputs = layers.Dense(self.n_transforms, activation="softmax", name="transformation")(x)
        self.model = keras.Model(inputs, outputs, name=self.name)

    def fit(self, splits: TrainingData, trainer: TrainerConfig) -> FitResult:
        if self.model is None:
            self.build(splits.train.x.shape[1:])
        assert self.model is not None  # build() sets it
        self.model.compile(
            optimizer=make_optimizer(trainer), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        batches = RandomTransformBatches(
            splits.train.x,
            self.n_transforms,
            self.shift,
            trainer.batch_size,
            trainer.seed,
            self.views_per_image,
            self.augment_flip,
            self.augment_shift,
        )
        validation = None
        if len(splits.val):
            # Fixed pairs (image i under transformation i mod T) so val_loss is comparable across epochs.
            targets = np.arange(len(splits.val)) % self.n_transforms
            validation = (apply_transforms(splits.val.x, targets, self.shift), targets)
        history = fit_model(self.model, batches, None, trainer, validation)
        if self.score_kind == "dirichlet":
            self.alphas = np.stack([dirichlet_mle(log_p) for _, log_p in self.log_softmax(splits.train.x)])
        return FitResult(history=history)

    def log_softmax(self, images: np.ndarray):
        """Per transformation t: (t, [n, T] log-probabilities the network gives t(x)), one t at a time."""
        assert self.model is not None, "scoring needs a trained or loaded classifier"
        for t in range(self.n_transforms):
            probs = self.model.predict(apply_transform(images, t, self.shift), batch_size=PREDICT_BATCH, verbose=0)
            yield t, np.log(probs.astype(np.float64) + _EPS)

    def score(self, images: np.ndarray) -> np.ndarray:
        total = np.zeros(len(images))
        views = scoring_views(images, self.tta, self.augment_shift)
        for view in views:
            for t, log_p in self.log_softmax(view):
                if self.score_kind == "cross_entropy":
                    total -= log_p[:, t]
                else:
                    assert self.alphas is not None, "score=dirichlet needs the concentrations fit() or load() sets"
                    total -= log_p @ (self.alphas[t] - 1.0)
        return total / (self.n_transforms * len(views))

    def save(self, folder: Path) -> list[str]:
        written = super().save(folder)
        if self.alphas is None:
            return written
        np.savez(Path(folder) / DIRICHLET_FILE, alphas=self.alphas)
        return [*written, DIRICHLET_FILE]

    def load(self, folder: Path) -> None:
        super().load(folder)
        if self.score_kind == "dirichlet":
            with np.load(Path(folder) / DIRICHLET_FILE, allow_pickle=False) as saved:
                self.alphas = saved["alphas"]

    def describe(self) -> dict:
        return {
            **super().describe(),
            "n_transforms": self.n_transforms,
            "shift": self.shift,
            "score": self.score_kind,
            "views_per_image": self.views_per_image,
            "augment_flip": self.augment_flip,
            "augment_shift": self.augment_shift,
            "tta": self.tta,
        }
