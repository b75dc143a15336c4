"""AnoGAN's networks and their training: the DCGAN (generator + discriminator) and the f-AnoGAN encoder.

Images enter every model here in the pipeline's [0, 1] range and are moved to the
generator's tanh range [-1, 1] inside, so callers never have to remember the convention.
The anomaly loss that scores an image against a generated one lives here too, because
the encoder is trained on exactly the loss the latent search minimises.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from anomaly_bench.models.train_steps import OptimizerGroup, Updates, custom_train_step

FEATURE_LAYER = "features"


def to_tanh_range(images):
    return images * 2.0 - 1.0


def to_unit_range(images):
    return (images + 1.0) / 2.0


def build_generator(
    latent_dim: int, filters: list[int], kernel_size: int, slope: float, image_shape: tuple[int, ...]
) -> keras.Model:
    """z -> Dense(s*s*filters[0]) -> [up-sample -> Conv(f)]... -> up-sample -> Conv(channels), tanh.

    The projection has the image's sides divided by 2 per up-sampling: with the article's
    filters [128, 64] and MNIST's 28x28 images, Dense 7*7*128, up to 14x14 with 64 maps, up to
    28x28 with one map. Batch norm after the dense and hidden convs (DCGAN).
    """
    height, width = (s // 2 ** len(filters) for s in image_shape[:2])
    z = keras.Input(shape=(latent_dim,), name="z")
    x = layers.Dense(height * width * filters[0], name="project")(z)
    x = layers.BatchNormalization(name="project_bn")(x)
    x = layers.LeakyReLU(negative_slope=slope, name="project_act")(x)
    x = layers.Reshape((height, width, filters[0]), name="reshape")(x)
    for i, f in enumerate(filters[1:], start=1):
        x = layers.UpSampling2D(name=f"up{i}")(x)
        x = layers.Conv2D(f, kernel_size, padding="same", name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"conv{i}_bn")(x)
        x = layers.LeakyReLU(negative_slope=slope, name=f"conv{i}_act")(x)
    x = layers.UpSampling2D(name=f"up{len(filters)}")(x)
    image = layers.Conv2D(image_shape[-1], kernel_size, padding="same", activation="tanh", name="image")(x)
    return keras.Model(z, image, name="generator")


def _conv_stack(inputs, filters: list[int], kernel_size: int, slope: float, prefix: str, last_name: str):
    """[Conv(f), stride 2, LeakyReLU]... -> Flatten; the last activation is called ``last_name``."""
    x = inputs
    for i, f in enumerate(filters, start=1):
        x = layers.Conv2D(f, kernel_size, strides=2, padding="same", name=f"{prefix}conv{i}")(x)
        x = layers.LeakyReLU(negative_slope=slope, name=last_name if i == len(filters) else f"{prefix}act{i}")(x)
    return layers.Flatten(name=f"{prefix}flatten")(x)


def build_discriminator(
    filters: list[int], kernel_size: int, slope: float, image_shape: tuple[int, ...]
) -> keras.Model:
    """image in [-1, 1] -> [Conv(f), stride 2, LeakyReLU]... -> Dense(1) logit.

    The last conv block is named ``features``: its output is the f(.) of the feature loss.
    """
    image = keras.Input(shape=image_shape, name="image")
    logit = layers.Dense(1, name="logit")(_conv_stack(image, filters, kernel_size, slope, "", FEATURE_LAYER))
    return keras.Model(image, logit, name="discriminator")


def build_encoder(
    latent_dim: int, filters: list[int], kernel_size: int, slope: float, image_shape: tuple[int, ...]
) -> keras.Model:
    """image in [-1, 1] -> the discriminator's conv stack -> Dense(latent_dim): z for the generator."""
    image = keras.Input(shape=image_shape, name="image")
    z = layers.Dense(latent_dim, name="z")(_conv_stack(image, filters, kernel_size, slope, "enc_", "enc_features"))
    return keras.Model(image, z, name="encoder")


def feature_extractor(discriminator: keras.Model) -> keras.Model:
    """The discriminator up to its intermediate ``features`` layer (shares its weights)."""
    return keras.Model(discriminator.input, discriminator.get_layer(FEATURE_LAYER).output, name="features")


def anomaly_loss(x, fx, generated, f_generated, lambda_: float):
    """Per-image AnoGAN loss (1-lambda) * sum|x - G(z)| + lambda * sum|f(x) - f(G(z))|, all in [-1, 1]."""
    residual = ops.sum(ops.abs(ops.reshape(x - generated, (ops.shape(x)[0], -1))), axis=1)
    feature = ops.sum(ops.abs(ops.reshape(fx - f_generated, (ops.shape(fx)[0], -1))), axis=1)
    return (1.0 - lambda_) * residual + lambda_ * feature


