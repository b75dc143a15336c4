"""The score ensemble: standardisation by hand, bad settings, a tiny real run of knn + transform_classifier."""

import json
from types import SimpleNamespace

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import compose_config, needs_mnist
from test_baselines import check_contract
from zoo_runs import overrides_for

from anomaly_bench.errors import ConfigError
from anomaly_bench.models.base import Detector, FitResult
from anomaly_bench.models.ensemble import ScoreEnsemble, merge_histories, standardisation
from anomaly_bench.run import run


class Linear(Detector):
    """score = slope * pixel sum + offset: a member whose scores are known exactly."""

    def __init__(self, name: str, slope: float, offset: float = 0.0, epochs: int = 0) -> None:
        super().__init__(name)
        self.slope, self.offset, self.epochs, self.fitted = slope, offset, epochs, False

    def fit(self, splits, trainer) -> FitResult:
        self.fitted = True
        history = pd.DataFrame(
            {"epoch": range(1, self.epochs + 1), "loss": [1.0 / e for e in range(1, self.epochs + 1)]}
        )
        return FitResult(history=history, info={"slope": self.slope})

    def score(self, images: np.ndarray) -> np.ndarray:
        return self.slope * images.reshape(len(images), -1).sum(axis=1) + self.offset


def pixels(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32).reshape(-1, 1, 1, 1)


# Validation images 0, 1, 2, 3: mean 1.5, std sqrt(1.25); an image of value 4 lies sqrt(5) spreads above.
SPLITS = SimpleNamespace(val=SimpleNamespace(normal=SimpleNamespace(x=pixels(0, 1, 2, 3))))


def fitted(*members: Detector, combine: str = "mean") -> ScoreEnsemble:
    ensemble = ScoreEnsemble("ensemble", {m.name: m for m in members}, combine)
    ensemble.check((1, 1, 1))
    ensemble.fit(SPLITS, trainer=None)
    return ensemble


def test_standardisation_by_hand():
    assert standardisation(np.array([0.0, 1.0, 2.0, 3.0])) == pytest.approx((1.5, 1.25**0.5))
    assert standardisation(np.array([7.0, 7.0])) == (7.0, 1.0)  # constant scores: no division by zero


def test_members_on_different_scales_count_equally():
    ensemble = fitted(Linear("a", 1.0), Linear("b", 1000.0, 50.0))
    assert ensemble.scale == {"a": pytest.approx((1.5, 1.25**0.5)), "b": pytest.approx((1550.0, 1000 * 1.25**0.5))}
    np.testing.assert_allclose(ensemble.score(pixels(4, 1.5)), [5**0.5, 0.0], atol=1e-6)


