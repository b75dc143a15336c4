"""Experiment tracking against real components: a real ``mlflow server`` (SQLite, 127.0.0.1) in a
subprocess, TensorBoard event files read back with tbparse, sweeps through the real launchers.

Runs are tiny (300 images, 1-2 epochs); the joblib sweep and the Optuna search are slow-marked.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, compose_config, needs_mnist

from anomaly_bench.cli import check_group_options
from anomaly_bench.compare.cli import main as compare_main
from anomaly_bench.config import validate
from anomaly_bench.errors import ConfigError
from anomaly_bench.models.autoencoder import ReconstructionDetector
from anomaly_bench.run import run
from anomaly_bench.tracking.mlflow_tracker import CONTENT_TAG, FOLDER_TAG, PARENT_FILE, final_metrics, params_of
from anomaly_bench.tracking.observer import Observer, RunStarted, Trackers

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

TESTS = Path(__file__).resolve().parent
SMALL = ["dataset.max_train=300", "dataset.max_test=300", "trainer.batch_size=64"]
AE = ["model=undercomplete_ae", *SMALL, "trainer.epochs=2"]
PCA = ["model=pca", "model.n_components=8", *SMALL]


class InterruptedDetector(ReconstructionDetector):
    """Ctrl-C during training."""

    def fit(self, splits, trainer):
        raise KeyboardInterrupt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server (SQLite store, proxied artifacts) on a free port of 127.0.0.1."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    executable = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    log_file = open(root / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    process = subprocess.Popen(
        [
            executable,
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job-runner process to wait for
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL) if process.poll() is None else None
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield uri
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log_file.close()


def experiment_name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def runs_of(client: MlflowClient, name: str):
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, name
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def to_server(uri: str, name: str) -> list[str]:
    return ["logger=mlflow", f"logger.mlflow.tracking_uri={uri}", f"logger.mlflow.experiment_name={name}"]


# ------------------------------------------------------------------------------- the config group


@pytest.mark.parametrize("choice", ["[mlflow,tensorboard]", "many"])
def test_several_trackers_at_once(choice):
    check_group_options([f"logger={choice}"])
    settings = validate(compose_config([f"logger={choice}"]))
    assert sorted(settings.logger) == ["mlflow", "tensorboard"]
    assert validate(compose_config([])).logger == {}


def test_unknown_logger_option_is_refused_with_the_options():
    with pytest.raises(
        ConfigError, match=r"^logger=nope is not a known option; allowed: many, mlflow, none, tensorboard$"
    ):
        check_group_options(["logger=[mlflow,nope]"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["logger=mlflow", "logger.mlflow.tracking_uri=./mlruns"],
            "logger.mlflow.tracking_uri='./mlruns' is not an MLflow tracking URI",
        ),
        (["logger=mlflow", "logger.mlflow.request_timeout=0"], "logger.mlflow.request_timeout=0.0 must be in (0, 600]"),
        (
            ["logger=mlflow", "logger.mlflow.max_retries=many"],
            "logger.mlflow.max_retries='many' must be a whole number",
        ),
        (["logger=mlflow", "+logger.mlflow.colour=red"], "logger.mlflow.colour is not a setting of"),
        (["logger=mlflow", "logger.mlflow.experiment_name=' '"], "logger.mlflow.experiment_name=' ' must be a name"),
        (["logger=tensorboard", "logger.tensorboard.images=[../x.png]"], "logger.tensorboard.images: '../x.png'"),
        (
            ["+logger.rule._target_=anomaly_bench.thresholds.TrainMean"],
            "logger.rule._target_='anomaly_bench.thresholds.TrainMean' is not a tracker",
        ),
        (["+logger.x=1"], "logger.x=1 must be a tracker's settings with a _target_"),
    ],
)
def test_bad_logger_settings_are_refused_before_training(overrides, message):
    with pytest.raises(ConfigError) as caught:
        validate(compose_config(overrides))
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize("multirun", [False, True])
def test_bad_logger_setting_on_the_command_line_is_one_line_and_exit_2(tmp_path, multirun, cli_main):
    code, _, err = cli_main(
        *(["-m", "model=pca,knn"] if multirun else []),
        "logger=mlflow",
        "logger.mlflow.tracking_uri=file:///tmp/mlruns",
        f"paths.output_dir={tmp_path}/out",
    )
    assert code == 2, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "anomaly-bench: error: logger.mlflow.tracking_uri='file:///tmp/mlruns' is not an MLflow tracking URI"
    ), lines
    assert not (tmp_path / "out").exists()


def test_job_folder_names_leave_the_tracker_out():
    """Where a job is tracked changes no result: a sweep resumed with another logger finds the same folders."""
    from anomaly_bench.sweep.naming import safe_dirname

    tracked = "dataset.normal_classes=[0,1],logger=[mlflow,tensorboard],logger.mlflow.tracking_uri=http://h:5,model=pca"
    assert (
        safe_dirname(tracked)
        == safe_dirname("dataset.normal_classes=[0,1],model=pca")
        == ("dataset.normal_classes=0-1,model=pca")
    )


# ------------------------------------------------------------------------------- the seam


class Recorder(Observer):
    def __init__(self, refuse_epochs: bool = False) -> None:
        self.refuse_epochs, self.events = refuse_epochs, []

    def run_started(self, run):
        self.events.append("started")

    def epoch_ended(self, epoch, logs):
        if self.refuse_epochs:
            raise PermissionError("epoch refused")
        self.events.append(("epoch", epoch))

    def run_completed(self, metrics):
        self.events.append("completed")


def test_a_failing_tracker_is_dropped_with_one_warning_and_the_others_go_on(caplog, tmp_path):
    good, bad = Recorder(), Recorder(refuse_epochs=True)
    trackers = Trackers({"bad": bad, "good": good})
    trackers.run_started(RunStarted(tmp_path, {}, {}))
    with caplog.at_level(logging.WARNING, logger="anomaly_bench"):
        for epoch in (1, 2, 3):
            trackers.epoch_ended(epoch, {"loss": 1.0})
    trackers.run_completed({})
    assert good.events == ["started", ("epoch", 1), ("epoch", 2), ("epoch", 3), "completed"]
    assert bad.events == ["started"]
    assert [r.getMessage() for r in caplog.records] == ["tracker bad: epoch refused; the run goes on without it"]


def test_anogan_and_its_encoder_announce_their_epochs_like_every_keras_model():
    """One callback list for every fit: the GAN's epochs and the encoder's reach the pipeline's listener."""
    import numpy as np

    from anomaly_bench.config import TrainerConfig, build
    from anomaly_bench.data.split import Split
    from anomaly_bench.models.base import TrainingData
    from anomaly_bench.models.keras_training import epoch_listener

    small = ["model.latent_dim=4", "model.generator_filters=[8,4]", "model.discriminator_filters=[4,8]"]
    cfg = compose_config(["model=anogan", "model.scoring=encoder", "model.encoder_epochs=1", *small])
    detector = build("model", validate(cfg).model)
    images = np.random.default_rng(0).integers(0, 256, (32, 28, 28, 1), dtype=np.uint8)
    split = Split(images, np.zeros(32, int), np.zeros(32, int), np.arange(32))
    empty = split.subset(np.zeros(32, bool))
    heard: list[tuple[int, list[str]]] = []
    with epoch_listener(lambda epoch, logs: heard.append((epoch, sorted(logs)))):
        detector.fit(TrainingData(split, empty), TrainerConfig(epochs=2, batch_size=16))
    assert heard == [(1, ["d_loss", "g_loss"]), (2, ["d_loss", "g_loss"]), (1, ["encoder_loss"])]


