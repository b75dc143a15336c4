"""The command line as a user types it: subprocesses, exit codes, folders left behind.

Bad input and a run failing mid-training call the command's ``main`` in this process with its
argv (one bad-input case also runs as a subprocess); the rest start the command as a user does."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY, needs_mnist

from anomaly_bench.native_stderr import is_native_log_line

TESTS = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "anomaly_bench"]


def anomaly_bench(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    full_env.pop("HYDRA_FULL_ERROR", None)
    full_env.update(env or {})
    return subprocess.run([*CLI, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_help_lists_groups_and_examples(tmp_path):
    result = anomaly_bench("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "model: " in result.stdout and "conv_ae" in result.stdout and "Examples:" in result.stdout


def test_cfg_job_prints_the_composed_config(tmp_path):
    result = anomaly_bench("--cfg", "job", "model=deep_ae", cwd=tmp_path)
    assert result.returncode == 0 and "name: deep_ae" in result.stdout
    assert not (tmp_path / "outputs").exists()


@needs_mnist
@pytest.mark.slow
def test_single_run_and_concurrent_runs_get_unique_folders(tmp_path):
    args = [*TINY, "model=undercomplete_ae", "paths.output_dir=out"]
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    procs = [
        subprocess.Popen(
            [*CLI, *args, f"trainer.seed={seed}"],
            cwd=tmp_path,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (0, 1)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][1][-2000:]
    folders = sorted((tmp_path / "out" / "runs").glob("*/*"))
    assert len(folders) == 2
    for folder in folders:
        assert re.fullmatch(r"\d{2}-\d{2}-\d{2}-\d{6}_mnist-undercomplete_ae-n0", folder.name)
        assert json.loads((folder / "metrics.json").read_text())["status"] == "completed"
        log = (folder / "run.log").read_text()
        assert "stage fit" in log and "epoch 1/1" in log and "\r" not in log
    assert "epoch 1/1" in outputs[0][0] + outputs[0][1]
    for _, stderr in outputs:  # no TensorFlow C++ start-up line (absl, oneDNN, cuInit) reaches the terminal
        assert not [line for line in stderr.splitlines() if is_native_log_line(line.encode())], stderr


BAD_INPUTS = [
    (["model=foo"], "model=foo is not a known option; allowed: "),
    (["dataset=cifar"], "dataset=cifar is not a known option"),
    (["dataset.normal_classes=[12]"], "dataset.normal_classes=[12] contains [12]; allowed classes are 0-9"),
    (["dataset.normal_classes=[1]", "dataset.anomaly_classes=[1,2]"], "overlaps dataset.normal_classes=[1]"),
    (["dataset.normal_classes=[]"], "must be a non-empty list"),
    (["trainer.epochs=0"], "trainer.epochs=0 must be a positive integer"),
    (["trainer.batch_size=-1"], "trainer.batch_size=-1 must be a positive integer"),
    (["model._target_=nowhere.Model"], "model._target_='nowhere.Model' does not import"),
    (["trainer.epoch=3"], "trainer.epoch"),
    (["hparams_search=pca_optuna"], "only under --multirun; add -m: anomaly-bench -m hparams_search=pca_optuna"),
    (["hydra/sweeper=optuna"], "hydra/sweeper=optuna sweeps only under --multirun; add -m"),
]


@pytest.mark.parametrize("overrides, message", BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_and_no_folder(tmp_path, overrides, message, monkeypatch, cli_main):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli_main(*overrides, "paths.output_dir=out")
    assert code == 2, err
    assert err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err
    assert files_under(tmp_path / "out") == []


def test_bad_input_in_a_process_of_its_own_exits_2_with_one_line(tmp_path):
    overrides, message = BAD_INPUTS[0]
    result = anomaly_bench(*overrides, "paths.output_dir=out", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert files_under(tmp_path / "out") == []


def test_missing_data_exits_2_and_leaves_no_result(tmp_path, monkeypatch, cli_main):
    monkeypatch.setenv("ANOMALY_BENCH_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.chdir(tmp_path)
    code, _, err = cli_main("dataset=fashion_mnist", "dataset.download_timeout=0", "paths.output_dir=out")
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("anomaly-bench: error:")]
    assert len(errors) == 1 and "dataset=fashion_mnist: no data found" in errors[0]
    assert "Traceback" not in err
    assert files_under(tmp_path / "out") == []


def test_full_error_shows_the_traceback(tmp_path):
    result = anomaly_bench("trainer.epochs=0", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr


@needs_mnist
def test_failure_mid_training_is_recorded_not_hidden(tmp_path, monkeypatch, cli_main):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli_main(
        *TINY, "model=undercomplete_ae", "model._target_=exploding.ExplodingDetector", "paths.output_dir=out"
    )
    assert code == 1
    (folder,) = (tmp_path / "out" / "runs").glob("*/*")
    assert [line for line in err.splitlines() if line.startswith("anomaly-bench: error:")] == [
        f"anomaly-bench: error: the run failed: RuntimeError: boom: simulated "
        f"failure mid-training; traceback in {folder.resolve() / 'error.txt'}"
    ]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "boom" in metrics["error"]
    assert "auroc" not in metrics
    assert "RuntimeError: boom" in (folder / "error.txt").read_text()


def test_readme_commands_are_the_ones_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    test_command = re.search(r"```bash\n(.*?pytest.*?)\n```", readme, re.S).group(1).strip()
    assert test_command.splitlines()[-1] in ci