def test_opposite_members_cancel_in_the_mean_and_not_in_the_max():
    images = pixels(4, 0, 1.5)
    np.testing.assert_allclose(fitted(Linear("a", 1.0), Linear("b", -2.0, 7.0)).score(images), [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(
        fitted(Linear("a", 1.0), Linear("b", -2.0, 7.0), combine="max").score(images),
        [5**0.5, 1.5 / 1.25**0.5, 0.0],
        atol=1e-6,
    )


def test_every_member_is_fitted_and_histories_are_merged_by_epoch():
    a, b = Linear("a", 1.0, epochs=2), Linear("b", 2.0, epochs=3)
    ensemble = ScoreEnsemble("ensemble", {"a": a, "b": b})
    fit = ensemble.fit(SPLITS, trainer=None)
    assert a.fitted and b.fitted
    assert list(fit.history.columns) == ["epoch", "a/loss", "b/loss"] and list(fit.history.epoch) == [1, 2, 3]
    assert np.isnan(fit.history["a/loss"].iloc[2]) and fit.history["b/loss"].iloc[2] == pytest.approx(1 / 3)
    assert fit.info["member_fit"]["b"] == {"slope": 2.0, "val_mean": 3.0, "val_std": pytest.approx(2 * 1.25**0.5)}
    assert merge_histories({"a": pd.DataFrame(), "b": pd.DataFrame()}).empty


@pytest.mark.parametrize(
    "members, combine, message",
    [
        ({"a": Linear("a", 1.0)}, "mean", "model.members has 1 detector(s); an ensemble needs at least 2"),
        (
            {"a": Linear("a", 1.0), "b": {"k": 3}},
            "mean",
            "model.members.b must be a model config with a _target_ detector",
        ),
        (
            {"a": Linear("a", 1.0), "b": Linear("b", 2.0)},
            "median",
            "model.combine='median' is not allowed; choose one of: mean, max",
        ),
    ],
)
def test_bad_ensembles_are_config_errors(members, combine, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ScoreEnsemble("ensemble", members, combine).check((1, 1, 1))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["dataset.val_fraction=0", "threshold=train_mean"],
            "dataset.val_fraction=0 but model=ensemble needs validation images",
        ),
        (["~model.members.knn"], "model.members has 1 detector(s)"),
        (["model.members.knn.k=0"], "model.members.knn.k=0 must be a positive number"),
        (
            ["model.members.transform_classifier.n_transforms=80"],
            "model.members.transform_classifier.n_transforms=80 is not allowed",
        ),
    ],
)
def test_bad_settings_stop_before_data_is_loaded(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(
            compose_config(["model=ensemble", *overrides, "dataset.path=/nonexistent", "dataset.source=explicit"]),
            tmp_path,
        )
    assert not (tmp_path / "metrics.json").exists()


def test_cli_exits_2_for_a_lone_member(tmp_path, monkeypatch, cli_main):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli_main("model=ensemble", "~model.members.knn", "paths.output_dir=out")
    assert code == 2 and "model.members has 1 detector(s)" in err, err
    assert len(err.strip().splitlines()[-1]) < 300 and "Traceback" not in err
    assert not list((tmp_path / "out").rglob("metrics.json"))


@needs_mnist
def test_knn_and_transform_classifier_tiny_run(shared_run):
    tmp_path, metrics = shared_run(overrides_for("ensemble"))
    members = [
        "members/knn/knn_reference.npz",
        "members/transform_classifier/model.keras",
        "members/transform_classifier/dirichlet.npz",
    ]
    check_contract(tmp_path, metrics, ["ensemble.json", "member_scores.csv", "history.csv", *members], 0.95)
    facts = metrics["detector"]
    assert set(facts["members"]) == {"knn", "transform_classifier"} and facts["combine"] == "mean"
    assert facts["n_params"] == facts["members"]["transform_classifier"]["n_params"] > 0
    saved = json.loads((tmp_path / "ensemble.json").read_text())["members"]
    assert saved["knn"]["val_mean"] == facts["member_fit"]["knn"]["val_mean"] and saved["knn"]["val_std"] > 0
    # The ensemble score is the mean of the members' standardised test scores.
    members_z = pd.read_csv(tmp_path / "member_scores.csv")
    scores = pd.read_csv(tmp_path / "scores.csv")
    np.testing.assert_allclose(members_z[["z_knn", "z_transform_classifier"]].mean(axis=1), scores.score, rtol=1e-6)
    assert "transform_classifier/loss" in pd.read_csv(tmp_path / "history.csv").columns
    assert keras.saving.load_model(tmp_path / members[1], safe_mode=True).output.shape[-1] == 8


def test_members_are_added_and_removed_with_config_group_overrides():
    from hydra.utils import instantiate

    cfg = compose_config(
        [
            "model=ensemble",
            "~model.members.knn",
            "+model@model.members.pca=pca",
            "+model@model.members.ae=deep_ae",
            "model.members.pca.n_components=8",
        ]
    )
    ensemble = instantiate(cfg.model, _convert_="all")
    ensemble.check((28, 28, 1))
    assert list(ensemble.members) == ["transform_classifier", "pca", "ae"]
    assert ensemble.members["pca"].n_components == 8 and ensemble.members["ae"].name == "deep_ae"
