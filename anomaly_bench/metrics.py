"""Detection metrics with the anomaly as the positive class (label 1)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)


def ranking_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """Threshold-free quality; undefined (None) when the test set holds only one kind."""
    labels = np.asarray(labels).astype(int)
    if labels.min() == labels.max():
        return {"auroc": None, "auprc": None}
    return {
        "auroc": float(roc_auc_score(labels, scores)),
        "auprc": float(average_precision_score(labels, scores)),
    }


def decision_metrics(labels: np.ndarray, flagged: np.ndarray) -> dict:
    """Quality of the thresholded decision; confusion matrix rows = truth [normal, anomaly]."""
    labels = np.asarray(labels).astype(int)
    flagged = np.asarray(flagged).astype(int)
    return {
        "precision": float(precision_score(labels, flagged, zero_division=0)),
        "recall": float(recall_score(labels, flagged, zero_division=0)),
        "f1": float(f1_score(labels, flagged, zero_division=0)),
        "accuracy": float(np.mean(labels == flagged)),
        "confusion_matrix": confusion_matrix(labels, flagged, labels=[0, 1]).tolist(),
    }


def flagged_rate_by_class(
    classes: np.ndarray, flagged: np.ndarray, class_names: list[str] | None = None
) -> dict[str, float]:
    """Share of each original class flagged as anomalous (e.g. 'all zeros flagged' in article 003),
    keyed by class name (the index itself when no names are given)."""
    classes = np.asarray(classes)
    flagged = np.asarray(flagged).astype(bool)
    name = (lambda c: class_names[int(c)]) if class_names is not None else (lambda c: str(int(c)))
    return {name(c): float(flagged[classes == c].mean()) for c in np.unique(classes)}
