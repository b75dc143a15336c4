"""anomaly-bench-compare on hand-written run folders (no training): exact tables, robustness, exit codes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from anomaly_bench.compare import cli
from anomaly_bench.compare.discover import discover
from anomaly_bench.compare.load import load_run

BASE_CONFIG = {
    "dataset": {"name": "mnist", "normal_classes": [0], "anomaly_classes": "rest", "max_test": None},
    "model": {"_target_": "x.Detector", "name": "deep_ae", "encoder": [{"units": 32}], "code_l1": 0.0},
    "threshold": {"name": "val_mean_std", "k": 2.0},
    "trainer": {"epochs": 1, "learning_rate": 0.001, "seed": 0},
}


def config_with(**dotted) -> dict:
    tree = json.loads(json.dumps(BASE_CONFIG))
    for key, value in dotted.items():
        group, name = key.split("__")
        tree[group][name] = value
    return tree


def write_run(
    folder: Path,
    config: dict | None,
    auroc: float | None = 0.9,
    status: str = "completed",
    scores: bool = True,
    histogram: bool = False,
    total: float = 2.0,
    **metrics,
) -> Path:
    """A run folder as anomaly-bench writes it: metrics.json, .hydra/config.yaml, scores.csv."""
    folder.mkdir(parents=True)
    if config is not None:
        (folder / ".hydra").mkdir()
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    payload = {"status": status}
    if status == "completed":
        payload.update(
            auroc=auroc,
            auprc=0.5,
            precision=0.6,
            recall=0.7,
            f1=0.65,
            threshold=0.1,
            threshold_rule="val_mean_std",
            accuracy=0.8,
            timings={"fit": 1.0, "total": total},
        )
    if status == "failed":
        payload["error"] = "RuntimeError: boom\nsecond line"
        (folder / "error.txt").write_text("Traceback ...\nRuntimeError: boom\n")
    payload.update(metrics)
    (folder / "metrics.json").write_text(json.dumps(payload))
    if scores:
        rng = np.random.default_rng(0)
        labels = np.r_[np.zeros(20, int), np.ones(30, int)]
        pd.DataFrame(
            {
                "index": np.arange(50),
                "label": labels,
                "class": labels * 3,
                "score": rng.normal(labels * (auroc or 0.5) * 2, 1.0),
                "flagged": labels,
            }
        ).to_csv(folder / "scores.csv", index=False)
    if histogram:
        from PIL import Image

        Image.new("RGB", (60, 40), (200, 30, 30)).save(folder / "score_histogram.png")
    return folder


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def csv_table(argv: list[str], capsys) -> pd.DataFrame:
    code, out, err = run_cli([*argv, "--format", "csv"], capsys)
    assert code == 0, err
    return pd.read_csv(StringIO(out), dtype={"dataset.normal_classes": str})


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Two models x seeds, like a multirun folder (job numbers sort numerically)."""
    root = tmp_path / "multiruns" / "2024-01-01_10-00-00"
    write_run(root / "0_model=deep_ae,seed=0", config_with(trainer__seed=0), auroc=0.8, total=2.0)
    write_run(root / "1_model=deep_ae,seed=1", config_with(trainer__seed=1), auroc=0.9, total=4.0)
    conv = config_with(model__name="conv_ae", model__encoder=[{"filters": 16}], model___target_="x.Detector")
    write_run(root / "2_model=conv_ae,seed=0", conv, auroc=0.5, total=1.0)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


# ---------------------------------------------------------------- discovery and loading


def test_discover_recurses_stops_at_run_folders_and_orders_jobs_numerically(tmp_path):
    for job in (10, 2, 1):
        write_run(tmp_path / "sweep" / f"{job}_x", BASE_CONFIG)
    (tmp_path / "sweep" / "2_x" / "samples").mkdir()  # inside a run folder: never searched
    found = discover([str(tmp_path / "sweep")])
    assert [p.name for p in found.runs] == ["1_x", "2_x", "10_x"]
    assert found.foreign == []


def test_discover_globs_literal_brackets_metrics_file_and_dedup(tmp_path):
    a = write_run(tmp_path / "0_dataset.normal_classes=[1]", BASE_CONFIG)
    b = write_run(tmp_path / "other" / "run", BASE_CONFIG)
    found = discover([str(a), str(tmp_path / "o*"), str(b / "metrics.json"), str(tmp_path)])
    assert (found.runs, found.foreign) == ([a, b], [])
    assert discover([str(tmp_path / "nothing*")]).foreign[0][1] == "no such file or folder"