def test_compare_and_export_skip_mlflows_artifact_copies(tmp_path):
    from anomaly_bench.compare.discover import discover

    for folder in ("runs/a", "mlartifacts/1/abc/artifacts", "mlruns/0/def/artifacts"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "metrics.json").write_text("{}")
    assert discover([str(tmp_path)]).runs == [tmp_path / "runs" / "a"]


def test_params_are_text_within_mlflows_limit_and_metrics_leave_facts_out():
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    params = params_of({"model": {"name": "x", "layers": [1, 2]}, "note": "a" * 7000, "odd key!": None, "on": True})
    assert params["model.name"] == "x" and params["model.layers"] == "[1, 2]" and params["on"] == "true"
    assert params["odd key_"] == "null"
    assert len(params["note"]) == MAX_PARAM_VAL_LENGTH and params["note"].endswith("… (7000 characters)")
    metrics = {"auroc": 0.5, "seed": 3, "config": {"lr": 0.1}, "timings": {"fit": 2}, "status": "completed", "x": None}
    assert final_metrics(metrics) == {"auroc": 0.5, "timings.fit": 2.0}


# ------------------------------------------------------------------------------- MLflow, one run


@pytest.fixture(scope="module")
def logged_run(mlflow_server, tmp_path_factory):
    """A tiny two-epoch autoencoder run logged into the server: (uri, experiment, folder, metrics)."""
    name = experiment_name()
    folder = tmp_path_factory.mktemp("logged") / "run"
    metrics = run(compose_config([*AE, *to_server(mlflow_server, name)]), folder)
    return mlflow_server, name, folder, metrics


