"""docs/extending.md runs as written, and a detector's checks have one entry point.

The page's model and threshold rule are written to the files their first line names and used
in a tiny run; the model's check hooks are watched while the pipeline and load_detector run.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, compose_config, needs_mnist
from test_load_detector import assert_same_decisions, rebuilt_test_images

import anomaly_bench.models
from anomaly_bench.errors import ConfigError
from anomaly_bench.models.base import CHECK_HOOKS, EPOCH_SETTINGS, Detector
from anomaly_bench.run import run
from anomaly_bench.trained import load_detector

PAGE = REPO / "docs" / "extending.md"
MODEL_MODULE = "anomaly_bench.models.pixel_zscore"
MODEL_TARGET = f"{MODEL_MODULE}.PixelZScoreDetector"
SMALL = [
    "dataset.normal_classes=[1]",
    "dataset.anomaly_classes=[0]",
    "dataset.max_train=300",
    "dataset.max_test=200",
]


def page_files() -> dict[str, str]:
    """The page's python and yaml blocks, keyed by the file their first line (``# <file>``) names."""
    blocks = re.findall(r"```(?:python|yaml)\n# (\S+)\n(.*?)```", PAGE.read_text(), flags=re.S)
    return {name: f"# {name}\n{body}" for name, body in blocks}


@pytest.fixture
def extended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[type, list[str]]]:
    """The page's files in place: the model as a module of anomaly_bench.models, the rule on sys.path,
    both YAML files in a config folder on the search path. Returns the model class and the overrides."""
    files = page_files()
    assert set(files) == {
        "anomaly_bench/models/pixel_zscore.py",
        "conf/model/pixel_zscore.yaml",
        "my_rules.py",
        "my_conf/threshold/val_median_mad.yaml",
    }
    models, conf = tmp_path / "models", tmp_path / "conf"
    for name, text in files.items():
        if name.startswith("anomaly_bench/models/"):
            target = models / Path(name).name
        elif name.startswith(("conf/", "my_conf/")):
            target = conf / name.split("/", 1)[1]
        else:
            target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    monkeypatch.setattr(anomaly_bench.models, "__path__", [*anomaly_bench.models.__path__, str(models)])
    # The page's last step: the class joins the detectors a run folder may name.
    assert f'"{MODEL_TARGET}",' in PAGE.read_text()
    monkeypatch.setattr(
        anomaly_bench.models, "DETECTOR_TARGETS", anomaly_bench.models.DETECTOR_TARGETS | {MODEL_TARGET}
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in (MODEL_MODULE, "my_rules"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield (
        importlib.import_module(MODEL_MODULE).PixelZScoreDetector,
        [f"hydra.searchpath=[file://{conf}]", "model=pixel_zscore"],
    )
    for name in (MODEL_MODULE, "my_rules"):
        sys.modules.pop(name, None)
    vars(anomaly_bench.models).pop(MODEL_MODULE.rsplit(".", 1)[1], None)


def watch_hooks(cls: type, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the check hooks of ``cls`` in the order they are called from now on."""
    calls: list[str] = []

    def spy(hook: str):
        original = getattr(cls, hook)

        def watched(self, *args):
            calls.append(hook)
            return original(self, *args)

        return watched

    for hook in CHECK_HOOKS:
        monkeypatch.setattr(cls, hook, spy(hook))
    return calls


@needs_mnist
def test_the_pages_model_and_rule_run_and_reload_with_every_check_hook(extended, tmp_path, monkeypatch):
    model, overrides = extended
    calls = watch_hooks(model, monkeypatch)
    out = tmp_path / "run"
    metrics = run(compose_config([*overrides, "threshold=val_median_mad", "threshold.k=4", *SMALL]), out)
    assert calls == ["check_settings", "check_shape", "check_data"]
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["status"] == "completed" and on_disk["threshold_rule"] == "val_median_mad"
    assert on_disk["threshold_k"] == 4.0 and on_disk["auroc"] > 0.9, on_disk["auroc"]
    assert on_disk["detector"] == {
        "supervision": "unsupervised",
        "unused_settings": list(EPOCH_SETTINGS),
        "top_k": 20,
        "stats_file": "pixel_stats.npz",
        "n_fit_images": metrics["n_train"],
    }
    assert (out / "reconstructions.png").is_file()

    calls.clear()
    trained = load_detector(out)
    assert calls == ["check_settings", "check_shape"]  # no data when reloading
    assert isinstance(trained.detector, model) and trained.threshold == metrics["threshold"]
    expected = pd.read_csv(out / "scores.csv")
    images = rebuilt_test_images(out, expected["index"].to_numpy())
    assert_same_decisions(trained, trained.score(trained.prepare(images)), expected)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.top_k=0", "model.top_k=0 must be an integer >= 1"),
        ("dataset.max_train=1", "needs 2 or more normal training images for a spread, got 1"),
    ],
)
@needs_mnist
def test_the_pages_checks_stop_a_run_before_its_folder(extended, tmp_path, override, message):
    _, overrides = extended
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(compose_config([*overrides, *SMALL, override]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_check_runs_the_hooks_in_order_and_the_settings_once():
    calls: list[str] = []

    class Watched(Detector):
        def check_settings(self) -> None:
            calls.append("settings")

        def check_shape(self, image_shape: tuple[int, ...]) -> None:
            calls.append(f"shape {image_shape}")

        def check_data(self, splits) -> None:
            calls.append("data")

        def fit(self, data, trainer):
            raise NotImplementedError

        def score(self, images):
            raise NotImplementedError

    class FakeSplits:
        image_shape = (4, 4, 1)

    detector = Watched("w")
    detector.check()
    detector.check(splits=FakeSplits())
    assert calls == ["settings", "shape (4, 4, 1)", "data"]
    Watched("v").check((2, 2, 3))
    assert calls[3:] == ["settings", "shape (2, 2, 3)"]


@pytest.mark.parametrize(
    "name, message",
    [
        ("check", "overrides check(), the entry point the pipeline and load_detector call"),
        ("check_setting", "defines check_setting(), which is not a check hook, so nothing would call it"),
    ],
)
def test_a_check_the_entry_point_would_skip_fails_when_the_class_is_defined(name, message):
    body = {name: lambda self, *args: None}
    with pytest.raises(TypeError, match=re.escape(message) + ".*check_settings, check_shape, check_data"):
        type("Skipped", (Detector,), body)
