"""Anomaly detectors. Each model config's ``_target_`` names a :class:`Detector` subclass."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from anomaly_bench.models.base import Detector, FitResult

__all__ = ["DETECTOR_TARGETS", "Detector", "FitResult", "load_model"]

#: Every class a model config may build, as the dotted names its ``_target_`` uses: the package's
#: detectors and the scikit-learn estimators a detector can save as plain arrays. A run folder's
#: ``detector.json`` is checked against these strings before anything is imported (a ``_target_``
#: naming a module would otherwise run that module's code on import); tests/test_trust.py keeps
#: the set equal to the Detector subclasses of this package.
DETECTOR_TARGETS = frozenset(
    {
        "anomaly_bench.models.anogan.AnoGANDetector",
        "anomaly_bench.models.autoencoder.ReconstructionDetector",
        "anomaly_bench.models.classical.PixelDetector",
        "anomaly_bench.models.classifier.CNNClassifierDetector",
        "anomaly_bench.models.deep_svdd.DeepSVDDDetector",
        "anomaly_bench.models.ensemble.ScoreEnsemble",
        "anomaly_bench.models.knn.KNNDetector",
        "anomaly_bench.models.latent_ocsvm.LatentOCSVMDetector",
        "anomaly_bench.models.pca.PCADetector",
        "anomaly_bench.models.transform_classifier.TransformClassifier",
        "anomaly_bench.models.vae.VAEDetector",
        "sklearn.ensemble.IsolationForest",
        "sklearn.svm.OneClassSVM",
    }
)


def load_model(path: str | Path):
    """Load a run's ``model.keras`` in safe mode.

    Custom layers and models register themselves with Keras when their module is imported,
    so every model module is imported first; nothing is unpickled.
    """
    import keras

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return keras.saving.load_model(path, safe_mode=True)
