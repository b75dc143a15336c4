"""AnoGAN's latent search, vectorised: one z row per image, every row optimised in the same step.

The total loss is the sum of per-image losses, so row i's gradient depends on image i only,
and Adam updates each element on its own: searching a batch together is the same
optimisation as searching each image alone, only with one large generator call per step
instead of many small ones. On TensorFlow the whole loop of steps runs inside one compiled
graph (tf.function; XLA is not used: on CPU it made these convolutions about ten times
slower), on JAX inside one jitted ``fori_loop``, so Python is entered once per batch, not
once per step; PyTorch runs the steps eagerly.
"""

from __future__ import annotations

import logging
import math

import keras
import numpy as np
from keras import ops

from anomaly_bench.models.anogan_networks import anomaly_loss, to_tanh_range, to_unit_range
from anomaly_bench.models.train_steps import JaxUpdates, Updates

log = logging.getLogger("anomaly_bench")


class LatentSearch:
    """Search z for exactly ``batch_size`` images at a time (a variable of shape [batch_size, latent])."""

    def __init__(
        self,
        generator: keras.Model,
        features: keras.Model,
        lambda_: float,
        steps: int,
        learning_rate: float,
        batch_size: int,
    ) -> None:
        self.generator, self.features = generator, features
        self.lambda_, self.steps, self.batch_size = float(lambda_), int(steps), int(batch_size)
        latent_dim = int(generator.input_shape[-1])
        self.z = keras.Variable(np.zeros((self.batch_size, latent_dim), "float32"), name="z")
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build([self.z])
        # Adam's moments have z's shape; they are zeroed (with the step count) before each batch.
        self._moments = [v for v in self.optimizer.variables if tuple(v.shape) == tuple(self.z.shape)]
        unique = {id(v): v for v in [*generator.variables, *features.variables, self.z, *self.optimizer.variables]}
        self._variables = list(unique.values())
        self._optimise = self._compile()

    def _loss(self, x, fx):
        generated = self.generator(self.z, training=False)
        return anomaly_loss(x, fx, generated, self.features(generated, training=False), self.lambda_), generated

    def _step(self, updates: Updates, x, fx) -> None:
        updates.gradient_step(self.optimizer, [self.z], lambda: ops.sum(self._loss(x, fx)[0]))

    def _compile(self):
        """The search of one batch, ``images in [-1, 1] -> (loss, G(z*))``, compiled for the backend."""
        backend = keras.backend.backend()
        if backend == "jax":
            import jax

            def jax_search(values, x):
                start = JaxUpdates(self._variables, values)
                fx = start.run(lambda: self.features(x, training=False))

                def one_step(_, carry):
                    updates = JaxUpdates(self._variables, carry)
                    self._step(updates, x, fx)
                    return updates.values()

                final = jax.lax.fori_loop(0, self.steps, one_step, start.values())
                return JaxUpdates(self._variables, final).run(lambda: self._loss(x, fx))

            pure = jax.jit(jax_search)
            return lambda x: pure([v.value for v in self._variables], x)

        if backend == "tensorflow":
            import tensorflow as tf

            steps = tf.range  # a graph loop: one trace, not one per step
        else:
            steps = range

        def search(x):
            fx = self.features(x, training=False)
            for _ in steps(self.steps):
                self._step(Updates(), x, fx)
            return self._loss(x, fx)

        return tf.function(search) if backend == "tensorflow" else search

    def __call__(self, images: np.ndarray, z0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Final loss per image and G(z*) in [0, 1], starting the search from ``z0``."""
        self.z.assign(z0)
        self.optimizer.iterations.assign(0)
        for moment in self._moments:
            moment.assign(ops.zeros(moment.shape, moment.dtype))
        loss, generated = self._optimise(to_tanh_range(ops.convert_to_tensor(images, "float32")))
        return ops.convert_to_numpy(loss), ops.convert_to_numpy(to_unit_range(generated))


class BatchedLatentSearch:
    """Search any number of images in near-equal chunks of at most ``batch_size``.

    One compiled search exists per chunk size; the last chunk is padded (with zero images,
    whose results are dropped) so a call compiles at most one search.
    """

    def __init__(
        self,
        generator: keras.Model,
        features: keras.Model,
        lambda_: float,
        steps: int,
        learning_rate: float,
        batch_size: int,
        seed: int,
    ) -> None:
        self.generator, self.features = generator, features
        self.lambda_, self.steps, self.learning_rate = lambda_, steps, learning_rate
        self.batch_size, self.seed = batch_size, seed
        self.latent_dim = int(generator.input_shape[-1])
        self._searches: dict[int, LatentSearch] = {}

    def initial_z(self, n: int) -> np.ndarray:
        """Starting points drawn from the generator's prior, the same for the same n and seed."""
        return np.random.default_rng(self.seed).standard_normal((n, self.latent_dim)).astype("float32")

    def _search(self, size: int) -> LatentSearch:
        if size not in self._searches:
            self._searches[size] = LatentSearch(
                self.generator, self.features, self.lambda_, self.steps, self.learning_rate, size
            )
        return self._searches[size]

    def __call__(self, images: np.ndarray, z0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Final AnoGAN loss per image (the anomaly score) and the nearest generated images."""
        n = len(images)
        z0 = self.initial_z(n) if z0 is None else np.asarray(z0, "float32")
        size = math.ceil(n / math.ceil(n / self.batch_size))
        search = self._search(size)
        losses, generated = np.empty(n, "float32"), np.empty(images.shape, "float32")
        for start in range(0, n, size):
            stop = min(start + size, n)
            x, z = images[start:stop], z0[start:stop]
            if stop - start < size:
                x = np.concatenate([x, np.zeros((size - len(x), *images.shape[1:]), images.dtype)])
                z = np.concatenate([z, np.zeros((size - len(z), self.latent_dim), "float32")])
            loss, gen = search(x, z)
            losses[start:stop], generated[start:stop] = loss[: stop - start], gen[: stop - start]
            log.info("latent search: %d/%d images, %d steps", stop, n, self.steps)
        return losses, generated
