"""scikit-learn estimators inside a detector: settings checks, and saving without pickle.

The classical detectors take their estimator from the config (``model.estimator._target_``,
e.g. ``sklearn.svm.OneClassSVM``), so bad settings must be caught before any training, and
the fitted result must be stored as plain arrays: run folders get shared, and unpickling a
shared file runs arbitrary code. A One-Class SVM is fully described by its support vectors,
dual coefficients, intercept and kernel settings, so it is written as ``.npz`` + ``.json``
and :class:`SavedOneClassSVM` recomputes its decision function from those files with numpy.
An Isolation Forest is its trees' node arrays (children, split feature, split threshold) plus,
per leaf, the path length scikit-learn adds up; :class:`SavedIsolationForest` walks them with
numpy. Other estimators have no plain-array form here: they are not written, the run's
``metrics.json`` says so, and such a run cannot be reloaded as a detector.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics.pairwise import pairwise_kernels
from sklearn.svm import OneClassSVM
from sklearn.utils._param_validation import InvalidParameterError

from anomaly_bench.errors import ConfigError


def check_estimator(estimator: Any, key: str) -> None:
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
    if isinstance(estimator, (OneClassSVM, IsolationForest, SavedOneClassSVM, SavedIsolationForest)):
        return None
    return (
        f"{type(estimator).__name__} has no plain-array form here and is never pickled; "
        "refit it from .hydra/config.yaml (same seed, same data -> same model)"
    )


def save_estimator(estimator, folder: Path, stem: str) -> list[str]:
    """Write a fitted estimator as ``<stem>.npz`` + ``<stem>.json``; [] when :func:`why_not_saved` says no."""
    if why_not_saved(estimator) is not None:
        return []
    if isinstance(estimator, (SavedOneClassSVM, SavedIsolationForest)):
        return estimator.save(folder, stem)
    if isinstance(estimator, IsolationForest):
        return SavedIsolationForest.from_fitted(estimator).save(folder, stem)
    np.savez(
        folder / f"{stem}.npz",
        support_vectors=estimator.support_vectors_,
        dual_coef=estimator.dual_coef_,
        intercept=estimator.intercept_,
    )
    settings = {
        "estimator": "sklearn.svm.OneClassSVM",
        "kernel": estimator.kernel,
        "gamma": float(estimator._gamma),
        "degree": int(estimator.degree),
        "coef0": float(estimator.coef0),
        "nu": float(estimator.nu),
        "n_support": len(estimator.support_vectors_),
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
    def load(cls, folder: Path, stem: str) -> SavedOneClassSVM:
        settings = json.loads((Path(folder) / f"{stem}.json").read_text())
        with np.load(Path(folder) / f"{stem}.npz", allow_pickle=False) as arrays:
            return cls(
                arrays["support_vectors"],
                arrays["dual_coef"],
                arrays["intercept"],
                settings["kernel"],
                settings["gamma"],
                settings["degree"],
                settings["coef0"],
            )

    def save(self, folder: Path, stem: str) -> list[str]:
        np.savez(
            Path(folder) / f"{stem}.npz",
            support_vectors=self.support_vectors,
            dual_coef=self.dual_coef,
            intercept=self.intercept,
        )
        (Path(folder) / f"{stem}.json").write_text(
            json.dumps(
                {
                    "estimator": "sklearn.svm.OneClassSVM",
                    "kernel": self.kernel,
                    "gamma": self.gamma,
                    "degree": self.degree,
                    "coef0": self.coef0,
                    "n_support": len(self.support_vectors),
                },
                indent=2,
            )
            + "\n"
        )
        return [f"{stem}.npz", f"{stem}.json"]

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        kernel = pairwise_kernels(
            np.asarray(features, dtype=np.float64),
            self.support_vectors,
            metric=self.kernel,
            filter_params=True,
            gamma=self.gamma,
            degree=self.degree,
            coef0=self.coef0,
        )
        return (kernel @ self.dual_coef.T + self.intercept).ravel()


@dataclass(frozen=True)
class SavedIsolationForest:
    """An Isolation Forest as node arrays, all trees concatenated (tree t owns nodes
    ``node_offsets[t]:node_offsets[t + 1]``, child indices local to its tree, -1 at leaves).

    ``leaf_depth`` is, per node, what scikit-learn adds for an image ending in that leaf: the
    leaf's depth plus the expected path length of the ``n_node_samples`` left unsplit there,
    minus one. score_samples = -2 ** (-sum over trees / (n_trees * c(max_samples))), and
    decision_function = score_samples - offset, as in ``sklearn.ensemble.IsolationForest``.
    """

    node_offsets: np.ndarray
    children_left: np.ndarray
    children_right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    n_node_samples: np.ndarray
    leaf_depth: np.ndarray
    tree_features: np.ndarray  # [n_trees, n_features_per_tree]: the columns each tree sees
    subsample_features: bool
    denominator: float
    offset: float

    @classmethod
    def from_fitted(cls, forest: IsolationForest) -> SavedIsolationForest:
        trees = [e.tree_ for e in forest.estimators_]
        counts = np.array([t.node_count for t in trees])
        # scikit-learn precomputes both per-node terms at fit time (>= 1.4); its own formula otherwise.
        path = [
            np.asarray(d, np.float64) + np.asarray(a, np.float64) - 1.0
            for d, a in zip(forest._decision_path_lengths, forest._average_path_length_per_tree)
        ]
        return cls(
            node_offsets=np.concatenate([[0], np.cumsum(counts)]),
            children_left=np.concatenate([t.children_left for t in trees]),
            children_right=np.concatenate([t.children_right for t in trees]),
            feature=np.concatenate([t.feature for t in trees]),
            threshold=np.concatenate([t.threshold for t in trees]),
            n_node_samples=np.concatenate([t.n_node_samples for t in trees]),
            leaf_depth=np.concatenate(path),
            tree_features=np.stack([np.asarray(f, np.int64) for f in forest.estimators_features_]),
            subsample_features=bool(forest._max_features != forest.n_features_in_),
            denominator=float(len(trees) * _average_path_length(forest._max_samples)),
            offset=float(forest.offset_),
        )

    def save(self, folder: Path, stem: str) -> list[str]:
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)}
        np.savez(Path(folder) / f"{stem}.npz", **arrays)
        (Path(folder) / f"{stem}.json").write_text(
            json.dumps(
                {
                    "estimator": "sklearn.ensemble.IsolationForest",
                    "n_trees": int(len(self.node_offsets) - 1),
                    "subsample_features": self.subsample_features,
                    "denominator": self.denominator,
                    "offset": self.offset,
                    "decision_function": "-2 ** (-sum_trees leaf_depth[leaf(x)] / denominator) - offset",
                },
                indent=2,
            )
            + "\n"
        )
        return [f"{stem}.npz", f"{stem}.json"]

    @classmethod
    def load(cls, folder: Path, stem: str) -> SavedIsolationForest:
        settings = json.loads((Path(folder) / f"{stem}.json").read_text())
        with np.load(Path(folder) / f"{stem}.npz", allow_pickle=False) as arrays:
            return cls(
                **{name: arrays[name] for name in arrays.files},
                subsample_features=settings["subsample_features"],
                denominator=settings["denominator"],
                offset=settings["offset"],
            )

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        # Trees compare float32 inputs with float64 thresholds, as scikit-learn's trees do.
        x = np.asarray(features, dtype=np.float32).astype(np.float64)
        rows = np.arange(len(x))
        depths = np.zeros(len(x))
        for t in range(len(self.node_offsets) - 1):
            base = self.node_offsets[t]
            seen = x[:, self.tree_features[t]] if self.subsample_features else x
            node = np.zeros(len(x), dtype=np.int64)
            while True:
                left = self.children_left[base + node]
                inner = left != -1
                if not inner.any():
                    break
                go_left = seen[rows, np.maximum(self.feature[base + node], 0)] <= self.threshold[base + node]
                node = np.where(inner, np.where(go_left, left, self.children_right[base + node]), node)
            depths += self.leaf_depth[base + node]
        scores = 2.0 ** -(depths / self.denominator) if self.denominator else np.ones(len(x))
        return -scores - self.offset


def _average_path_length(n: int) -> float:
    """c(n) of the Isolation Forest paper: the mean path length of an unsuccessful search in n samples."""
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    return 2.0 * (np.log(n - 1.0) + np.euler_gamma) - 2.0 * (n - 1.0) / n


SAVED_ESTIMATORS: dict[str, type[SavedOneClassSVM] | type[SavedIsolationForest]] = {
    "sklearn.svm.OneClassSVM": SavedOneClassSVM,
    "sklearn.ensemble.IsolationForest": SavedIsolationForest,
}


def load_estimator(folder: Path, stem: str):
    """What :func:`save_estimator` wrote, as an object with ``decision_function``; ConfigError if absent."""
    path = Path(folder) / f"{stem}.json"
    if not path.is_file():
        raise ConfigError(
            f"{path} is missing: the run's estimator was not saved (estimators other than "
            f"{' and '.join(SAVED_ESTIMATORS)} have no plain-array form) and cannot be reloaded"
        )
    kind = json.loads(path.read_text()).get("estimator")
    if kind not in SAVED_ESTIMATORS:
        raise ConfigError(f"{path}: estimator {kind!r} cannot be reloaded; known: {', '.join(SAVED_ESTIMATORS)}")
    return SAVED_ESTIMATORS[kind].load(folder, stem)


def save_pca(pca: PCA, folder: Path, name: str = "pca.npz") -> str:
    """The projection as arrays: features = (x - mean) @ components.T."""
    np.savez(
        Path(folder) / name, components=pca.components_, mean=pca.mean_, explained_variance=pca.explained_variance_
    )
    return name


def load_pca(folder: Path, name: str = "pca.npz") -> PCA:
    """A fitted scikit-learn PCA rebuilt from :func:`save_pca`'s arrays (same transform code, same numbers)."""
    with np.load(Path(folder) / name, allow_pickle=False) as arrays:
        components, mean, variance = arrays["components"], arrays["mean"], arrays["explained_variance"]
    pca = PCA(n_components=len(components))
    pca.components_, pca.mean_, pca.explained_variance_ = components, mean, variance
    pca.n_components_, pca.n_features_in_ = len(components), components.shape[1]
    return pca
