"""Every config option composes and validates; every bad value fails with one clear line."""

import pytest
from conftest import compose_config
from hydra.utils import instantiate

from anomaly_bench.cli import CONF_DIR, group_options
from anomaly_bench.config import validate
from anomaly_bench.errors import ConfigError
from anomaly_bench.thresholds import ThresholdRule


@pytest.mark.parametrize("group", ["dataset", "model", "threshold", "trainer", "paths", "experiment"])
def test_every_group_option_composes_and_validates(group):
    options = group_options(group)
    assert options, f"conf/{group} is empty"
    for option in options:
        # A user's own images (folder, mvtec, npz) need a path; any path passes validation.
        cfg = compose_config([f"{group}={option}", *(["dataset.path=data"] if group == "dataset" else [])])
        settings = validate(cfg)
        if group == "model":
            assert cfg.model.name
        if group == "experiment":
            assert settings.trainer.epochs > 0


def test_defaults_are_a_fast_real_run():
    settings = validate(compose_config())
    assert settings.dataset.name == "mnist" and settings.model["name"] == "conv_ae"
    assert settings.threshold["name"] != "best_f1"  # the oracle is never a default
    assert settings.optimized_metric == "val_auroc"


@pytest.mark.parametrize("option", group_options("threshold"))
def test_threshold_options_instantiate_to_rules(option):
    rule = instantiate(compose_config([f"threshold={option}"]).threshold)
    assert isinstance(rule, ThresholdRule) and rule.name == option
    assert rule.oracle == (option == "best_f1")


def test_article_presets_carry_article_settings():
    conv = validate(compose_config(["experiment=article000_conv_ae"]))
    assert (conv.trainer.epochs, conv.trainer.batch_size, conv.trainer.optimizer, conv.trainer.learning_rate) == (
        50,
        128,
        "adadelta",
        1.0,
    )
    deep = validate(compose_config(["experiment=article000_deep_ae"]))
    assert (deep.trainer.epochs, deep.trainer.batch_size, deep.trainer.optimizer) == (100, 256, "adam")
    denoise = validate(compose_config(["experiment=article000_denoising_ae"]))
    assert denoise.model["noise_factor"] == 0.5
    sparse = validate(compose_config(["experiment=article000_sparse_ae"]))
    assert sparse.model["code_l1"] == 1e-6
    a3 = validate(compose_config(["experiment=article003_digits1to9_vs_0"]))
    assert a3.dataset.split.normal_classes == list(range(1, 10)) and a3.dataset.split.anomaly_classes == [0]
    assert a3.model["score"] == "mae" and a3.threshold["k"] == 1.0
    assert a3.model["encoder"][0]["units"] == 128


def test_overrides_reach_the_settings():
    s = validate(
        compose_config(
            [
                "dataset=fashion_mnist",
                "dataset.normal_classes=[5]",
                "trainer.epochs=3",
                "threshold=val_percentile",
                "threshold.q=99",
            ]
        )
    )
    assert (s.dataset.name, s.dataset.split.normal_classes, s.trainer.epochs, s.threshold["q"]) == (
        "fashion_mnist",
        [5],
        3,
        99,
    )


BAD = [
    (["dataset.normal_classes=[12]"], "dataset.normal_classes=[12] contains [12]; allowed classes are 0-9"),
    (["dataset.normal_classes=[]"], "dataset.normal_classes=[] must be a non-empty list"),
    (["dataset.normal_classes=[1]", "dataset.anomaly_classes=[1,2]"], "overlaps dataset.normal_classes=[1] in [1]"),
    (["dataset.anomaly_classes=[-1]"], "dataset.anomaly_classes=[-1] contains [-1]"),
    (["dataset.anomaly_classes=others"], "dataset.anomaly_classes='others' must be 'rest' or a list"),
    (["dataset.normal_classes=[0,1,2,3,4,5,6,7,8,9]"], "no anomaly class is left"),
    (["trainer.epochs=0"], "trainer.epochs=0 must be a positive integer"),
    (["trainer.batch_size=-4"], "trainer.batch_size=-4 must be a positive integer"),
    (["trainer.epochs=abc"], "trainer.epochs"),
    (["trainer.learning_rate=0"], "trainer.learning_rate=0.0 must be > 0"),
    (["trainer.lr_schedule=linear"], "trainer.lr_schedule='linear' is not known; allowed: constant, cosine"),
    (["trainer.lr_schedule=Cosine"], "trainer.lr_schedule='Cosine' is not known; allowed: constant, cosine"),
    (["dataset.val_fraction=1.5"], "dataset.val_fraction=1.5 must be in [0, 1)"),
    (["dataset.max_train=0"], "dataset.max_train=0 must be a positive count"),
    (["dataset.source=ftp"], "dataset.source='ftp' is not allowed"),
    (["model._target_=no.such.Model"], "model._target_='no.such.Model' does not import"),
    (["+model.depth=3"], "model.depth is not a setting of"),
    (["+trainer.momentum=0.9"], "trainer.momentum"),
    (["+foo=1"], "foo is not a config key"),
    (["optimized_metric=loss"], "optimized_metric='loss' is not allowed"),
    (["trainer.early_stopping.enabled=true", "dataset.val_fraction=0"], "needs validation images"),
]


@pytest.mark.parametrize("overrides, message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_values_fail_validation_with_one_line(overrides, message):
    with pytest.raises(ConfigError) as info:
        validate(compose_config(overrides))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_conf_dir_is_the_repository_tree():
    assert (CONF_DIR / "config.yaml").is_file()
