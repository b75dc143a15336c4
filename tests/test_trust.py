"""Hostile inputs: run folders, data files and output paths that someone else chose.

Every case ends in a correct result or one line with exit 2 (ConfigError), never in a
traceback, code run from a file, a completed result modified or memory sized by a number
inside a file. One tiny PCA run on an 8 x 8 .npz serves as the completed run folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config
from PIL import Image

import anomaly_bench
from anomaly_bench import predict as predict_module
from anomaly_bench.claim import claim_file, claim_folder
from anomaly_bench.compare import cli as compare_cli
from anomaly_bench.data import cifar
from anomaly_bench.data.images import open_image
from anomaly_bench.data.sources import load_raw
from anomaly_bench.data.split import class_indices
from anomaly_bench.errors import BadDataError, ConfigError
from anomaly_bench.run import run
from anomaly_bench.run_folder import DETECTOR_FILE, METRICS_FILE


def tiny_npz(path: Path, y_train=None, side: int = 8) -> Path:
    """Two classes of side x side grey images: class 1 has a bright square, class 0 does not."""
    rng = np.random.default_rng(0)
    y_train = np.array([0, 1] * 30) if y_train is None else y_train
    y_test = np.array([0, 1] * 15)

    def images(labels):
        x = rng.integers(0, 60, size=(len(labels), side, side), dtype=np.uint8)
        x[np.asarray(labels) == 1, 2:6, 2:6] += 150
        return x

    np.savez(path, x_train=images(np.asarray(y_train) % 2), y_train=y_train, x_test=images(y_test), y_test=y_test)
    return path


@pytest.fixture(scope="module")
def pca_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trust")
    data = tiny_npz(root / "tiny.npz")
    overrides = [
        "model=pca",
        "model.n_components=2",
        "dataset=npz",
        f"dataset.path={data}",
        "dataset.normal_classes=[0]",
    ]
    run(compose_config(overrides), root / "run")
    return root / "run"


@pytest.fixture()
def copy_of(pca_run, tmp_path):
    def make(name: str = "copy") -> Path:
        target = tmp_path / name
        shutil.copytree(pca_run, target)
        return target

    return make


def md5s(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def predict(argv, capsys) -> tuple[int, str, str]:
    code = predict_module.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def compare(argv, capsys) -> tuple[int, str, str]:
    try:
        code = compare_cli.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str, prog: str = "anomaly-bench-predict") -> str:
    lines = [line for line in err.splitlines() if line.startswith(f"{prog}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def png_folder(folder: Path, n: int = 3, side: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((side, side), 40 * i, dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


# ----------------------------------------------------------------------------- nothing runs from a run folder
def test_importing_the_main_module_runs_nothing(monkeypatch):
    import anomaly_bench.cli

    monkeypatch.setattr(anomaly_bench.cli, "main", lambda: pytest.fail("importing __main__ ran main()"))
    sys.modules.pop("anomaly_bench.__main__", None)
    __import__("anomaly_bench.__main__")


@pytest.mark.parametrize(
    "target", ["anomaly_bench.__main__.Foo", "trust_probe.Detector", "os.system", "anomaly_bench.run.run", 42, None]
)
def test_a_target_outside_the_declared_detectors_is_refused_before_any_import(copy_of, tmp_path, monkeypatch, target):
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "trust_probe.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\nclass Detector: pass\n")
    monkeypatch.syspath_prepend(str(probe))
    for name in ("anomaly_bench.__main__", "trust_probe"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    folder = copy_of()
    facts = json.loads((folder / DETECTOR_FILE).read_text())
    facts["model"]["_target_"] = target
    (folder / DETECTOR_FILE).write_text(json.dumps(facts))
    with pytest.raises(ConfigError, match=r"detector.json: model._target_=.* is not a detector") as info:
        anomaly_bench.load_detector(folder)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "imported").exists()
    assert "anomaly_bench.__main__" not in sys.modules and "trust_probe" not in sys.modules


def test_every_detector_class_of_the_package_is_declared():
    import importlib
    import pkgutil

    import anomaly_bench.models as models
    from anomaly_bench.models import DETECTOR_TARGETS, Detector

    found = set()
    for module in pkgutil.iter_modules(models.__path__):
        loaded = importlib.import_module(f"anomaly_bench.models.{module.name}")
        for value in vars(loaded).values():
            concrete = isinstance(value, type) and not getattr(value, "__abstractmethods__", None)
            if concrete and issubclass(value, Detector) and value.__module__ == loaded.__name__:
                found.add(f"{value.__module__}.{value.__qualname__}")
    assert found == {t for t in DETECTOR_TARGETS if t.startswith("anomaly_bench.")}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda f: f["threshold"].update(value=float("nan")), "threshold.value"),
        (lambda f: f["threshold"].update(value=float("inf")), "threshold.value"),
        (lambda f: f["threshold"].update(value="1.5"), "threshold.value"),
        (lambda f: f.pop("preprocessing"), "preprocessing"),
        (lambda f: f["preprocessing"].update(image_shape=[28, 28, 4]), "preprocessing.image_shape"),
        (lambda f: f["preprocessing"].update(image_shape=[2**40, 28, 1]), "preprocessing.image_shape"),
        (lambda f: f.update(files=["../../etc/passwd"]), "files"),
        (lambda f: f["model"].update(n_components="${oc.env:HOME}"), "model.n_components"),
        (lambda f: f.update(format_version=True), "format_version"),
    ],
)
def test_a_bad_detector_json_field_is_one_line_naming_it_exit_2(copy_of, tmp_path, capsys, change, field):
    folder = copy_of()
    facts = json.loads((folder / DETECTOR_FILE).read_text())
    change(facts)
    (folder / DETECTOR_FILE).write_text(json.dumps(facts))  # json writes NaN / Infinity as Python does
    before = md5s(folder)
    code, _, err = predict([folder, png_folder(tmp_path / "imgs"), "--out", tmp_path / "out"], capsys)
    line = one_error_line(err)
    assert code == 2 and f"{DETECTOR_FILE}: {field}" in line, line
    assert not (tmp_path / "out").exists() and md5s(folder) == before


@pytest.mark.parametrize("content", ["[1, 2]", '{"status": "done"}', "NaN", "{" * 100000, ""])
def test_a_bad_metrics_json_is_one_line(copy_of, content):
    folder = copy_of()
    (folder / METRICS_FILE).write_text(content)
    with pytest.raises(ConfigError, match=METRICS_FILE) as info:
        anomaly_bench.load_detector(folder)
    assert "\n" not in str(info.value)


def test_a_truncated_model_file_is_named_truncated(tmp_path):
    import keras

    from anomaly_bench.trained import model_file_problem

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.save(tmp_path / "model.keras")
    data = (tmp_path / "model.keras").read_bytes()
    (tmp_path / "model.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception) as info:
        keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert "truncated" in model_file_problem(info.value)


# ----------------------------------------------------------------------------- a finished result is never modified
def test_hostile_output_paths_leave_every_file_of_a_completed_run_unchanged(copy_of, tmp_path, capsys):
    target = copy_of("other_run")
    sweep = tmp_path / "sweep"
    shutil.copytree(target, sweep / "0_job")
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    images = png_folder(tmp_path / "imgs")
    before, sweep_before = md5s(target), md5s(sweep)
    for out in (target, target / "sub", target / ".hydra" / "x", sweep / "preds", sweep / "0_job"):
        code, _, err = predict([target, images, "--out", out], capsys)
        assert code == 2 and "folder" in one_error_line(err), err
    for out in (target / "cmp.md", sweep / "cmp.md", sweep / "0_job" / "cmp.md", sweep / "summary.csv"):
        code, _, err = compare([sweep, "--out", out], capsys)
        assert code == 2 and "folder" in one_error_line(err, "anomaly-bench-compare"), err
    link = tmp_path / "link_to_run"
    link.symlink_to(target)
    code, _, err = compare([sweep, "--out", link / "cmp.md"], capsys)
    assert code == 2, err
    assert md5s(target) == before and md5s(sweep) == sweep_before


def test_an_output_location_is_claimed_once(tmp_path):
    first = claim_folder("--out", tmp_path / "a" / "b")
    assert first.path.is_dir()
    with pytest.raises(ConfigError, match="exists"):
        claim_folder("--out", tmp_path / "a" / "b")  # a second command with the same --out stops
    first.release()
    assert not (tmp_path / "a").exists()  # the parents made for it go too
    claimed = claim_file("--out", tmp_path / "r.md")
    with pytest.raises(ConfigError, match="exists"):
        claim_file("--out", tmp_path / "r.md")
    claimed.release()
    with pytest.raises(ConfigError, match="cannot create"):
        claim_folder("--out", Path("/proc/anomaly-bench-x"))


def test_predict_claims_its_output_before_loading_or_scoring(pca_run, tmp_path, capsys, monkeypatch):
    (tmp_path / "taken").mkdir()
    import anomaly_bench.trained

    monkeypatch.setattr(anomaly_bench.trained, "load_detector", lambda *a: pytest.fail("loaded before the claim"))
    for out in (tmp_path / "taken", "/proc/x"):
        code, _, err = predict([pca_run, png_folder(tmp_path / "imgs"), "--out", out], capsys)
        assert code == 2 and "--out" in one_error_line(err)


def test_the_default_output_folder_has_one_time_stamp(tmp_path):
    run_dir = tmp_path / "15-04-17-784340_mnist-conv_ae-n0"
    name = predict_module.default_out_dir(run_dir).name
    assert re.fullmatch(r"\d{2}-\d{2}-\d{2}-\d{6}_mnist-conv_ae-n0", name), name


# ----------------------------------------------------------------------------- predict's inputs
def test_an_object_array_or_nothing_readable_exits_2_and_writes_nothing(pca_run, tmp_path, capsys):
    np.savez(tmp_path / "objects.npz", x=np.array([1, "a"], dtype=object))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    for inputs in (
        [tmp_path / "objects.npz"],
        [tmp_path / "bad.png"],
        [tmp_path / "objects.npz", tmp_path / "bad.png"],
    ):
        code, _, err = predict([pca_run, *inputs, "--out", tmp_path / "out"], capsys)
        assert code == 2 and "could be read" in one_error_line(err), err
        assert "pickled" in err or "bad.png" in err
        assert not (tmp_path / "out").exists()


def test_fifos_are_skipped_and_linked_files_scored_once(pca_run, tmp_path, capsys):
    images = png_folder(tmp_path / "imgs", n=3)
    os.mkfifo(images / "x.png")  # opening it would block forever
    (images / "loop").symlink_to(images)  # a folder that links to itself
    (images / "again.png").symlink_to(images / "img0.png")
    code, out, err = predict([pca_run, images, f"{images}/**/*.png", "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    table = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert len(table) == 1 + 3  # img0 (also reached as again.png and through loop/), img1, img2
    assert "1 non-regular files skipped" in out


def test_ctrl_c_is_one_line_exit_130_and_removes_the_output(pca_run, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(predict_module, "batches", interrupted)
    code, _, err = predict([pca_run, png_folder(tmp_path / "imgs"), "--out", tmp_path / "out"], capsys)
    assert code == 130 and err.strip().count("\n") == 0 and "interrupted" in err
    assert not (tmp_path / "out").exists()


def test_compare_ctrl_c_is_one_line_exit_130_and_removes_its_claimed_out(pca_run, tmp_path, capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare_cli, "compare", interrupted)
    with pytest.raises(SystemExit) as stopped:
        compare_cli.main([str(pca_run), "--out", str(tmp_path / "cmp.md")])
    err = capsys.readouterr().err
    assert stopped.value.code == 130 and err.strip().count("\n") == 0 and "interrupted" in err
    assert not (tmp_path / "cmp.md").exists()


def test_the_loaded_detector_takes_what_the_command_takes(pca_run):
    trained = anomaly_bench.load_detector(pca_run)
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, size=(4, 8, 8), dtype=np.uint8)
    expected = trained.score(grey[..., None].astype(np.float32) / 255.0)
    for images in (grey, grey[..., None], grey.astype(np.float64), grey / 255.0, grey.astype(np.int32)):
        np.testing.assert_allclose(trained.score(images), expected, rtol=1e-5)
        assert trained.prepare(images).shape == (4, 8, 8, 1)
    rgba = np.repeat(grey[..., None], 4, axis=-1)
    assert trained.prepare(rgba).shape == (4, 8, 8, 1)
    with pytest.raises(BadDataError):
        trained.prepare(np.full((2, 8, 8), -1.0))


# ----------------------------------------------------------------------------- data
def test_a_huge_label_in_an_npz_is_refused_without_allocating(tmp_path):
    path = tiny_npz(tmp_path / "huge.npz", y_train=np.array([0, 1] * 29 + [0, 2**40], dtype=np.int64))
    tracemalloc.start()
    with pytest.raises(BadDataError, match=r"label 1099511627776 with 90 labels"):
        load_raw("npz", path=str(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20


def test_an_npy_header_promising_more_than_the_archive_holds_is_refused(tmp_path):
    path = tiny_npz(tmp_path / "a.npz")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["x_train.npy"] = members["x_train.npy"].replace(b"(60, 8, 8)", b"(6000000000, 8, 8)", 1)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    tracemalloc.start()
    with pytest.raises(BadDataError, match="header promises"):
        load_raw("npz", path=str(path))
    assert tracemalloc.get_traced_memory()[1] < 20 * 2**20
    tracemalloc.stop()


def test_class_names_that_are_numbers_win_over_indices():
    names = ["2", "10", "a"]
    assert class_indices("k", [2], names) == [0]
    assert class_indices("k", [10], names) == [1]
    assert class_indices("k", ["a", "10"], names) == [1, 2]
    with pytest.raises(ConfigError, match=r"contains 1; this dataset's classes are named 2, 10, a"):
        class_indices("k", [1], names)
    digits = [str(c) for c in range(10)]
    assert class_indices("k", [3, "4"], digits) == [3, 4]
    cifar_names = list(cifar.CLASS_NAMES)
    assert class_indices("k", [3], cifar_names) == class_indices("k", ["cat"], cifar_names) == [3]


def test_folder_classes_named_by_numbers_train_on_the_named_folder(tmp_path):
    from anomaly_bench.data.split import make_splits

    for name, value in (("2", 0), ("10", 120), ("a", 240)):
        png_folder(tmp_path / "data" / name, n=6)
        for p in (tmp_path / "data" / name).iterdir():
            Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(p)
    raw = load_raw("folder", path=str(tmp_path / "data"), test_fraction=0.5)
    splits = make_splits(raw, [2], "rest", val_fraction=0.0)
    assert splits.names(splits.normal_classes) == ["2"]
    assert set(np.unique(splits.train.images)) == {0}  # folder "2" holds the zero images


def test_an_mvtec_category_without_test_good_is_refused(tmp_path):
    root = tmp_path / "bottle"
    png_folder(root / "train" / "good")
    png_folder(root / "test" / "broken")
    with pytest.raises(BadDataError, match=r"test: lacks a good/ folder"):
        load_raw("mvtec", path=str(root))


def test_a_cifar_folder_missing_one_batch_names_it(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    record = np.zeros((2, cifar.RECORD), dtype=np.uint8)
    for name in (*cifar.TRAIN_BATCHES[:4], cifar.TEST_BATCH):
        record.tofile(folder / f"{name}.bin")
    with pytest.raises(BadDataError, match="lacks data_batch_5.bin"):
        load_raw("cifar10", path=str(folder))


def test_pillow_decompression_bomb_warnings_do_not_leak(tmp_path, monkeypatch, caplog):
    Image.fromarray(np.zeros((20, 20), dtype=np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with open_image(tmp_path / "big.png") as image:
            assert image.size == (20, 20)
    assert not caught
    assert "above Pillow's 300-pixel limit" in caplog.text


# ----------------------------------------------------------------------------- Optuna
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials=0 must be a whole number >= 1"),
        ("hydra.sweeper.n_jobs=-1", "hydra.sweeper.n_jobs=-1 must be"),
        ("model.n_components=int(interval(10,2))", "is not a valid search space: The `low` value"),
    ],
)
def test_bad_optuna_settings_are_refused_before_a_sweep_folder(tmp_path, override, expected):
    from anomaly_bench.cli import precheck

    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        precheck(["-m", "hparams_search=pca_optuna", override, f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert not (tmp_path / "sweep").exists()


def test_a_study_whose_trials_all_failed_names_no_best_setting(tmp_path):
    import pandas as pd
    import yaml
    from omegaconf import OmegaConf

    from anomaly_bench.sweep.optuna_checks import OPTUNA_SWEEPER, RESULTS_FILE, correct_results

    cfg = OmegaConf.create(
        {"optimized_metric": "val_auroc", "hydra": {"sweeper": {"_target_": OPTUNA_SWEEPER, "direction": "maximize"}}}
    )
    (tmp_path / RESULTS_FILE).write_text("name: optuna\nbest_params: {model.n_components: 7}\nbest_value: 0.0\n")
    failed = pd.DataFrame([{"job": 0, "status": "failed", "val_auroc": None, "overrides": "model.n_components=7"}])
    assert "every trial failed" in (correct_results(tmp_path, failed, cfg) or "")
    assert yaml.safe_load((tmp_path / RESULTS_FILE).read_text())["best_params"] is None
    mixed = pd.DataFrame(
        [
            {"job": 0, "status": "failed", "val_auroc": None, "overrides": "model.n_components=7"},
            {"job": 1, "status": "completed", "val_auroc": 0.75, "overrides": "model.n_components=3 x=1"},
        ]
    )
    (tmp_path / RESULTS_FILE).write_text("name: optuna\nbest_params: {model.n_components: 7}\nbest_value: 0.0\n")
    correct_results(tmp_path, mixed, cfg)
    written = yaml.safe_load((tmp_path / RESULTS_FILE).read_text())
    assert written["best_params"] == {"model.n_components": 3} and written["best_value"] == 0.75


def test_a_config_yaml_with_aliases_or_a_huge_metrics_json_is_a_corrupt_row(copy_of):
    from anomaly_bench.compare.load import load_run

    folder = copy_of()
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(12)
    )
    (folder / ".hydra" / "config.yaml").write_text(bomb)
    record = load_run(folder)
    assert record.status == "corrupt" and "aliases" in record.problem
    with open(folder / METRICS_FILE, "w") as handle:
        handle.truncate(17 * 2**20)
    assert "larger than 16 MB" in load_run(folder).problem
