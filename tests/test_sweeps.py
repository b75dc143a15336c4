"""Sweeps as a user runs them (subprocess, tiny data) plus the rules of the sweep modules."""

import copy
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import CONF_DIR, compose_config, needs_mnist
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict

from anomaly_bench.config import validate
from anomaly_bench.errors import ConfigError
from anomaly_bench.run_folder import config_snapshot
from anomaly_bench.sweep.callback import count_jobs
from anomaly_bench.sweep.job import ResultExistsError, result_elsewhere, reusable_result, run_sweep_job
from anomaly_bench.sweep.naming import MAX_NAME_BYTES, safe_dirname
from anomaly_bench.sweep.resume import config_differences
from anomaly_bench.sweep.summary import read_records, summary_table
from anomaly_bench.threads import threads_for_job

TESTS = Path(__file__).resolve().parent
# PCA fits in a moment: what these sweeps check is the sweep machinery, not a model's training.
SWEEP_TINY = [
    "model=pca",
    "model.n_components=8",
    "dataset.max_train=200",
    "dataset.max_test=200",
]
# The exploding stand-in of test_joblib_launcher_runs_jobs_in_two_workers takes an autoencoder's settings.
SWEEP_TINY_AE = [
    "model=undercomplete_ae",
    "dataset.max_train=200",
    "dataset.max_test=200",
    "trainer.epochs=1",
    "trainer.batch_size=64",
]
# 2 x 2 grid; normal [1] with anomalies [1] overlaps, so exactly one of the four jobs is bad input.
GRID = ["dataset.normal_classes=[0],[1]", "dataset.anomaly_classes=[1],rest"]