@keras.saving.register_keras_serializable(package="anomaly_bench")
class AnoGAN(keras.Model):
    """A DCGAN trained by its own ``train_step`` on [0, 1] images; calling it maps z to images in [0, 1].

    Holds the optional f-AnoGAN encoder too, so one ``model.keras`` carries everything
    scoring needs.
    """

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        encoder: keras.Model | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.generator, self.discriminator, self.encoder = generator, discriminator, encoder
        self.latent_dim = int(generator.input_shape[-1])
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")

    @property
    def metrics(self) -> list:
        return [self.d_loss_tracker, self.g_loss_tracker]

    def compile(self, d_optimizer: keras.optimizers.Optimizer, g_optimizer: keras.optimizers.Optimizer) -> None:
        super().compile()
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
        self.optimizer = OptimizerGroup(
            [(d_optimizer, self.discriminator.trainable_variables), (g_optimizer, self.generator.trainable_variables)]
        )
        self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
        if not self.built:  # the JAX and PyTorch trainers need a built model before the first step
            self(ops.zeros((1, self.latent_dim)))

    def call(self, z, training: bool = False):
        return to_unit_range(self.generator(z, training=training))

    def _noise(self, batch):
        return keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)

    def _discriminator_loss(self, real):
        batch = ops.shape(real)[0]
        fake = ops.stop_gradient(self.generator(self._noise(batch), training=True))
        logits = self.discriminator(ops.concatenate([real, fake], axis=0), training=True)
        labels = ops.concatenate([ops.ones((batch, 1)), ops.zeros((batch, 1))], axis=0)
        return self.loss_fn(labels, logits)

    def _generator_loss(self, batch):
        logits = self.discriminator(self.generator(self._noise(batch), training=True), training=True)
        return self.loss_fn(ops.ones((batch, 1)), logits)  # non-saturating generator loss

    def _gan_step(self, updates: Updates, images) -> dict:
        """One discriminator step on real + fake images, then one generator step on fresh noise."""
        real = to_tanh_range(ops.convert_to_tensor(images))
        d_loss = updates.gradient_step(
            self.d_optimizer, self.discriminator.trainable_variables, lambda: self._discriminator_loss(real)
        )
        g_loss = updates.gradient_step(
            self.g_optimizer, self.generator.trainable_variables, lambda: self._generator_loss(ops.shape(real)[0])
        )

        def track():
            self.d_loss_tracker.update_state(d_loss)
            self.g_loss_tracker.update_state(g_loss)
            return {m.name: m.result() for m in self.metrics}

        return updates.run(track)

    def train_step(self, *args):
        return custom_train_step(self, self._gan_step, *args)

    def get_compile_config(self) -> None:
        """Saved files hold the networks only; GAN optimizers are rebuilt by whoever trains again."""
        return None

    def get_config(self) -> dict:
        ser = keras.saving.serialize_keras_object
        return {
            **super().get_config(),
            "generator": ser(self.generator),
            "discriminator": ser(self.discriminator),
            "encoder": ser(self.encoder) if self.encoder is not None else None,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict) -> AnoGAN:
        config = dict(config)
        for key in ("generator", "discriminator", "encoder"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


class EncoderTraining(keras.Model):
    """Trains only the encoder E so that G(E(x)) matches x under the AnoGAN loss (f-AnoGAN's izi_f).

    Generator and discriminator stay frozen: the encoder learns the inverse of the GAN that
    scoring relies on, not a new model of the images.
    """

    def __init__(
        self, encoder: keras.Model, generator: keras.Model, features: keras.Model, lambda_: float, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.encoder, self.generator, self.features = encoder, generator, features
        self.lambda_ = float(lambda_)
        self.loss_tracker = keras.metrics.Mean(name="encoder_loss")

    @property
    def metrics(self) -> list:
        return [self.loss_tracker]

    def compile(self, optimizer: keras.optimizers.Optimizer) -> None:
        super().compile()
        self.optimizer = OptimizerGroup([(optimizer, self.encoder.trainable_variables)])
        self.encoder_optimizer = optimizer
        if not self.built:  # the JAX and PyTorch trainers need a built model before the first step
            self(ops.zeros((1, *self.encoder.input_shape[1:])))

    def call(self, images, training: bool = False):
        """G(E(x)) in [0, 1]: the generated image nearest to each input."""
        return to_unit_range(self.generator(self.encoder(to_tanh_range(images), training=training), training=False))

    def _encoder_step(self, updates: Updates, images) -> dict:
        x = to_tanh_range(ops.convert_to_tensor(images))
        fx = updates.run(lambda: ops.stop_gradient(self.features(x, training=False)))

        def loss_fn():
            generated = self.generator(self.encoder(x, training=True), training=False)
            return ops.mean(anomaly_loss(x, fx, generated, self.features(generated, training=False), self.lambda_))

        loss = updates.gradient_step(self.encoder_optimizer, self.encoder.trainable_variables, loss_fn)

        def track():
            self.loss_tracker.update_state(loss)
            return {"encoder_loss": self.loss_tracker.result()}

        return updates.run(track)

    def train_step(self, *args):
        return custom_train_step(self, self._encoder_step, *args)