def test_load_reads_flattened_config_and_metrics(tmp_path):
    record = load_run(write_run(tmp_path / "r", BASE_CONFIG))
    assert record.status == "completed" and record.problem is None
    assert record.config["model.name"] == "deep_ae"
    assert record.config["dataset.normal_classes"] == [0]
    assert record.metrics["timings.total"] == 2.0


def test_detector_facts_of_flat_and_nested_metrics_share_one_column(tmp_path, capsys):
    # Runs made before detector facts were nested kept them beside the pipeline's own keys.
    write_run(tmp_path / "a_flat", BASE_CONFIG, n_params=1200, supervision="unsupervised", threshold_k=2.0)
    write_run(tmp_path / "b_nested", BASE_CONFIG, threshold_k=2.0, detector={"n_params": 3400, "threshold": 7})
    flat, nested = load_run(tmp_path / "a_flat"), load_run(tmp_path / "b_nested")
    assert flat.status == nested.status == "completed"
    assert flat.metrics["detector.n_params"] == 1200 and flat.metrics["detector.supervision"] == "unsupervised"
    # The pipeline's keys stay the pipeline's: never read as detector facts.
    assert not {"detector.auroc", "detector.threshold_k", "detector.timings.total"} & set(flat.metrics)
    assert nested.metrics["threshold"] == 0.1 and nested.metrics["detector.threshold"] == 7
    table = csv_table([tmp_path, "--metrics", "auroc,detector.n_params"], capsys)
    assert list(table["detector.n_params"]) == [1200, 3400]


@pytest.mark.parametrize(
    "content, status, reason",
    [
        ("{not json", "corrupt", "not valid JSON"),
        ("[1, 2]", "corrupt", "not a JSON object"),
        (
            '{"status": "completed", "auroc": 0.9}',
            "corrupt",
            "lacks auprc, precision, recall, f1, threshold, threshold_rule",
        ),
        (
            '{"status": "completed", "auroc": "high", "auprc": 1, "precision": 1, "recall": 1, "f1": 1, '
            '"threshold": 1, "threshold_rule": "x"}',
            "corrupt",
            "non-numeric auroc",
        ),
        ('{"status": "weird"}', "corrupt", "unknown status 'weird'"),
        ('{"status": "running"}', "running", "unfinished"),
    ],
)
def test_load_turns_bad_metrics_into_a_status(tmp_path, content, status, reason):
    folder = write_run(tmp_path / "r", BASE_CONFIG, scores=False)
    (folder / "metrics.json").write_text(content)
    record = load_run(folder)
    assert (record.status, record.ok) == (status, False)
    assert reason in record.problem


def test_load_failed_and_never_started(tmp_path):
    failed = load_run(write_run(tmp_path / "f", BASE_CONFIG, status="failed"))
    assert failed.status == "failed"
    assert failed.problem == "RuntimeError: boom; traceback in error.txt"
    hydra_only = tmp_path / "h" / ".hydra"
    hydra_only.mkdir(parents=True)
    (hydra_only / "config.yaml").write_text(yaml.safe_dump(BASE_CONFIG))
    assert load_run(tmp_path / "h").status == "no_metrics"


@pytest.mark.parametrize("decimals", [None, 1])
def test_roc_points_match_scikit_learn(decimals):
    from sklearn.metrics import roc_auc_score, roc_curve

    from anomaly_bench.compare.figures import roc_points

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 400)
    scores = rng.normal(labels, 1.0)
    scores = scores if decimals is None else scores.round(decimals)  # ties form one step
    fpr, tpr, auroc = roc_points(labels, scores)
    expected_fpr, expected_tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, expected_fpr)
    np.testing.assert_allclose(tpr, expected_tpr)
    assert auroc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


# ---------------------------------------------------------------- the run table


