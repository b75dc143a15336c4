"""Anomaly detectors. Each model config's ``_target_`` names a :class:`Detector` subclass."""
from anomaly_bench.models.base import Detector, FitResult

__all__ = ["Detector", "FitResult"]