@needs_mnist
def test_a_run_is_logged_with_params_history_metrics_tags_and_artifacts(logged_run, tmp_path):
    uri, name, folder, metrics = logged_run
    client = MlflowClient(uri)
    (logged,) = runs_of(client, name)
    assert logged.info.status == "FINISHED" and metrics["status"] == "completed"
    assert logged.info.run_name == folder.name
    params = logged.data.params
    assert (params["model.name"], params["trainer.epochs"], params["dataset.normal_classes"]) == (
        "undercomplete_ae",
        "2",
        "[0]",
    )
    assert "logger.mlflow.tracking_uri" not in params  # where a run is tracked is not part of its config
    history = pd.read_csv(folder / "history.csv")
    for key in ("loss", "val_loss"):
        steps = client.get_metric_history(logged.info.run_id, key)
        assert [m.step for m in steps] == [1, 2]
        assert [m.value for m in steps] == pytest.approx(history[key].tolist(), rel=1e-6)
    for key in ("auroc", "auprc", "f1", "val_auroc"):
        assert logged.data.metrics[key] == pytest.approx(metrics[key])
    assert logged.data.metrics["timings.fit"] == pytest.approx(metrics["timings"]["fit"])
    tags = logged.data.tags
    assert (tags["model"], tags["dataset"], tags["normal_classes"]) == ("undercomplete_ae", "mnist", "[0]")
    assert (tags["backend"], tags["device"], tags["data_source"]) == ("tensorflow", "CPU", metrics["data_source"])
    assert tags[FOLDER_TAG] == str(folder.resolve()) and len(tags["mlflow.source.git.commit"]) == 40
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {
        "metrics.json",
        "scores.csv",
        "roc_curve.png",
        "training_curve.png",
        "model.keras",
        "detector.json",
    } <= artifacts
    copy = client.download_artifacts(logged.info.run_id, "metrics.json", str(tmp_path))
    assert Path(copy).read_bytes() == (folder / "metrics.json").read_bytes()
    assert json.loads(Path(copy).read_text())["status"] == "completed"


@needs_mnist
@pytest.mark.parametrize(
    "target, status", [("exploding.ExplodingDetector", "FAILED"), ("test_tracking.InterruptedDetector", "KILLED")]
)
def test_a_failed_or_interrupted_run_ends_failed_or_killed(mlflow_server, tmp_path, target, status):
    name = experiment_name()
    cfg = compose_config([*AE, f"model._target_={target}", *to_server(mlflow_server, name)])
    with pytest.raises((RuntimeError, KeyboardInterrupt)):
        run(cfg, tmp_path / "run")
    (logged,) = runs_of(MlflowClient(mlflow_server), name)
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert recorded["status"] == "failed" and logged.info.status == status
    assert logged.data.tags["error"] == recorded["error"]


