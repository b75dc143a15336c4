"""Exact numbers for every threshold rule and for the metrics built on them."""

import numpy as np
import pytest

from anomaly_bench.metrics import decision_metrics, flagged_rate_by_class, ranking_metrics
from anomaly_bench.thresholds import BestF1, Fixed, ScoreSets, TrainMean, ValMeanStd, ValPercentile

SETS = ScoreSets(
    train=np.array([1.0, 2.0, 3.0, 6.0]),
    val=np.array([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]),  # mean 5, population std 2
    test=np.array([0.1, 0.2, 0.3, 0.4, 0.5]),
    test_labels=np.array([0, 0, 1, 0, 1]),
)


def test_train_mean_is_mean_of_training_scores():
    assert TrainMean()(SETS) == 3.0


@pytest.mark.parametrize("k, expected", [(0.0, 5.0), (1.0, 7.0), (2.0, 9.0), (-0.5, 4.0)])
def test_val_mean_std_is_mean_plus_k_std(k, expected):
    assert ValMeanStd(k=k)(SETS) == pytest.approx(expected)


@pytest.mark.parametrize("q, expected", [(0, 2.0), (50, 4.5), (100, 9.0), (25, 4.0)])
def test_val_percentile(q, expected):
    assert ValPercentile(q=q)(SETS) == pytest.approx(expected)


def test_val_percentile_rejects_q_outside_0_100():
    with pytest.raises(ValueError, match="outside"):
        ValPercentile(q=101)


def test_fixed_ignores_scores():
    assert Fixed(value=0.25)(SETS) == 0.25


def test_best_f1_is_an_oracle_that_maximises_test_f1():
    rule = BestF1()
    threshold = rule(SETS)
    # Flagging {0.3, 0.4, 0.5} gives tp=2, fp=1, fn=0 -> F1 0.8, the best achievable.
    assert threshold == pytest.approx(0.2)
    flagged = SETS.test > threshold
    assert decision_metrics(SETS.test_labels, flagged)["f1"] == pytest.approx(0.8)
    assert rule.describe() == {"threshold_rule": "best_f1", "oracle": True}
    assert TrainMean().describe()["oracle"] is False


def test_best_f1_handles_ties_and_flag_everything():
    sets = ScoreSets(np.empty(0), np.empty(0), np.array([1.0, 1.0, 1.0]), np.array([1, 1, 0]))
    threshold = BestF1()(sets)
    assert threshold < 1.0 and np.all(sets.test > threshold)  # flag all: F1 = 0.8


def test_rules_that_need_missing_scores_fail_clearly():
    empty = ScoreSets(np.empty(0), np.empty(0), SETS.test, SETS.test_labels)
    with pytest.raises(ValueError, match="validation"):
        ValMeanStd()(empty)
    with pytest.raises(ValueError, match="training"):
        TrainMean()(empty)
    assert ValMeanStd().needs_validation and not TrainMean().needs_validation


def test_decision_metrics_exact():
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    flagged = np.array([0, 1, 0, 1, 1, 0, 1])
    m = decision_metrics(labels, flagged)
    assert m["confusion_matrix"] == [[2, 1], [1, 3]]  # rows: true normal, true anomaly
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    assert m["accuracy"] == pytest.approx(5 / 7)


def test_ranking_metrics_exact():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    m = ranking_metrics(labels, scores)
    assert m["auroc"] == pytest.approx(0.75)
    assert m["auprc"] == pytest.approx((1 / 2) * 1.0 + (1 / 2) * (2 / 3))
    assert ranking_metrics(np.array([1, 1]), np.array([0.1, 0.2])) == {"auroc": None, "auprc": None}


def test_flagged_rate_by_class():
    rates = flagged_rate_by_class(np.array([0, 0, 0, 0, 7, 7]), np.array([1, 1, 1, 0, 0, 0]))
    assert rates == {"0": 0.75, "7": 0.0}
