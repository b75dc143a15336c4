"""benchmarks/one_class.py: which sweeps "--models all" plans, and the table it builds from run folders."""

import importlib.util
from pathlib import Path

import pytest
from conftest import CONF_DIR
from test_compare import config_with, write_run

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "one_class.py"


@pytest.fixture(scope="module")
def one_class():
    spec = importlib.util.spec_from_file_location("one_class", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_lines(one_class, tmp_path: Path, dataset: str) -> list[str]:
    """The lines of the table ``--table-only`` builds from the runs under ``tmp_path/runs``."""
    one_class.main(
        ["--dataset", dataset, "--table-only", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    )
    return (tmp_path / "results" / f"one_class_{dataset}.md").read_text().splitlines()


def cells(line: str) -> list[str]:
    """A markdown table row's cells, stripped (index 0 is the row name)."""
    return [c.strip() for c in line.strip("|").split("|")]


def test_all_is_every_model_but_the_supervised_one_and_anogan_on_a_budget(one_class):
    plan = {
        model: (label, overrides)
        for model, label, overrides in one_class.planned_runs(one_class.parse_args(["--models", "all"]))
    }
    assert set(plan) == {p.stem for p in (CONF_DIR / "model").glob("*.yaml")} - {"cnn_classifier"}
    args = one_class.parse_args(["--models", "all"])
    assert {model for model, _, _ in one_class.planned_runs(args, "cifar10")} == set(plan) | {"natural_images"}
    assert plan["knn"] == ("knn", []) and plan["ensemble"] == ("ensemble", [])
    label, overrides = plan["anogan"]
    assert label == "anogan-10_epochs-1000_test_images" and "dataset.max_test=1000" in overrides


def test_a_variant_gets_a_row_name_from_its_overrides(one_class):
    args = one_class.parse_args(["--dataset", "mnist", "--models", "knn", "--", "model.k=20"])
    assert args.dataset == ["mnist"] and one_class.planned_runs(args) == [("knn", "knn-k_20", ["model.k=20"])]
    with pytest.raises(SystemExit):
        one_class.parse_args(["--models", "all", "--", "model.k=3"])


def test_table_has_per_class_means_over_seeds_and_the_published_rows(one_class, tmp_path):
    runs = tmp_path / "runs" / "test" / "mnist" / "knn"
    for seed in (0, 1):
        for cls in range(10):
            write_run(
                runs / f"{seed * 10 + cls}_c{cls}_s{seed}",
                config_with(dataset__normal_classes=[cls], trainer__seed=seed, model__name="knn"),
                auroc=0.90 + 0.01 * cls + 0.02 * seed,
                total=3.0 + seed,
                seed=seed,
            )
    lines = table_lines(one_class, tmp_path, "mnist")
    (ours,) = [line for line in lines if line.startswith("| **knn**")]
    row = cells(ours)
    # class c: mean of 90+c and 92+c; the 10-class means of the seeds are 94.5 and 96.5 (std 1.41).
    assert row[1:11] == [f"{91 + c:.1f}" for c in range(10)]
    assert row[11:15] == ["**95.5**", "1.41", "2", "4"]
    assert any(line.startswith("| GeoTrans |") and "| 98.0 |" in line for line in lines)


def test_ensemble_members_get_their_own_rows_from_member_scores(one_class, tmp_path):
    runs = tmp_path / "runs" / "test" / "mnist" / "ensemble"
    for cls in range(10):
        folder = write_run(
            runs / f"{cls}_c{cls}",
            config_with(dataset__normal_classes=[cls], model__name="ensemble"),
            auroc=0.99,
            seed=0,
        )
        # member a ranks every anomaly above every normal image, member b three (normal, anomaly) pairs in four
        (folder / "member_scores.csv").write_text("label,z_a,z_b,ensemble\n0,0,0,0\n0,1,2,1\n1,2,1,2\n1,3,3,3\n")
    lines = table_lines(one_class, tmp_path, "mnist")
    rows = {cells(line)[0]: cells(line) for line in lines if line.startswith("| **ensemble")}
    assert set(rows) == {"**ensemble**", "**ensemble: a alone**", "**ensemble: b alone**"}
    assert rows["**ensemble: a alone**"][1:12] == ["100.0"] * 10 + ["**100.0**"]
    assert rows["**ensemble: b alone**"][11] == "**75.0**"


def test_table_of_a_folder_dataset_has_its_class_names_as_columns(one_class, tmp_path):
    runs = tmp_path / "runs" / "test" / "folder" / "pca"
    for cls, (name, index) in enumerate([("trouser", 9), ("bag", 1), ("t-shirt", 8)]):
        write_run(
            runs / f"{cls}_{name}",
            config_with(dataset__normal_classes=[name], model__name="pca"),
            auroc=0.8 + 0.05 * cls,
            seed=0,
            normal_classes=[index],
            data={"normal_class_names": [name]},
        )
    lines = table_lines(one_class, tmp_path, "folder")
    header = next(line for line in lines if line.startswith("| method"))
    assert cells(header)[1:5] == ["bag", "t-shirt", "trouser", "mean"]
    (ours,) = [line for line in lines if line.startswith("| **pca**")]
    assert cells(ours)[1:5] == ["85.0", "90.0", "80.0", "**85.0**"]


def test_cifar10_table_names_all_ten_classes_and_lists_the_missing_cells(one_class, tmp_path):
    runs = tmp_path / "runs" / "test" / "cifar10" / "knn"
    for index, name in [(0, "airplane"), (3, "cat")]:
        write_run(
            runs / f"{index}_{name}",
            config_with(dataset__normal_classes=[index], model__name="knn"),
            auroc=0.70 if name == "airplane" else 0.52,
            seed=0,
            normal_classes=[index],
            data={"normal_class_names": [name]},
        )
    lines = table_lines(one_class, tmp_path, "cifar10")
    header = next(line for line in lines if line.startswith("| method"))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert cells(header)[1:12] == [*names, "mean"]
    (ours,) = [line for line in lines if line.startswith("| **knn**")]
    assert cells(ours)[1:12] == ["70.0", "", "", "52.0", "", "", "", "", "", "", ""]  # no mean over two classes
    assert "- **knn**: automobile, bird, deer, dog, frog, horse, ship, truck" in lines
    (geotrans,) = [line for line in lines if line.startswith("| GeoTrans |")]
    assert cells(geotrans)[1:12] == [
        "74.7", "95.7", "78.1", "72.4", "87.8", "87.8", "83.4", "95.5", "93.3", "91.3", "86.0"
    ]  # fmt: skip
    assert sum(line.startswith("| CSI |") for line in lines) == 1
    assert "- **natural_images**: every class" in lines and "- **vae**: every class" in lines
    assert not any(line.startswith("- **knn**: every") for line in lines)


def test_cifar10_sweeps_run_on_the_jpeg_folders_and_presets_spell_out_the_protocol(one_class, monkeypatch, tmp_path):
    commands = []
    monkeypatch.setattr(one_class.benchmark_sweeps, "run_sweep", lambda command, folder: commands.append(command))
    monkeypatch.setenv("ANOMALY_BENCH_DATA", str(tmp_path))
    args = one_class.parse_args(["--dataset", "cifar10", "--models", "knn", "natural_images", "--classes", "airplane"])
    for model, label, overrides in one_class.planned_runs(args):
        one_class.run_sweep(model, label, overrides, "cifar10", args, tmp_path / "runs")
    knn, preset = commands
    assert knn[:2] == ["experiment=one_class_protocol", "model=knn"] and "dataset=folder" in knn
    assert f"dataset.path={tmp_path / 'cifar10'}" in knn and "dataset.normal_classes=[airplane]" in knn
    assert preset[:2] == ["experiment=natural_images", "dataset.anomaly_classes=rest"]
    assert not any(c.startswith("model=") for c in preset)
