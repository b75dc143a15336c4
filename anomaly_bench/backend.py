"""Which Keras backend runs the models, and on which device.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so the choice must be made
before any model module loads: ``anomaly-bench --backend jax ...`` (or ``KERAS_BACKEND=jax``)
sets it at the very start of the command. TensorFlow stays the default. Nothing here
imports TensorFlow unless TensorFlow is the backend: JAX- or PyTorch-only machines (typical
GPU boxes) have no TensorFlow at all.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from anomaly_bench.errors import ConfigError

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT = "tensorflow"
ENV = "KERAS_BACKEND"
SWITCH = "--backend"
INSTALL_HINT = {
    "tensorflow": "pip install tensorflow (GPU: pip install 'tensorflow[and-cuda]')",
    "jax": "pip install 'jax[cpu]' (GPU: pip install 'jax[cuda12]' or 'jax[cuda13]')",
    "torch": "pip install torch (CPU-only build: pip install torch --index-url https://download.pytorch.org/whl/cpu)",
}


def requested() -> str:
    """The backend Keras will use: ``$KERAS_BACKEND``, else TensorFlow."""
    return os.environ.get(ENV) or DEFAULT


def choose(name: str | None = None) -> str:
    """Check (and with ``name``, set) the backend before Keras is imported; returns it.

    Raises ConfigError for an unknown name, an uninstalled backend, or Keras already
    running another backend in this process.
    """
    name = requested() if name is None else name
    if name not in BACKENDS:
        source = f"{SWITCH} {name}" if name != os.environ.get(ENV) else f"{ENV}={name}"
        raise ConfigError(f"{source} is not a Keras backend; allowed: {', '.join(BACKENDS)}")
    if importlib.util.find_spec(name) is None:
        raise ConfigError(f"Keras backend {name} is not installed; {INSTALL_HINT[name]}")
    if "keras" in sys.modules:
        running = sys.modules["keras"].backend.backend()
        if running != name:
            raise ConfigError(
                f"Keras already runs on {running} in this process; set {ENV}={name} before Keras is first imported"
            )
    os.environ[ENV] = name
    return name


def pop_switch(argv: list[str]) -> tuple[list[str], str | None]:
    """Remove ``--backend NAME`` / ``--backend=NAME`` from a command line; returns (rest, NAME)."""
    rest, name, args = [], None, iter(argv)
    for arg in args:
        if arg == SWITCH:
            name = next(args, None)
        elif arg.startswith(SWITCH + "="):
            name = arg.split("=", 1)[1]
        else:
            rest.append(arg)
            continue
        if not name:
            raise ConfigError(f"{SWITCH} needs a name; allowed: {', '.join(BACKENDS)}")
    return rest, name


def name() -> str:
    import keras

    return keras.backend.backend()


def device() -> str:
    """Where the backend puts new tensors: ``CPU`` or ``GPU: <name>`` (what metrics.json records)."""
    backend = name()
    if backend == "jax":
        import jax

        first = jax.devices()[0]
        return "CPU" if first.platform == "cpu" else f"{first.platform.upper()}: {first.device_kind}"
    if backend == "torch":
        import torch

        return f"GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return "CPU"
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)}"
    return "unknown"


def make_deterministic() -> None:
    """Ask the backend for deterministic kernels (``trainer.deterministic=true``).

    TensorFlow: op determinism. PyTorch: deterministic algorithms (with the cuBLAS workspace
    setting GPUs need). JAX on CPU is deterministic already; on GPUs XLA reads
    ``--xla_gpu_deterministic_ops=true`` from ``XLA_FLAGS`` when JAX starts, so the flag is
    added here, which works while this process has not run a JAX computation yet.
    """
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif backend == "jax":
        flag = "--xla_gpu_deterministic_ops=true"
        if flag not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