def test_only_differing_keys_are_columns_and_name_implied_keys_fold(sweep, capsys):
    table = csv_table([sweep], capsys)
    # model.encoder and model._target_ follow model.name; dataset.* and threshold.* never vary.
    assert list(table.columns) == [
        "run",
        "model.name",
        "trainer.seed",
        "status",
        "auroc",
        "auprc",
        "f1",
        "precision",
        "recall",
        "threshold_rule",
        "duration_s",
    ]
    assert list(table["run"]) == ["0_model=deep_ae,seed=0", "1_model=deep_ae,seed=1", "2_model=conv_ae,seed=0"]
    assert list(table["auroc"]) == [0.8, 0.9, 0.5]
    assert list(table["duration_s"]) == [2.0, 4.0, 1.0]


def test_a_key_varying_within_one_model_name_is_kept(tmp_path, capsys):
    write_run(tmp_path / "a", config_with(model__code_l1=0.0))
    write_run(tmp_path / "b", config_with(model__code_l1=1e-6))
    write_run(tmp_path / "c", config_with(model__name="conv_ae", model__code_l1=0.0))
    table = csv_table([tmp_path], capsys)
    assert list(table.columns[:3]) == ["run", "model.name", "model.code_l1"]
    assert list(table["model.code_l1"]) == [0.0, 1e-6, 0.0]


EPOCH_SETTINGS = ["trainer.epochs", "trainer.batch_size", "trainer.learning_rate", "trainer.early_stopping"]


def test_settings_a_detector_does_not_use_are_no_difference(tmp_path, capsys):
    """PCA and knn declare the epoch settings unused: their trainer.epochs is no column, and where
    trained runs differ in it, their cells say so and grouping them mixes nothing."""
    for name, epochs in (("pca", 20), ("knn", 5)):
        write_run(
            tmp_path / name,
            config_with(model__name=name, trainer__epochs=epochs),
            detector={"unused_settings": EPOCH_SETTINGS},
        )
    write_run(
        tmp_path / "conv_ae", config_with(model__name="conv_ae", trainer__epochs=2), detector={"unused_settings": []}
    )
    table = csv_table([tmp_path], capsys)
    assert list(table.columns[:3]) == ["run", "model.name", "status"]
    write_run(
        tmp_path / "conv_ae_long",
        config_with(model__name="conv_ae", trainer__epochs=9),
        detector={"unused_settings": []},
    )
    write_run(
        tmp_path / "pca_2",
        config_with(model__name="pca", trainer__epochs=1),
        detector={"unused_settings": EPOCH_SETTINGS},
    )
    table = csv_table([tmp_path], capsys).set_index("run")
    assert table["trainer.epochs"].to_dict() == {
        "conv_ae": "2",
        "conv_ae_long": "9",
        "knn": "not used",
        "pca": "not used",
        "pca_2": "not used",
    }
    code, out, err = run_cli([tmp_path, "--group-by", "model.name", "--format", "csv"], capsys)
    assert code == 0 and "mixed settings" in out and err.count("warning") == 1
    mixed = pd.read_csv(StringIO(out)).set_index("model.name")["mixed settings"]
    assert mixed["conv_ae"] == "trainer.epochs" and pd.isna(mixed["pca"])


def test_metrics_option_selects_dotted_metrics(sweep, capsys):
    table = csv_table([sweep, "--metrics", "auroc,timings.fit"], capsys)
    assert list(table.columns) == ["run", "model.name", "trainer.seed", "status", "auroc", "timings.fit", "duration_s"]
    code, _, err = run_cli([sweep, "--metrics", "auroc,nope"], capsys)
    assert code == 2 and err.count("\n") == 1 and "nope" in err


def test_sort_metric_descending_config_key_ascending_and_reverse(sweep, capsys):
    assert list(csv_table([sweep, "--sort", "auroc"], capsys)["auroc"]) == [0.9, 0.8, 0.5]
    assert list(csv_table([sweep, "--sort", "auroc", "--reverse"], capsys)["auroc"]) == [0.5, 0.8, 0.9]
    assert list(csv_table([sweep, "--sort", "model.name"], capsys)["model.name"]) == ["conv_ae", "deep_ae", "deep_ae"]
    assert list(csv_table([sweep, "--sort", "duration_s"], capsys)["duration_s"]) == [1.0, 2.0, 4.0]
    code, _, err = run_cli([sweep, "--sort", "bogus"], capsys)
    assert code == 2 and err.count("\n") == 1