def sweep(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "anomaly_bench", "-m", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def job_folders(sweep_dir: Path) -> dict[int, Path]:
    return {int(p.name.split("_", 1)[0]): p for p in sweep_dir.iterdir() if p.is_dir() and p.name[0].isdigit()}


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of a folder with its content (a finished job folder must stay byte-identical)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def metrics_of(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def hydra_compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


@pytest.fixture(scope="module")
def failed_sweep(tmp_path_factory):
    """The four-job sweep with one bad job, run once for the tests below."""
    cwd = tmp_path_factory.mktemp("sweep")
    result = sweep(*SWEEP_TINY, *GRID, "hydra.sweep.dir=grid", cwd=cwd)
    return cwd, cwd / "grid", result


@needs_mnist
def test_a_failing_job_is_recorded_and_the_others_complete(failed_sweep):
    _, sweep_dir, result = failed_sweep
    assert result.returncode == 1, result.stderr[-3000:]
    folders = job_folders(sweep_dir)
    assert sorted(folders) == [0, 1, 2, 3]
    statuses = {num: metrics_of(folder)["status"] for num, folder in folders.items()}
    assert sorted(statuses.values()) == ["completed"] * 3 + ["failed"]
    (bad,) = [num for num, status in statuses.items() if status == "failed"]
    error = (folders[bad] / "error.txt").read_text()
    assert "Traceback" in error and "ConfigError" in error and "overlaps" in error
    for num, folder in folders.items():
        assert re.fullmatch(r"\d+_[A-Za-z0-9._,=+-]+", folder.name), folder.name  # no brackets or quotes
        assert (folder / ".hydra" / "config.yaml").is_file()
        if num != bad:
            assert {"scores.csv", "roc_curve.png", "pca.npz", "run.log"} <= {p.name for p in folder.iterdir()}
            assert not (folder / "error.txt").exists()

    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert len(summary) == 4 and summary.loc[0, "job"] == bad and summary.loc[0, "status"] == "failed"
    assert {"dataset.normal_classes=[1]", "dataset.anomaly_classes=[1]"} <= set(summary.loc[0, "overrides"].split())
    assert summary.loc[0, "folder"] == folders[bad].name
    assert list(summary["status"]).count("completed") == 3 and not summary["resumed"].any()
    assert summary.loc[summary.status == "completed", "auroc"].between(0, 1).all()
    assert {"overrides", "folder", "auprc", "f1", "duration_s", "error"} <= set(summary.columns)
    assert not (sweep_dir / ".jobs").exists()

    out = result.stdout
    assert "job 1/4" in out and "job 4/4" in out
    assert "sweep: 4 jobs, 3 completed (0 resumed), 1 failed" in out
    report = out[out.index("sweep: 4 jobs") :].splitlines()
    assert report[1].startswith(f"  FAILED job {bad} ({folders[bad].name}): ConfigError:")
    rows = [m.group(1) for m in map(re.compile(r"^\s*\d+\s+(failed|completed)\s").match, report) if m]
    assert rows == ["failed"] + ["completed"] * 3  # failures first
    assert report[-1] == "summary: grid/summary.csv"


@needs_mnist
@pytest.mark.slow
def test_resume_runs_only_unfinished_and_failed_jobs(failed_sweep):
    cwd, sweep_dir, first = failed_sweep
    assert first.returncode == 1
    folders = job_folders(sweep_dir)
    killed = next(num for num, f in folders.items() if metrics_of(f)["status"] == "completed")
    # A run killed mid-way leaves metrics.json saying "running": never a result.
    killed_metrics = {**metrics_of(folders[killed]), "status": "running"}
    (folders[killed] / "metrics.json").write_text(json.dumps(killed_metrics))
    before = {
        num: ((f / "metrics.json").stat().st_mtime_ns, metrics_of(f).get("started_at")) for num, f in folders.items()
    }
    contents = {num: folder_bytes(f) for num, f in folders.items()}

    result = sweep(*SWEEP_TINY, *GRID, "hydra.sweep.dir=grid", "resume=true", cwd=cwd)
    assert result.returncode == 1, result.stderr[-3000:]
    assert job_folders(sweep_dir) == folders  # resume=true does not change folder names
    after = {
        num: ((f / "metrics.json").stat().st_mtime_ns, metrics_of(f).get("started_at")) for num, f in folders.items()
    }
    summary = pd.read_csv(sweep_dir / "summary.csv").set_index("job")
    failed = summary.index[summary.status == "failed"].tolist()
    assert len(failed) == 1 and metrics_of(folders[failed[0]])["status"] == "failed"
    for num in folders:
        rerun = num in failed or num == killed
        assert (after[num] != before[num]) == rerun, num
        assert bool(summary.loc[num, "resumed"]) == (not rerun)
        if not rerun:  # a skipped job's folder is byte-identical: no .hydra/ rewrite, no run.log line
            assert folder_bytes(folders[num]) == contents[num], num
    assert metrics_of(folders[killed])["status"] == "completed"
    assert summary.loc[killed, "status"] == "completed"
    assert "sweep: 4 jobs, 3 completed (2 resumed), 1 failed" in result.stdout
    assert result.stdout.count("already holds a completed result with this config; skipping") == 2


@needs_mnist
def test_rerun_without_resume_never_overwrites_a_result(failed_sweep, tmp_path):
    _, sweep_dir, _ = failed_sweep
    copy = tmp_path / "grid"
    shutil.copytree(sweep_dir, copy)
    row = pd.read_csv(copy / "summary.csv").set_index("job").loc[0]  # a one-job sweep is job 0 again
    assert row["status"] == "completed"
    result_file = copy / row["folder"] / "metrics.json"
    before = folder_bytes(result_file.parent)
    overrides = [o for o in row["overrides"].split() if not o.startswith("resume=")]
    result = sweep(*overrides, f"hydra.sweep.dir={copy}", cwd=tmp_path)
    assert result.returncode == 1
    assert "already holds a completed run; pass resume=true" in result.stdout
    assert folder_bytes(result_file.parent) == before  # not even Hydra's .hydra/ or run.log
    resumed = sweep(*overrides, f"hydra.sweep.dir={copy}", "resume=true", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:]  # no failed job: success
    assert "sweep: 1 jobs, 1 completed (1 resumed), 0 failed" in resumed.stdout
    assert folder_bytes(result_file.parent) == before
    assert not (copy / ".scratch").exists()


@needs_mnist
@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_two_workers(tmp_path):
    """Two worker processes each start TensorFlow: slow tier; the default run checks the preset
    (test_launcher_presets_compose) and the thread split (test_threads_setting)."""
    result = sweep(
        *SWEEP_TINY_AE,
        "hydra/launcher=joblib_local",
        "dataset.normal_classes=[0],[1]",
        "model._target_=anomaly_bench.models.autoencoder.ReconstructionDetector,exploding.ExplodingDetector",
        "hydra.sweep.dir=par",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stdout
    folders = job_folders(tmp_path / "par")
    metrics = {num: metrics_of(f) for num, f in folders.items()}
    assert sorted(m["status"] for m in metrics.values()) == ["completed", "completed", "failed", "failed"]
    for num, m in metrics.items():
        assert m["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)  # cores // n_jobs
        if m["status"] == "failed":
            assert "RuntimeError: boom" in (folders[num] / "error.txt").read_text()
    assert all(f"job {i}/4" in result.stdout for i in range(1, 5))  # the job count reaches the workers
    summary = pd.read_csv(tmp_path / "par" / "summary.csv")
    assert list(summary["status"]) == ["failed", "failed", "completed", "completed"]


def test_one_class_protocol_sweeps_ten_normal_classes():
    cfg = hydra_compose(["experiment=one_class_protocol", "model=conv_ae", "dataset=fashion_mnist"])
    assert cfg.dataset.anomaly_classes == "rest"
    assert count_jobs(cfg) == 10
    cfg.hydra.overrides.task.append("trainer.seed=0,1")
    assert count_jobs(cfg) == 20
    cfg.hydra.overrides.task.append("dataset.normal_classes=[0],[1]")  # the command line wins over the preset
    assert count_jobs(cfg) == 4


def test_job_count_is_unknown_for_other_sweepers():
    cfg = hydra_compose([])
    cfg.hydra.overrides.task.append("trainer.seed=0,1")
    assert count_jobs(cfg) == 2
    cfg.hydra.sweeper._target_ = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert count_jobs(cfg) is None


def test_launcher_presets_compose():
    joblib = hydra_compose(["hydra/launcher=joblib_local"]).hydra.launcher
    assert joblib._target_.endswith("JoblibLauncher") and joblib.n_jobs == 2
    slurm = hydra_compose(["hydra/launcher=slurm"]).hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher")
    assert slurm.timeout_min > 0 and slurm.cpus_per_task > 0 and slurm.mem_gb > 0


def test_cfg_hydra_with_slurm_launcher_on_the_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "anomaly_bench", "hydra/launcher=slurm", "--cfg", "hydra"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "SlurmLauncher" in result.stdout and "submitit_folder" in result.stdout


@pytest.mark.parametrize(
    "dirname, expected",
    [
        ("dataset.normal_classes=[0],model=conv_ae", "dataset.normal_classes=0,model=conv_ae"),
        ("dataset.normal_classes=[1,2],trainer.seed=3", "dataset.normal_classes=1-2,trainer.seed=3"),
        ("dataset.path=/data/x y,model.encoder=[[1,2],[3]]", "dataset.path=_data_x_y,model.encoder=1-2-3"),
        ("model.name='a*b?'", "model.name=_a_b__"),
        ("", ""),
    ],
)
def test_job_folder_names_have_no_glob_or_path_characters(dirname, expected):
    assert safe_dirname(dirname) == expected


def test_long_job_folder_names_are_shortened_but_stay_distinct():
    a, b = (safe_dirname(",".join(f"key{i}={i}" for i in range(n))) for n in (80, 81))
    assert len(a) <= MAX_NAME_BYTES and len(b) <= MAX_NAME_BYTES and a != b
    assert safe_dirname("x" * 500) == safe_dirname("x" * 500)


def test_resume_reuses_only_a_completed_result_with_the_same_config(tmp_path):
    cfg = compose_config(["model=undercomplete_ae", "trainer.epochs=1"])
    folder = tmp_path / "0_job"
    (folder / ".hydra").mkdir(parents=True)
    assert reusable_result(cfg, folder, resume=True) is None  # nothing there yet
    for status in ("running", "failed"):
        (folder / "metrics.json").write_text(json.dumps({"status": status, "config": config_snapshot(cfg)}))
        assert reusable_result(cfg, folder, resume=True) is None
    (folder / "metrics.json").write_text(
        json.dumps({"status": "completed", "auroc": 0.9, "config": config_snapshot(cfg)})
    )
    assert (
        reusable_result(
            compose_config(["model=undercomplete_ae", "trainer.epochs=1", "resume=true"]), folder, resume=True
        )["auroc"]
        == 0.9
    )
    with pytest.raises(ResultExistsError, match="pass resume=true"):
        reusable_result(cfg, folder, resume=False)
    changed = compose_config(["model=undercomplete_ae", "trainer.epochs=2"])
    with pytest.raises(ResultExistsError, match=r"trainer.epochs: 1 -> 2"):
        reusable_result(changed, folder, resume=True)


@pytest.fixture
def in_sweep_job(tmp_path):
    """Hydra's view of job 3 of a sweep in tmp_path, as run_job sets it up."""
    cfg = hydra_compose(["model=undercomplete_ae"])
    with open_dict(cfg):
        cfg.hydra.job.num = 3
        cfg.hydra.sweep.dir = str(tmp_path)
        cfg.hydra.runtime.output_dir = str(tmp_path / "3_job")
        cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig.instance().set_config(cfg)
    task = copy.deepcopy(cfg)
    with open_dict(task):
        del task["hydra"]
    yield task, tmp_path / "3_job"
    HydraConfig.instance().cfg = None


@pytest.mark.parametrize("error", [MemoryError("out of memory"), RuntimeError("loss is NaN")])
def test_a_job_that_dies_is_recorded_and_returns_nan(in_sweep_job, monkeypatch, error):
    task, folder = in_sweep_job
    folder.mkdir()

    def dies(cfg, output_dir):
        raise error

    monkeypatch.setattr("anomaly_bench.run.run", dies)
    assert math.isnan(run_sweep_job(task, folder))
    assert metrics_of(folder)["status"] == "failed"
    assert f"{type(error).__name__}: {error}" in (folder / "error.txt").read_text()
    (record,) = read_records(folder.parent)
    assert record["job"] == 3 and record["status"] == "failed" and record["folder"] == "3_job"


def test_config_differences_name_the_keys():
    assert config_differences({"a": {"b": 1}, "c": 2}, {"a": {"b": 1}, "c": 2}) == []
    assert config_differences({"a": {"b": 1}}, {"a": {"b": 2, "d": 0}}) == ["a.b: 1 -> 2", "a.d: '<absent>' -> 0"]
    assert config_differences(None, {"a": 1}) == ["no config recorded in metrics.json"]


def test_summary_lists_failures_first():
    records = [
        {"job": i, "status": s, "resumed": False, "overrides": f"x={i}", "folder": f"{i}_x={i}"}
        for i, s in enumerate(["completed", "failed", "completed", "failed"])
    ]
    table = summary_table(records)
    assert list(table["job"]) == [1, 3, 0, 2]


def test_threads_setting():
    assert threads_for_job(3) == 3
    assert threads_for_job(None) is None  # outside a parallel launcher: TensorFlow's default
    assert validate(compose_config(["trainer.threads=2"])).trainer.threads == 2
    with pytest.raises(ConfigError, match=r"trainer.threads=0 must be a positive integer or null"):
        validate(compose_config(["trainer.threads=0"]))


def test_resume_finds_a_result_under_another_job_number(in_sweep_job, monkeypatch):
    """Adding seeds renumbers the jobs: a finished result must be found under its old name."""
    task, folder = in_sweep_job
    old = folder.parent / "0_job_of_the_smaller_grid"
    old.mkdir()
    (old / "metrics.json").write_text(
        json.dumps({"status": "completed", "val_auroc": 0.77, "auroc": 0.7, "config": config_snapshot(task)})
    )
    other = folder.parent / "1_other_config"
    other.mkdir()
    changed = compose_config(["model=undercomplete_ae", "trainer.epochs=7"])
    (other / "metrics.json").write_text(
        json.dumps({"status": "completed", "auroc": 0.1, "config": config_snapshot(changed)})
    )
    (folder / ".hydra").mkdir(parents=True)  # what Hydra creates before the job runs
    assert result_elsewhere(task, folder, folder.parent) == (
        old,
        {"status": "completed", "val_auroc": 0.77, "auroc": 0.7, "config": config_snapshot(task)},
    )
    assert result_elsewhere(changed, folder, folder.parent)[0] == other

    monkeypatch.setattr("anomaly_bench.run.run", lambda cfg, output_dir: pytest.fail("the result was there"))
    with open_dict(task):
        task.resume = True
    assert run_sweep_job(task, folder) == 0.77
    assert not folder.exists()  # the empty new folder is gone, the old result stays where it was
    (record,) = read_records(folder.parent)
    assert record["resumed"] and record["folder"] == old.name and record["status"] == "completed"
