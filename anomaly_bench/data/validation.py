"""A validation AUROC from held-out training images, for choosing settings honestly.

Choosing hyperparameters on the test AUROC is test-set model selection. A search needs an
objective that never sees a test image: the held-out normal validation split plus a fixed
sample of training images of the anomaly classes. The sample never overlaps the training set
(the labelled anomalies a supervised model trains on are excluded from the pool), and it is
not the validation split itself, so thresholds and early stopping still see normal images only.
"""

from __future__ import annotations

import logging

import numpy as np

from anomaly_bench.data.sources.base import RawDataset
from anomaly_bench.data.split import Split, Splits, _to_split, stratified_subsample
from anomaly_bench.metrics import ranking_metrics

# A seed of its own, mixed with split_seed, so the sample is fixed for a split but
# independent of the draws that made the split.
SAMPLE_STREAM = 7919
log = logging.getLogger("anomaly_bench")


def validation_anomalies(raw: RawDataset, splits: Splits, count: int, seed: int) -> Split:
    """Up to ``count`` training images of the anomaly classes that are not in the training set,
    stratified by class; the same images for the same split seed."""
    pool = np.flatnonzero(np.isin(raw.y_train, splits.anomaly_classes))
    pool = np.setdiff1d(pool, splits.train.index)
    if count <= 0:
        pool = pool[:0]
    elif len(pool):
        rng = np.random.default_rng([seed, SAMPLE_STREAM])
        pool = pool[stratified_subsample(raw.y_train[pool], count, rng)]
    return _to_split(raw.x_train[pool], raw.y_train[pool], pool, splits.normal_classes)


def validation_metrics(detector, raw: RawDataset, splits: Splits, dataset, val_scores: np.ndarray) -> dict:
    """``val_auroc`` (None without normal validation images or held-out anomalies) and
    ``n_val_anomalies`` for metrics.json; reuses the validation scores a threshold rule computed."""
    held_out = validation_anomalies(raw, splits, dataset.val_anomalies, dataset.split_seed)
    auroc = None
    if len(held_out) and len(splits.val):
        normal_scores = val_scores if len(val_scores) == len(splits.val) else detector.score(splits.val.x)
        auroc = validation_auroc(normal_scores, detector.score(held_out.x))
    else:
        log.info(
            "val_auroc: not measured (%d normal validation images, %d held-out anomalies; needs "
            "dataset.val_fraction > 0 and dataset.val_anomalies > 0)",
            len(splits.val),
            len(held_out),
        )
    return {"val_auroc": auroc, "n_val_anomalies": len(held_out)}


def validation_auroc(normal_scores: np.ndarray, anomaly_scores: np.ndarray) -> float | None:
    """AUROC of normal validation images against the held-out anomalies (None if either is empty)."""
    if len(normal_scores) == 0 or len(anomaly_scores) == 0:
        return None
    labels = np.concatenate([np.zeros(len(normal_scores), int), np.ones(len(anomaly_scores), int)])
    return ranking_metrics(labels, np.concatenate([normal_scores, anomaly_scores]))["auroc"]
