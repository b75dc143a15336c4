"""Threshold rules: turn anomaly scores into a decision (score > threshold means anomaly).

Every rule sees the same :class:`ScoreSets` and returns one float, so the pipeline never
needs to know which rule it runs. Rules that peek at test labels say so with ``oracle``
and the run records it, because such numbers are not reportable results.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScoreSets:
    """Anomaly scores of every split, with test labels (1 = anomaly) for oracle rules."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray


class ThresholdRule(ABC):
    """A way of choosing the decision threshold; ``needs_validation`` lets config checks fail early."""

    name: str = "rule"
    oracle: bool = False
    #: which score sets the rule reads, so the pipeline scores only those ("train", "val", "test")
    needs: tuple[str, ...] = ()

    @property
    def needs_validation(self) -> bool:
        return "val" in self.needs

    @abstractmethod
    def __call__(self, scores: ScoreSets) -> float:
        """Return the threshold; images whose score is strictly above it are flagged."""

    def describe(self) -> dict:
        return {"threshold_rule": self.name, "oracle": self.oracle}


def _require(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError(f"threshold rule needs {what} scores but there are none")
    return values


class TrainMean(ThresholdRule):
    needs = ("train",)

    def __init__(self, name: str = "train_mean") -> None:
        self.name = name

    def __call__(self, scores: ScoreSets) -> float:
        return float(np.mean(_require(scores.train, "training")))


class ValMeanStd(ThresholdRule):
    needs = ("val",)

    def __init__(self, k: float = 2.0, name: str = "val_mean_std") -> None:
        self.k = float(k)
        self.name = name

    def __call__(self, scores: ScoreSets) -> float:
        val = _require(scores.val, "validation")
        return float(val.mean() + self.k * val.std())

    def describe(self) -> dict:
        return {**super().describe(), "threshold_k": self.k}


class ValPercentile(ThresholdRule):
    needs = ("val",)

    def __init__(self, q: float = 95.0, name: str = "val_percentile") -> None:
        if not 0.0 <= float(q) <= 100.0:
            raise ValueError(f"threshold.q={q} is outside [0, 100]")
        self.q = float(q)
        self.name = name

    def __call__(self, scores: ScoreSets) -> float:
        return float(np.percentile(_require(scores.val, "validation"), self.q))

    def describe(self) -> dict:
        return {**super().describe(), "threshold_q": self.q}


class Fixed(ThresholdRule):
    def __init__(self, value: float, name: str = "fixed") -> None:
        self.value = float(value)
        self.name = name

    def __call__(self, scores: ScoreSets) -> float:
        return self.value


class BestF1(ThresholdRule):
    """Oracle: the threshold that maximises F1 on the test set (never a reportable result)."""

    oracle = True
    needs = ("test",)

    def __init__(self, name: str = "best_f1") -> None:
        self.name = name

    def __call__(self, scores: ScoreSets) -> float:
        test = _require(scores.test, "test")
        labels = np.asarray(scores.test_labels).astype(bool)
        n_pos = int(labels.sum())
        # Candidate thresholds: each distinct score (flag strictly above it) and "flag everything".
        order = np.argsort(-test, kind="stable")
        sorted_scores, sorted_labels = test[order], labels[order]
        tp = np.cumsum(sorted_labels)
        fp = np.cumsum(~sorted_labels)
        # Only positions where the next score differs can be cut between.
        last_of_tie = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
        tp, fp = tp[last_of_tie], fp[last_of_tie]
        cut_scores = sorted_scores[last_of_tie]
        f1 = np.where(tp > 0, 2 * tp / (2 * tp + fp + (n_pos - tp)), 0.0)
        best = int(np.argmax(f1))
        # Flagging everything down to cut_scores[best] means a threshold just below it:
        # the next smaller distinct score, or below the minimum.
        if best + 1 < len(cut_scores):
            return float(cut_scores[best + 1])
        return float(np.nextafter(cut_scores[best], -np.inf))