def test_sort_puts_runs_without_the_metric_last(sweep, capsys):
    write_run(sweep / "3_failed", config_with(trainer__seed=5), status="failed")
    table = csv_table([sweep, "--sort", "auroc"], capsys)
    assert list(table["status"]) == ["completed"] * 3 + ["failed"]
    assert math.isnan(table["auroc"].iloc[-1])


# ---------------------------------------------------------------- grouping


def test_group_by_gives_mean_sample_std_and_count_over_completed_runs(sweep, capsys):
    write_run(sweep / "3_failed", config_with(model__name="conv_ae", model__encoder=[{"filters": 16}]), status="failed")
    table = csv_table([sweep, "--group-by", "model.name", "--metrics", "auroc,threshold_rule"], capsys)
    assert list(table.columns) == [
        "model.name",
        "n",
        "status",
        "auroc_mean",
        "auroc_std",
        "threshold_rule",
        "duration_s_mean",
        "duration_s_std",
    ]
    deep = table.set_index("model.name").loc["deep_ae"]
    assert deep["n"] == 2 and deep["status"] == "2 completed"
    assert deep["auroc_mean"] == pytest.approx(0.85)
    assert deep["auroc_std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert deep["duration_s_mean"] == pytest.approx(3.0)
    conv = table.set_index("model.name").loc["conv_ae"]
    assert conv["n"] == 1 and conv["status"] == "1 completed, 1 failed"
    assert conv["auroc_mean"] == 0.5 and math.isnan(conv["auroc_std"])


def test_group_by_markdown_shows_mean_plus_minus_std(sweep, capsys):
    code, out, _ = run_cli([sweep, "--group-by", "model.name", "--sort", "auroc", "--metrics", "auroc"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[2] == "| model.name | n | status | auroc | duration_s |"
    assert lines[4] == "| deep_ae | 2 | 2 completed | 0.8500 ± 0.0707 | 3.0 ± 1.4 |"
    assert lines[5] == "| conv_ae | 1 | 1 completed | 0.5000 | 1.0 |"


def test_group_by_unknown_key_is_exit_2(sweep, capsys):
    code, _, err = run_cli([sweep, "--group-by", "model.nmae"], capsys)
    assert code == 2 and err.count("\n") == 1 and "model.nmae" in err


# ---------------------------------------------------------------- filtering


def test_filters_match_typed_values_and_repeat_as_or(sweep, capsys):
    assert list(csv_table([sweep, "--filter", "model.name=deep_ae"], capsys)["auroc"]) == [0.8, 0.9]
    assert list(csv_table([sweep, "--filter", "trainer.seed=0"], capsys)["auroc"]) == [0.8, 0.5]
    both = csv_table([sweep, "--filter", "trainer.seed=0", "--filter", "model.name=deep_ae"], capsys)
    assert list(both["auroc"]) == [0.8]
    either = csv_table([sweep, "--filter", "trainer.seed=1", "--filter", "trainer.seed=0"], capsys)
    assert len(either) == 3
    assert len(csv_table([sweep, "--filter", "trainer.learning_rate=1e-3"], capsys)) == 3
    assert len(csv_table([sweep, "--filter", "dataset.normal_classes=[ 0 ]"], capsys)) == 3
    assert len(csv_table([sweep, "--filter", "dataset.max_test=null"], capsys)) == 3
    assert list(csv_table([sweep, "--filter", "auroc=0.5"], capsys)["run"]) == ["2_model=conv_ae,seed=0"]


@pytest.mark.parametrize("bad", ["model.name", "=x", " =x"])
def test_malformed_filter_is_one_line_exit_2(sweep, capsys, bad):
    code, out, err = run_cli([sweep, "--filter", bad], capsys)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "KEY=VALUE" in err


def test_filter_on_unknown_key_is_exit_2_and_no_match_is_exit_1(sweep, capsys):
    code, _, err = run_cli([sweep, "--filter", "model.nmae=x"], capsys)
    assert code == 2 and "model.nmae" in err
    code, _, err = run_cli([sweep, "--filter", "model.name=vae"], capsys)
    assert code == 1 and "no run matches" in err


# ---------------------------------------------------------------- formats


def test_json_format_keeps_numbers_and_lists_problems(sweep, capsys):
    (sweep / "junk").mkdir()
    (sweep / "junk" / "notes.txt").write_text("x")
    code, out, _ = run_cli([sweep, "--format", "json", "--metrics", "auroc"], capsys)
    payload = json.loads(out)
    assert code == 0
    assert [row["auroc"] for row in payload["table"]] == [0.8, 0.9, 0.5]
    assert payload["table"][0]["trainer.seed"] == "0"
    assert payload["problems"] == [
        {
            "path": str(sweep / "junk"),
            "status": "foreign",
            "reason": "not a run folder (no metrics.json or .hydra/config.yaml)",
        }
    ]


def test_unknown_format_and_bad_counts_are_one_line_exit_2(sweep, capsys):
    for argv in (["--format", "xml"], ["--max-curves", "0"], ["--metrics", "auroc,,f1"]):
        code, out, err = run_cli([sweep, *argv], capsys)
        assert (code, out) == (2, ""), argv
        assert err.count("\n") == 1 and err.startswith("anomaly-bench-compare: error:"), err


def test_out_writes_the_file_and_nothing_to_stdout(sweep, tmp_path, capsys):
    target = tmp_path / "table.md"
    code, out, err = run_cli([sweep, "--out", target], capsys)
    assert (code, out) == (0, "")
    assert "| run | model.name | trainer.seed |" in target.read_text()
    assert f"wrote {target}" in err


def test_html_report_embeds_table_bars_roc_and_thumbnails(sweep, tmp_path, capsys):
    for folder in sweep.iterdir():
        if folder.is_dir():
            from PIL import Image

            Image.new("RGB", (60, 40), (0, 0, 200)).save(folder / "score_histogram.png")
    target = tmp_path / "report.html"
    code, _, _ = run_cli([sweep, "--group-by", "model.name", "--format", "html", "--out", target], capsys)
    text = target.read_text()
    assert code == 0
    assert text.startswith("<!DOCTYPE html>") and "http" not in text.replace("http-equiv", "")
    assert text.count("<table") == 2 and text.count('<table class="wide">') == 1  # grouped table + every run
    assert text.count('src="data:image/png;base64,') == 2 + 3  # bars, ROC, three thumbnails
    assert "<h2>ROC curves</h2>" in text and "0.8500 ± 0.0707" in text


def test_html_limits_curves_bars_and_thumbnails(sweep, tmp_path, capsys):
    for folder in sweep.iterdir():
        if folder.is_dir():
            from PIL import Image

            Image.new("RGB", (60, 40), (0, 0, 200)).save(folder / "score_histogram.png")
    target = tmp_path / "report.html"
    run_cli([sweep, "--format", "html", "--out", target, "--max-curves", "2", "--max-thumbnails", "1"], capsys)
    text = target.read_text()
    assert "auroc per run (the best 2 of 3 runs)" in text
    assert "the best 2 of 3 runs by auroc, recomputed from scores.csv" in text
    assert "showing the first 1 of 3 runs in table order (--max-thumbnails)" in text
    assert text.count('src="data:image/png;base64,') == 2 + 1
    grouped = tmp_path / "grouped.html"  # a file is never overwritten
    run_cli([sweep, "--group-by", "model.name", "--format", "html", "--out", grouped, "--max-curves", "2"], capsys)
    assert "3 runs, recomputed from each run&#x27;s scores.csv; one curve per group" in grouped.read_text()


def test_html_escapes_folder_names_and_config_values(tmp_path, capsys):
    evil = "<script>alert(1)</script>"
    write_run(tmp_path / evil.replace("/", "_"), config_with(model__name=evil), histogram=True)
    write_run(tmp_path / "plain$x$", config_with(model__name="ok$\\alpha$"), histogram=True)
    (tmp_path / "<i>stray").mkdir()
    (tmp_path / "<i>stray" / "file").write_text("")
    target = tmp_path.parent / f"{tmp_path.name}-report.html"
    code, _, _ = run_cli([tmp_path, "--group-by", "model.name", "--format", "html", "--out", target], capsys)
    text = target.read_text()
    assert code == 0
    assert "<script>" not in text
    assert "<i>stray" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the config value
    assert "&lt;script&gt;alert(1)&lt;_script&gt;" in text  # the folder name
    assert "&lt;i&gt;stray" in text


# ---------------------------------------------------------------- robustness and read-only


@pytest.fixture
def messy(sweep: Path) -> Path:
    """A sweep folder holding a corrupt, an unfinished, a failed and a foreign folder beside good runs."""
    write_run(sweep / "3_corrupt", config_with(trainer__seed=3), scores=False)
    (sweep / "3_corrupt" / "metrics.json").write_text('{"status": "completed", "auroc": ')
    write_run(sweep / "4_running", config_with(trainer__seed=4), status="running", scores=False)
    write_run(sweep / "5_failed", config_with(trainer__seed=5), status="failed", scores=False)
    (sweep / "not_a_run" / "deeper").mkdir(parents=True)
    (sweep / "not_a_run" / "deeper" / "picture.png").write_bytes(b"\x89PNG")
    return sweep


def test_problem_folders_are_listed_with_status_and_never_crash(messy, capsys):
    code, out, err = run_cli([messy, "--sort", "auroc"], capsys)
    assert code == 0
    table_lines = [line for line in out.splitlines() if line.startswith("| ")]
    statuses = [line.split(" | ")[3] for line in table_lines[1:]]
    assert statuses == ["completed"] * 3 + ["corrupt", "running", "failed"]
    assert "Not counted (4):" in out
    listed = out.split("Not counted (4):")[1].splitlines()[1:]
    assert listed == [
        f"- corrupt: {messy / '3_corrupt'}: metrics.json is not valid JSON (JSONDecodeError)",
        f"- running: {messy / '4_running'}: unfinished: metrics.json says running (still running, or killed mid-way)",
        f"- failed: {messy / '5_failed'}: RuntimeError: boom; traceback in error.txt",
        f"- foreign: {messy / 'not_a_run' / 'deeper'}: not a run folder (no metrics.json or .hydra/config.yaml)",
    ]
    assert err == (
        "anomaly-bench-compare: warning: 4 folders are not completed results (1 corrupt, 1 failed, "
        "1 foreign, 1 running); the output lists them under 'Not counted'\n"
    )


def test_csv_keeps_its_table_pure_and_warns_per_folder(messy, capsys):
    code, out, err = run_cli([messy, "--format", "csv"], capsys)
    assert code == 0 and "Not counted" not in out and len(out.splitlines()) == 1 + 6
    for status, name in [
        ("corrupt", "3_corrupt"),
        ("running", "4_running"),
        ("failed", "5_failed"),
        ("foreign", "deeper"),
    ]:
        assert any(
            line.startswith(f"anomaly-bench-compare: warning: {status}: ") and name in line for line in err.splitlines()
        ), (status, err)


def test_problem_folders_do_not_enter_group_statistics(messy, capsys):
    table = csv_table([messy, "--group-by", "model.name"], capsys).set_index("model.name")
    assert table.loc["deep_ae", "n"] == 2
    assert table.loc["deep_ae", "status"] == "2 completed, 1 corrupt, 1 failed, 1 running"
    assert table.loc["deep_ae", "auroc_mean"] == pytest.approx(0.85)


def snapshot(root: Path) -> dict[str, tuple[float, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*"))}


def test_compare_never_writes_into_the_folders_it_reads(messy, tmp_path, capsys):
    for folder in messy.iterdir():
        if folder.is_dir():
            (folder / "score_histogram.png").touch()
    before = snapshot(messy)
    for fmt in ("md", "csv", "json", "html"):
        code, _, _ = run_cli(
            [messy, "--group-by", "model.name", "--format", fmt, "--out", tmp_path / f"r.{fmt}"], capsys
        )
        assert code == 0
    assert snapshot(messy) == before


@pytest.mark.parametrize("make", ["empty", "missing", "foreign_only"])
def test_no_run_folder_is_a_clear_message_and_exit_1(tmp_path, capsys, make):
    target = tmp_path / "x"
    if make != "missing":
        target.mkdir()
    if make == "foreign_only":
        (target / "sub").mkdir()
        (target / "sub" / "notes.txt").write_text("")
    code, out, err = run_cli([target], capsys)
    assert (code, out) == (1, "")
    assert "no run folder (a folder with metrics.json or .hydra/config.yaml) found under" in err.splitlines()[-1]


# ---------------------------------------------------------------- one-class protocol


@pytest.fixture
def protocol(tmp_path: Path) -> Path:
    """Two methods x classes 0-9 x two seeds; AUROC = 0.5 + class/100 (+0.1 for conv, +0.02 for seed 1)."""
    for model, bonus in (("deep_ae", 0.0), ("conv_ae", 0.1)):
        for cls in range(10):
            for seed in (0, 1):
                config = config_with(model__name=model, dataset__normal_classes=[cls], trainer__seed=seed)
                write_run(
                    tmp_path / f"{model}_{cls}_{seed}",
                    config,
                    auroc=0.5 + cls / 100 + bonus + 0.02 * seed,
                    scores=(cls == 0),
                )
    return tmp_path


def test_group_by_model_on_one_class_runs_gives_the_per_class_table(protocol, capsys):
    table = csv_table([protocol, "--group-by", "model.name"], capsys)
    assert list(table.columns) == ["model.name", *[str(c) for c in range(10)], "mean", "n"]
    assert list(table["model.name"]) == ["conv_ae", "deep_ae"]
    deep = table.set_index("model.name").loc["deep_ae"]
    assert [deep[str(c)] for c in range(10)] == pytest.approx([51.0 + c for c in range(10)])
    assert deep["mean"] == pytest.approx(55.5) and deep["n"] == 20
    _code, out, _ = run_cli([protocol, "--group-by", "model.name", "--sort", "mean"], capsys)
    assert out.splitlines()[2] == "| model.name | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | mean | n |"
    assert out.splitlines()[4] == (
        "| conv_ae | 61.0 | 62.0 | 63.0 | 64.0 | 65.0 | 66.0 | 67.0 | 68.0 | 69.0 | 70.0 | 65.5 | 20 |"
    )


def test_per_class_row_missing_a_class_has_no_mean(protocol, capsys):
    for seed in (0, 1):
        (protocol / f"deep_ae_4_{seed}" / "metrics.json").write_text('{"status": "failed", "error": "x"}')
    table = csv_table([protocol, "--group-by", "model.name"], capsys).set_index("model.name")
    assert math.isnan(table.loc["deep_ae", "4"]) and math.isnan(table.loc["deep_ae", "mean"])
    assert table.loc["deep_ae", "n"] == 18 and table.loc["conv_ae", "mean"] == pytest.approx(65.5)


def test_per_class_switches(protocol, tmp_path, capsys):
    plain = csv_table([protocol, "--group-by", "model.name", "--no-per-class"], capsys)
    assert "auroc_mean" in plain.columns and list(plain["n"]) == [20, 20]
    forced = csv_table([protocol, "--per-class", "--metrics", "f1"], capsys)
    assert list(forced.columns[:2]) == ["model.name", "0"] and forced["0"].iloc[0] == pytest.approx(65.0)
    code, _, err = run_cli([protocol, "--per-class", "--group-by", "dataset.normal_classes"], capsys)
    assert code == 2 and "drop it from --group-by" in err
    by_class = csv_table([protocol, "--group-by", "dataset.normal_classes"], capsys)
    assert "auroc_mean" in by_class.columns and len(by_class) == 10
    other = tmp_path.parent / f"{tmp_path.name}-other"
    write_run(other / "a", config_with(dataset__normal_classes=[1, 2]))
    write_run(other / "b", config_with(dataset__normal_classes=[3]))
    code, _, err = run_cli([other, "--per-class"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--per-class" in err
    assert "auroc_mean" in csv_table([other, "--group-by", "model.name"], capsys).columns
    # One normal class but a single anomaly class (sandal vs boot) is not the one-class protocol...
    pairs = tmp_path.parent / f"{tmp_path.name}-pairs"
    write_run(pairs / "a", config_with(dataset__normal_classes=[5], dataset__anomaly_classes=[7]))
    write_run(pairs / "b", config_with(dataset__normal_classes=[7], dataset__anomaly_classes=[5]))
    assert "auroc_mean" in csv_table([pairs, "--group-by", "model.name"], capsys).columns
    # ... while listing every other class explicitly is.
    explicit = tmp_path.parent / f"{tmp_path.name}-explicit"
    for cls in (3, 4):
        rest = [c for c in range(10) if c != cls]
        write_run(explicit / str(cls), config_with(dataset__normal_classes=[cls], dataset__anomaly_classes=rest))
    assert list(csv_table([explicit, "--group-by", "model.name"], capsys).columns) == [
        "model.name",
        "3",
        "4",
        "mean",
        "n",
    ]


def test_per_class_html_report(protocol, tmp_path, capsys):
    target = tmp_path.parent / "protocol.html"
    code, _, _ = run_cli([protocol, "--group-by", "model.name", "--format", "html", "--out", target], capsys)
    text = target.read_text()
    # The markdown table keeps the published % layout; the report shows fractions throughout and says so.
    assert code == 0 and "<th>mean</th>" in text and '<td class="num">0.6550</td>' in text
    assert "All metrics are fractions in [0, 1]" in text
    assert text.count('src="data:image/png;base64,') == 2  # per-class bars + ROC of the runs with scores.csv


# ---------------------------------------------------------------- the console script


def test_console_script_end_to_end(messy, tmp_path):
    script = Path(sys.executable).with_name("anomaly-bench-compare")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "anomaly_bench.compare.cli"]
    target = tmp_path / "report.html"
    done = subprocess.run(
        [*command, str(messy), "--group-by", "model.name", "--format", "html", "--out", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "<h2>ROC curves</h2>" in target.read_text()
    assert done.stderr.count("warning:") == 1 and "4 folders are not completed results" in done.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([*command, str(empty)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (1, "")
    assert "no run folder" in done.stderr


@pytest.mark.parametrize("fmt", ["md", "csv", "json", "html"])
def test_a_hostile_folder_is_corrupt_and_the_good_runs_still_print(sweep, tmp_path, capsys, fmt):
    deep = write_run(sweep / "7_deep", config_with(trainer__seed=7), scores=False)
    (deep / "metrics.json").write_text("[" * 200_000 + "]" * 200_000)
    huge = write_run(sweep / "8_huge", config_with(trainer__seed=8), scores=False)
    (huge / "metrics.json").write_text(
        (huge / "metrics.json").read_text().replace('"auroc": 0.9', '"auroc": 1' + "0" * 400)
    )
    write_run(sweep / os.fsdecode(b"9_latin1_\xe9t\xe9"), config_with(trainer__seed=9), auroc=0.7)  # not UTF-8
    code, _out, err = run_cli([sweep, "--format", fmt, "--out", tmp_path / f"r.{fmt}"], capsys)
    assert code == 0, err
    raw = (tmp_path / f"r.{fmt}").read_bytes()
    escaped = b"9_latin1_\\udce9t\\udce9"  # JSON escapes the undecodable bytes
    assert (escaped if fmt == "json" else b"9_latin1_\xe9t\xe9") in raw  # the folder's own bytes, whatever the locale
    text = raw.decode("utf-8", "replace").replace("<wbr>", "")  # the HTML table's line-break hints
    assert "2_model=conv_ae,seed=0" in text and "7_deep" in text and "8_huge" in text
    if fmt == "csv":
        assert "corrupt: " in err and "unreadable (RecursionError" in err and "unreadable (OverflowError" in err
    else:
        assert "unreadable (RecursionError" in text


def test_out_inside_a_folder_being_read_is_refused(sweep, tmp_path, capsys):
    result = sweep / "0_model=deep_ae,seed=0" / "metrics.json"
    before = result.read_bytes()
    (sweep / "summary.csv").write_text("job,status\n")
    for out in (result, result.parent / "report.md", sweep / "2_model=conv_ae,seed=0", sweep / "summary.csv"):
        code, _stdout, err = run_cli([sweep, "--out", out], capsys)
        assert code == 2 and err.startswith("anomaly-bench-compare: error: --out ") and " lies in " in err, err
        assert len(err.splitlines()) == 1
    code, _, err = run_cli([sweep, "--out", sweep / "report.md"], capsys)  # a sweep folder is a result too
    assert code == 2 and "a sweep folder" in err
    assert result.read_bytes() == before and not (result.parent / "report.md").exists()
    assert (sweep / "summary.csv").read_text() == "job,status\n" and not (sweep / "report.md").exists()
    code, _, _ = run_cli([sweep, "--out", tmp_path / "report.md"], capsys)
    assert code == 0 and (tmp_path / "report.md").is_file()
    code, _, err = run_cli([sweep, "--out", tmp_path / "report.md"], capsys)  # claimed: never overwritten
    assert code == 2 and "exists" in err
