"""How many CPU threads the Keras backend may use in this process.

Parallel launchers run several jobs on one machine (Hydra's joblib launcher: ``n_jobs``
reused worker processes); left alone, every job's backend sizes its thread pools for all
cores and the jobs oversubscribe the CPU. ``trainer.threads`` sets the count; null means
the backend's default, or cores // n_jobs under a launcher with ``n_jobs`` > 1. TensorFlow
and PyTorch fix their pools when they first run an op, so this runs before any model is
built; a reused worker keeps the count its first job set (a later different request is
logged). JAX (XLA) sizes its CPU pool itself and has no setting for it: there the count
is ignored, and said so in the log.
"""

from __future__ import annotations

import logging
import os

from omegaconf import OmegaConf

log = logging.getLogger("anomaly_bench")


def available_cores() -> int:
    """Cores this process may run on (honours CPU affinity, e.g. SLURM or taskset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parallel_jobs() -> int:
    """Jobs the current Hydra launcher runs side by side on this machine (1 if unknown)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return 1
    # HydraConfig.get() is annotated as the HydraConf dataclass but returns its DictConfig.
    n_jobs = OmegaConf.select(HydraConfig.get(), "launcher.n_jobs", default=None)  # type: ignore[arg-type]
    if not isinstance(n_jobs, int) or n_jobs == 0:
        return 1
    # joblib convention: -1 = all cores, -2 = all but one, ...
    return n_jobs if n_jobs > 0 else max(1, available_cores() + 1 + n_jobs)


def threads_for_job(requested: int | None) -> int | None:
    """The thread count a job should use: the requested one, else a fair share under a parallel launcher."""
    if requested is not None:
        return requested
    jobs = parallel_jobs()
    return max(1, available_cores() // jobs) if jobs > 1 else None


def limit_threads(threads: int | None) -> int | None:
    """Set the backend's intra- and inter-op pools; returns the count in force (None = default)."""
    if threads is None:
        return None
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _limit_tensorflow(threads)
    if backend == "torch":
        return _limit_torch(threads)
    log.info("threads: %s sizes its own thread pools; trainer.threads=%d is ignored", backend, threads)
    return None


def _limit_tensorflow(threads: int) -> int | None:
    import tensorflow as tf

    current = tf.config.threading.get_intra_op_parallelism_threads()
    if current == threads:
        return threads
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        log.warning(
            "TensorFlow already runs with %s threads in this process; %d requested, keeping them",
            current or "default",
            threads,
        )
        return current or None
    log.info("threads: TensorFlow limited to %d threads", threads)
    return threads


def _limit_torch(threads: int) -> int:
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # fixed once PyTorch has run parallel work; the intra-op count is what matters
        pass
    log.info("threads: PyTorch limited to %d threads", threads)
    return threads
