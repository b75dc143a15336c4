"""The tiny run of every model (and saved-state variant) that tests share through ``shared_run``:
test_load_detector loads each one; predict, backend and model tests read the ones they need."""

import pytest
from conftest import CONF_DIR

# MNIST 1 vs 0, small enough that the whole zoo trains in the default test run.
SMALL = [
    "dataset.normal_classes=[1]",
    "dataset.anomaly_classes=[0]",
    "dataset.max_train=200",
    "dataset.max_test=120",
    "trainer.batch_size=64",
]
# Every model YAML, so a model added to conf/model/ is covered without touching this file,
# plus the variants whose saved state differs (encoder features, PCA first, f-AnoGAN encoder).
VARIANTS = {
    # Two epochs with samples and checkpoints: test_anogan checks this run's folder contract.
    "anogan": ["model.search_steps=3", "model.sample_every=1", "model.checkpoint_every=2", "trainer.epochs=2"],
    "anogan_encoder": [
        "model=anogan",
        "model.scoring=encoder",
        "model.encoder_epochs=1",
        "model.sample_every=0",
        "model.checkpoint_every=0",
    ],
    "knn_encoder": ["model=knn", "model.features=encoder"],
    "ocsvm_pca": ["model=ocsvm", "model.pca_components=10"],
    "isolation_forest_pca": ["model=isolation_forest", "model.pca_components=10"],
    "transform_classifier_cross_entropy": ["model=transform_classifier", "model.score=cross_entropy"],
    "ensemble_with_pca": ["model=ensemble", "+model@model.members.pca=pca"],
}
# Variants whose load path another case already covers: run with `pytest -m slow`.
SLOW = {"ocsvm_pca", "ensemble_with_pca", "transform_classifier_cross_entropy"}
CASES = [
    pytest.param(case, marks=pytest.mark.slow) if case in SLOW else case
    for case in sorted({p.stem for p in (CONF_DIR / "model").glob("*.yaml")} | set(VARIANTS))
]


# The models test_zoo checks for learning (AUROC above 0.8) train longer, on MNIST 1 vs 0 with
# 500 images; load_detector loads those same runs rather than training each model twice.
EASY_PAIR = [
    "dataset.normal_classes=[1]",
    "dataset.anomaly_classes=[0]",
    "dataset.max_train=500",
    "dataset.max_test=300",
    "trainer.batch_size=64",
]
LEARNING = {
    "cnn_classifier": ["trainer.epochs=3", "model.class_weight=balanced"],
    "vae": ["trainer.epochs=2"],
    # A few hundred steps take the autoencoder past the "mean image" plateau.
    "ae_ocsvm": ["trainer.epochs=20", "trainer.batch_size=16"],
    "ocsvm": [],
    "deep_svdd": ["trainer.epochs=2", "model.pretrain_epochs=1"],
}

# test_baselines and test_ensemble check that these runs beat chance by a margin (1 vs 0, 500
# training images); load_detector loads the same runs.
ONE_VS_ZERO = [
    "dataset.normal_classes=[1]",
    "dataset.anomaly_classes=[0]",
    "dataset.max_train=500",
    "dataset.max_test=400",
    "trainer.batch_size=64",
]
BASELINES = {
    "knn_encoder": ["model=knn", "model.features=encoder", "trainer.epochs=2", *ONE_VS_ZERO],
    "transform_classifier": ["model=transform_classifier", "trainer.epochs=3", "model.score=dirichlet", *ONE_VS_ZERO],
    "transform_classifier_cross_entropy": [
        "model=transform_classifier",
        "trainer.epochs=3",
        "model.score=cross_entropy",
        *ONE_VS_ZERO,
    ],
    "ensemble": ["model=ensemble", "trainer.epochs=2", *ONE_VS_ZERO],
}


def overrides_for(case: str) -> list[str]:
    if case in LEARNING:
        return [f"model={case}", *EASY_PAIR, *LEARNING[case]]
    if case in BASELINES:
        return BASELINES[case]
    extra = VARIANTS.get(case, [])
    epochs = [] if any(o.startswith("trainer.epochs=") for o in extra) else ["trainer.epochs=1"]
    return (extra if any(o.startswith("model=") for o in extra) else [f"model={case}", *extra]) + SMALL + epochs
