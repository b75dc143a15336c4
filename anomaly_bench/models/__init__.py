"""Anomaly detectors. Each model config's ``_target_`` names a :class:`Detector` subclass."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from anomaly_bench.models.base import Detector, FitResult

__all__ = ["Detector", "FitResult", "load_model"]


def load_model(path: str | Path):
    """Load a run's ``model.keras`` in safe mode.

    Custom layers and models register themselves with Keras when their module is imported,
    so every model module is imported first; nothing is unpickled.
    """
    import keras

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return keras.saving.load_model(path, safe_mode=True)
