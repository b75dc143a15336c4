"""scikit-learn estimators inside a detector: settings checks, and saving without pickle.

The classical detectors take their estimator from the config (``model.estimator._target_``,
e.g. ``sklearn.svm.OneClassSVM``), so bad settings must be caught before any training, and
the fitted result must be stored as plain arrays: run folders get shared, and unpickling a
shared file runs arbitrary code. A One-Class SVM is fully described by its support vectors,
dual coefficients, intercept and kernel settings, so it is written as ``.npz`` + ``.json``
and :class:`SavedOneClassSVM` recomputes its decision function from those files with numpy.
Estimators without such a plain-array form (tree ensembles) are not written; the run's
``metrics.json`` says so, and the run is reproducible from ``.hydra/config.yaml`` and the seed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.metrics.pairwise import pairwise_kernels
from sklearn.svm import OneClassSVM
from sklearn.utils._param_validation import InvalidParameterError

from anomaly_bench.errors import ConfigError


def check_estimator(estimator: object, key: str) -> None:
    """ConfigError (one line) unless ``estimator`` is an unsupervised scorer with valid settings."""
    if not (hasattr(estimator, "fit") and hasattr(estimator, "decision_function")):
        raise ConfigError(
            f"{key}={type(estimator).__name__} must be a scikit-learn outlier detector with fit and "
            "decision_function (e.g. sklearn.svm.OneClassSVM, sklearn.ensemble.IsolationForest)"
        )
    try:
        estimator._validate_params()
    except InvalidParameterError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def anomaly_scores(estimator, features: np.ndarray) -> np.ndarray:
    """scikit-learn's decision_function is high for inliers; the pipeline wants high = anomalous."""
    return -np.asarray(estimator.decision_function(features), dtype=np.float64)


def why_not_saved(estimator) -> str | None:
    """None if :func:`save_estimator` can write ``estimator`` as plain arrays, else the reason it cannot."""
    if isinstance(estimator, OneClassSVM):
        return None
    return (f"{type(estimator).__name__} has no plain-array form here and is never pickled; "
            "refit it from .hydra/config.yaml (same seed, same data -> same model)")


def save_estimator(estimator, folder: Path, stem: str) -> list[str]:
    """Write a fitted estimator as ``<stem>.npz`` + ``<stem>.json``; [] when :func:`why_not_saved` says no."""
    if why_not_saved(estimator) is not None:
        return []
    np.savez(
        folder / f"{stem}.npz",
        support_vectors=estimator.support_vectors_,
        dual_coef=estimator.dual_coef_,
        intercept=estimator.intercept_,
    )
    settings = {
        "estimator": "sklearn.svm.OneClassSVM", "kernel": estimator.kernel,
        "gamma": float(estimator._gamma), "degree": int(estimator.degree), "coef0": float(estimator.coef0),
        "nu": float(estimator.nu), "n_support": int(len(estimator.support_vectors_)),
        "decision_function": "sum_i dual_coef[i] * kernel(support_vectors[i], x) + intercept",
    }
    (folder / f"{stem}.json").write_text(json.dumps(settings, indent=2) + "\n")
    return [f"{stem}.npz", f"{stem}.json"]


@dataclass(frozen=True)
class SavedOneClassSVM:
    """A One-Class SVM read back from ``<stem>.npz`` + ``<stem>.json`` (no pickle involved)."""

    support_vectors: np.ndarray
    dual_coef: np.ndarray
    intercept: np.ndarray
    kernel: str
    gamma: float
    degree: int
    coef0: float

    @classmethod
    def load(cls, folder: Path, stem: str) -> "SavedOneClassSVM":
        settings = json.loads((Path(folder) / f"{stem}.json").read_text())
        with np.load(Path(folder) / f"{stem}.npz", allow_pickle=False) as arrays:
            return cls(arrays["support_vectors"], arrays["dual_coef"], arrays["intercept"], settings["kernel"],
                       settings["gamma"], settings["degree"], settings["coef0"])

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        kernel = pairwise_kernels(np.asarray(features, dtype=np.float64), self.support_vectors, metric=self.kernel,
                                  filter_params=True, gamma=self.gamma, degree=self.degree, coef0=self.coef0)
        return (kernel @ self.dual_coef.T + self.intercept).ravel()


def save_pca(pca: PCA, folder: Path, name: str = "pca.npz") -> str:
    """The projection as arrays: features = (x - mean) @ components.T."""
    np.savez(folder / name, components=pca.components_, mean=pca.mean_, explained_variance=pca.explained_variance_)
    return name
