"""AnoGAN's networks and their training: the DCGAN (generator + discriminator) and the f-AnoGAN encoder.

Images enter every model here in the pipeline's [0, 1] range and are moved to the
generator's tanh range [-1, 1] inside, so callers never have to remember the convention.
The anomaly loss that scores an image against a generated one lives here too, because
the encoder is trained on exactly the loss the latent search minimises.
"""
from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import layers, ops

FEATURE_LAYER = "features"


def to_tanh_range(images):
    return images * 2.0 - 1.0


def to_unit_range(images):
    return (images + 1.0) / 2.0


def build_generator(latent_dim: int, filters: list[int], kernel_size: int, slope: float,
                    image_shape: tuple[int, ...]) -> keras.Model:
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


def build_discriminator(filters: list[int], kernel_size: int, slope: float, image_shape: tuple[int, ...]) -> keras.Model:
    """image in [-1, 1] -> [Conv(f), stride 2, LeakyReLU]... -> Dense(1) logit.

    The last conv block is named ``features``: its output is the f(.) of the feature loss.
    """
    image = keras.Input(shape=image_shape, name="image")
    logit = layers.Dense(1, name="logit")(_conv_stack(image, filters, kernel_size, slope, "", FEATURE_LAYER))
    return keras.Model(image, logit, name="discriminator")


def build_encoder(latent_dim: int, filters: list[int], kernel_size: int, slope: float,
                  image_shape: tuple[int, ...]) -> keras.Model:
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

    def __init__(self, generator: keras.Model, discriminator: keras.Model, encoder: keras.Model | None = None,
                 seed: int | None = None, **kwargs: Any) -> None:
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
        self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    def call(self, z, training: bool = False):
        return to_unit_range(self.generator(z, training=training))

    def train_step(self, images):
        real = to_tanh_range(ops.convert_to_tensor(images))
        batch = ops.shape(real)[0]
        z = keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)
        fake = self.generator(z, training=True)
        with tf.GradientTape() as tape:
            logits = self.discriminator(ops.concatenate([real, fake], axis=0), training=True)
            labels = ops.concatenate([ops.ones((batch, 1)), ops.zeros((batch, 1))], axis=0)
            d_loss = self.loss_fn(labels, logits)
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))

        z = keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            logits = self.discriminator(self.generator(z, training=True), training=True)
            g_loss = self.loss_fn(ops.ones((batch, 1)), logits)  # non-saturating generator loss
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))

        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {m.name: m.result() for m in self.metrics}

    def get_compile_config(self) -> None:
        """Saved files hold the networks only; GAN optimizers are rebuilt by whoever trains again."""
        return None

    def get_config(self) -> dict:
        ser = keras.saving.serialize_keras_object
        return {
            **super().get_config(), "generator": ser(self.generator), "discriminator": ser(self.discriminator),
            "encoder": ser(self.encoder) if self.encoder is not None else None, "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict) -> "AnoGAN":
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

    def __init__(self, encoder: keras.Model, generator: keras.Model, features: keras.Model, lambda_: float,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.encoder, self.generator, self.features = encoder, generator, features
        self.lambda_ = float(lambda_)
        self.loss_tracker = keras.metrics.Mean(name="encoder_loss")

    @property
    def metrics(self) -> list:
        return [self.loss_tracker]

    def train_step(self, images):
        x = to_tanh_range(ops.convert_to_tensor(images))
        fx = self.features(x, training=False)
        with tf.GradientTape() as tape:
            generated = self.generator(self.encoder(x, training=True), training=False)
            loss = ops.mean(anomaly_loss(x, fx, generated, self.features(generated, training=False), self.lambda_))
        grads = tape.gradient(loss, self.encoder.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.encoder.trainable_weights))
        self.loss_tracker.update_state(loss)
        return {"encoder_loss": self.loss_tracker.result()}
