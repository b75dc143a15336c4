"""Gradient steps written once and run on every Keras backend (TensorFlow, JAX, PyTorch).

Keras 3 has no backend-neutral gradient call: TensorFlow records a tape, PyTorch runs
autograd on the variables' tensors, and JAX differentiates pure functions of the variables'
values, so its trainer hands ``train_step`` the model's state and expects the new state back
(keras.io: "Customizing fit() with JAX / PyTorch"). Models whose training is more than a
``compute_loss`` (AnoGAN's two optimizers, an encoder trained against frozen networks, the
latent search that optimises inputs) write their step once against :class:`Updates`;
``Updates`` applies it in place on TensorFlow and PyTorch, :class:`JaxUpdates` threads the
values through JAX's pure functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
from keras.src.backend.common.stateless_scope import StatelessScope

Variables = Sequence[keras.Variable]


class OptimizerGroup:
    """Several optimizers, each owning its own variables, shown to Keras' trainers as one.

    The JAX trainer keeps ``model.optimizer.variables`` in its state; a GAN has two
    optimizers, so both sets of variables must travel through that one attribute.
    """

    def __init__(self, pairs: Sequence[tuple[keras.optimizers.Optimizer, Variables]]) -> None:
        self.pairs = [(optimizer, list(variables)) for optimizer, variables in pairs]

    @property
    def built(self) -> bool:
        return all(optimizer.built for optimizer, _ in self.pairs)

    def build(self, _model_variables=None) -> None:
        """Each optimizer is built on its own variables, never on the model's full list."""
        for optimizer, variables in self.pairs:
            if not optimizer.built:
                optimizer.build(variables)

    @property
    def variables(self) -> list[keras.Variable]:
        return [v for optimizer, _ in self.pairs for v in optimizer.variables]

    def scale_loss(self, loss):
        return loss

    def finalize_variable_values(self, _model_variables=None) -> None:
        for optimizer, variables in self.pairs:
            optimizer.finalize_variable_values(variables)


class Updates:
    """Stateful updates (TensorFlow, PyTorch): variables change in place."""

    def run(self, fn: Callable[[], Any]) -> Any:
        """Run code that reads or assigns model state (random draws, metrics)."""
        return fn()

    def gradient_step(self, optimizer: keras.optimizers.Optimizer, variables: Variables, loss_fn: Callable[[], Any]):
        """One optimizer step on ``variables`` down the gradient of ``loss_fn()``; returns the loss."""
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                loss = loss_fn()
            grads = tape.gradient(loss, list(variables))
            optimizer.apply(grads, list(variables))
        elif backend == "torch":
            import torch

            loss = loss_fn()
            grads = torch.autograd.grad(loss, [v.value for v in variables])
            with torch.no_grad():
                optimizer.apply(list(grads), list(variables))
        else:
            raise RuntimeError(f"stateful gradient steps are not available on the {backend} backend")
        return loss


class JaxUpdates(Updates):
    """The same steps as pure functions of variable values (JAX): values in, new values out.

    Holds the current value of every variable the step may touch; code runs in a Keras
    ``StatelessScope`` mapped to these values, and whatever it assigns is kept for the next
    piece of the step.
    """

    def __init__(self, variables: Variables, values: Sequence[Any]) -> None:
        self.variables = list(variables)
        self._values = {id(v): value for v, value in zip(self.variables, values)}

    def values(self, variables: Variables | None = None) -> list:
        return [self._values[id(v)] for v in (self.variables if variables is None else variables)]

    def _scoped(self, fn: Callable[[], Any], override: dict[int, Any] | None = None) -> tuple[Any, list]:
        override = override or {}
        mapping = [(v, override.get(id(v), self._values[id(v)])) for v in self.variables]
        with StatelessScope(state_mapping=mapping) as scope:
            out = fn()
        return out, [scope.get_current_value(v) for v in self.variables]

    def _keep(self, assigned: list) -> None:
        for v, value in zip(self.variables, assigned):
            if value is not None:
                self._values[id(v)] = value

    def run(self, fn: Callable[[], Any]) -> Any:
        out, assigned = self._scoped(fn)
        self._keep(assigned)
        return out

    def gradient_step(self, optimizer: keras.optimizers.Optimizer, variables: Variables, loss_fn: Callable[[], Any]):
        import jax

        variables = list(variables)

        def loss_of(trainable_values):
            return self._scoped(loss_fn, {id(v): value for v, value in zip(variables, trainable_values)})

        (loss, assigned), grads = jax.value_and_grad(loss_of, has_aux=True)(self.values(variables))
        self._keep(assigned)
        new_trainable, new_optimizer = optimizer.stateless_apply(
            self.values(optimizer.variables), grads, self.values(variables)
        )
        for v, value in zip([*variables, *optimizer.variables], [*new_trainable, *new_optimizer]):
            self._values[id(v)] = value
        return loss


def custom_train_step(model: keras.Model, step: Callable[[Updates, Any], dict], *args):
    """Run ``step(updates, data) -> logs`` under the backend's ``train_step`` protocol.

    TensorFlow and PyTorch call ``train_step(data)``; JAX calls ``train_step(state, data)``
    with ``state`` = (trainable, non-trainable, optimizer, metrics) values and expects
    ``(logs, new_state)``.
    """
    if keras.backend.backend() != "jax":
        (data,) = args
        return step(Updates(), data)
    state, data = args
    groups = [
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    ]
    updates = JaxUpdates([v for group in groups for v in group], [value for part in state for value in part])
    logs = step(updates, data)
    return logs, tuple(updates.values(group) for group in groups)


def compiled(fn: Callable, variables: Variables) -> Callable:
    """``fn(*tensors)`` compiled for the backend (tf.function, jax.jit; PyTorch runs it eagerly
    without autograd). ``variables`` are the Keras variables ``fn`` reads: JAX receives their
    current values at each call, so later training is never hidden behind stale constants."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True)
    if backend == "jax":
        import jax

        variables = list(variables)
        pure = jax.jit(lambda values, *args: JaxUpdates(variables, values).run(lambda: fn(*args)))
        return lambda *args: pure([v.value for v in variables], *args)
    if backend == "torch":
        import torch

        def no_grad(*args):
            with torch.no_grad():
                return fn(*args)

        return no_grad
    raise RuntimeError(f"no compiled functions for the {backend} backend")