@needs_mnist
@pytest.mark.parametrize(
    "uri", ["http://127.0.0.1:{port}", pytest.param("sqlite:///{tmp}/a_file/mlflow.db", marks=pytest.mark.slow)]
)
def test_a_tracker_that_cannot_write_costs_one_warning_not_the_result(tmp_path, caplog, uri):
    (tmp_path / "a_file").write_text("not a folder")
    target = uri.format(port=free_port(), tmp=tmp_path)
    cfg = compose_config([*PCA, "logger=mlflow", f"logger.mlflow.tracking_uri={target}"])
    with caplog.at_level(logging.WARNING, logger="anomaly_bench"):
        started = time.monotonic()
        metrics = run(cfg, tmp_path / "run")
    assert metrics["status"] == "completed"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"
    warnings = [r.getMessage() for r in caplog.records if r.name == "anomaly_bench" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("tracker mlflow: "), warnings
    assert warnings[0].endswith("; the run goes on without it")
    assert time.monotonic() - started < 120


# ------------------------------------------------------------------------------- past results


@needs_mnist
def test_past_results_are_logged_once(logged_run, tmp_path, capsys):
    uri, _, folder, metrics = logged_run
    # Live-logged already: the server holds it, recognised by its metrics.json.
    assert compare_main([str(folder), "--to-mlflow", uri]) == 0
    assert "logged 0 run folders, 1 already logged" in capsys.readouterr().err
    store = f"sqlite:///{tmp_path}/past.db"
    for expected in ("logged 1 run folders, 0 already logged", "logged 0 run folders, 1 already logged"):
        assert compare_main([str(folder.parent), f"--to-mlflow={store}"]) == 0
        assert expected in capsys.readouterr().err
    client = MlflowClient(store)
    (past,) = runs_of(client, "mnist")
    assert past.info.status == "FINISHED" and past.data.tags[CONTENT_TAG]
    assert past.data.metrics["auroc"] == pytest.approx(metrics["auroc"])
    assert [m.step for m in client.get_metric_history(past.info.run_id, "loss")] == [1, 2]
    assert {"metrics.json", "scores.csv", "roc_curve.png", "model.keras"} <= {
        a.path for a in client.list_artifacts(past.info.run_id)
    }


def test_artifact_names_from_a_folder_never_leave_it(tmp_path):
    from anomaly_bench.tracking.export import safe_artifacts

    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("metrics.json", "scores.csv"):
        (folder / name).write_text("x")
    (tmp_path / "secret.txt").write_text("s")
    (folder / "link.csv").symlink_to(tmp_path / "secret.txt")
    names = ["scores.csv", "../secret.txt", str(tmp_path / "secret.txt"), "link.csv", "missing.png", 3, "scores.csv"]
    assert safe_artifacts(folder, names) == ["scores.csv", "metrics.json"]
    assert safe_artifacts(folder, "scores.csv") == ["metrics.json"]


# ------------------------------------------------------------------------------- TensorBoard

JAX_RUN = textwrap.dedent("""
    import sys
    sys.modules["tensorflow"] = None  # as on a JAX-only machine: any TensorFlow import fails
    sys.path.insert(0, {tests!r})
    from conftest import compose_config
    from anomaly_bench.run import run
    run(compose_config(sys.argv[2:]), sys.argv[1])
""").format(tests=str(TESTS))


@needs_mnist
@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.slow)])
def test_tensorboard_event_files_hold_epochs_final_metrics_hparams_and_figures(tmp_path, backend):
    """tensorboardX needs no TensorFlow: on JAX the run is made where TensorFlow cannot be imported."""
    from tbparse import SummaryReader

    folder = tmp_path / "run"
    if backend == "tensorflow":
        run(compose_config([*AE, "logger=tensorboard"]), folder)
    else:
        done = subprocess.run(
            [sys.executable, "-c", JAX_RUN, str(folder), *AE, "logger=tensorboard"],
            env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["backend"] == backend
    reader = SummaryReader(str(folder / "tensorboard"), pivot=False)
    scalars = reader.scalars
    loss = scalars[scalars.tag == "loss"].sort_values("step")
    history = pd.read_csv(folder / "history.csv")
    assert loss.step.tolist() == [1, 2]
    assert loss.value.tolist() == pytest.approx(history["loss"].tolist(), rel=1e-5)
    final = dict(zip(scalars.tag, scalars.value))
    assert final["final/auroc"] == pytest.approx(metrics["auroc"], rel=1e-6)
    assert final["final/val_auroc"] == pytest.approx(metrics["val_auroc"], rel=1e-6)
    assert {"roc_curve", "score_histogram", "training_curve", "pr_curve"} <= set(reader.images.tag)
    hparams = dict(zip(reader.hparams.tag, reader.hparams.value))
    assert hparams["model.name"] == "undercomplete_ae" and hparams["trainer.epochs"] == 2


# ------------------------------------------------------------------------------- sweeps


def sweep(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "anomaly_bench", "-m", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@needs_mnist
@pytest.mark.slow
def test_joblib_sweep_is_one_parent_with_nested_jobs_and_resume_logs_no_job_twice(mlflow_server, tmp_path):
    name = experiment_name()
    targets = "anomaly_bench.models.autoencoder.ReconstructionDetector,exploding.ExplodingDetector"
    args = [*AE, "trainer.epochs=1", f"model._target_={targets}", *to_server(mlflow_server, name)]
    args += ["hydra/launcher=joblib_local", "hydra.sweep.dir=grid"]
    first = sweep(*args, cwd=tmp_path)
    assert first.returncode == 1, first.stderr[-3000:]  # one job fails
    client = MlflowClient(mlflow_server)
    parent_id = json.loads((tmp_path / "grid" / PARENT_FILE).read_text())["run_id"]
    runs = {r.info.run_id: r for r in runs_of(client, name)}
    parent = runs.pop(parent_id)
    assert parent.info.status == "FAILED" and parent.data.metrics == {"n_jobs": 2.0, "n_failed": 1.0}
    assert "summary.csv" in {a.path for a in client.list_artifacts(parent_id)}
    assert {r.data.tags["mlflow.parentRunId"] for r in runs.values()} == {parent_id}
    assert sorted((r.data.tags["anomaly_bench.job"], r.info.status) for r in runs.values()) == [
        ("0", "FINISHED"),
        ("1", "FAILED"),
    ]
    assert all(r.data.tags[FOLDER_TAG].startswith(str((tmp_path / "grid").resolve())) for r in runs.values())

    again = sweep(*args, "resume=true", cwd=tmp_path)
    assert again.returncode == 1, again.stderr[-3000:]
    children = [r for r in runs_of(client, name) if r.info.run_id != parent_id]
    assert sorted((r.data.tags["anomaly_bench.job"], r.info.status) for r in children) == [
        ("0", "FINISHED"),  # skipped on resume: logged once
        ("1", "FAILED"),
        ("1", "FAILED"),  # the failed job ran again
    ]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent_id}


@needs_mnist
@pytest.mark.slow
def test_optuna_trials_are_nested_under_the_search(mlflow_server, tmp_path):
    name = experiment_name()
    args = ["hparams_search=pca_optuna", *SMALL, "hydra.sweeper.n_trials=2", "hydra.sweep.dir=search"]
    done = sweep(*args, *to_server(mlflow_server, name), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    parent_id = json.loads((tmp_path / "search" / PARENT_FILE).read_text())["run_id"]
    client = MlflowClient(mlflow_server)
    trials = [r for r in runs_of(client, name) if r.info.run_id != parent_id]
    assert len(trials) == 2 and {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent_id}
    assert {r.info.status for r in trials} == {"FINISHED"} and client.get_run(parent_id).info.status == "FINISHED"
    summary = pd.read_csv(tmp_path / "search" / "summary.csv")
    logged = sorted(r.data.metrics["val_auroc"] for r in trials)
    assert logged == pytest.approx(sorted(summary["val_auroc"]))
