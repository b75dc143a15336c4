"""MLflow: every run as an MLflow run (params, per-epoch metrics, final metrics, tags, artifacts);
a sweep as one parent run with its jobs nested, whichever process or machine runs them.

The client API (``MlflowClient``) is used throughout instead of ``mlflow.start_run``: a job of a
joblib or SLURM sweep runs in another process, where MLflow's active-run stack knows nothing of
the parent, so the parent run id is written into the sweep folder when the sweep starts and
every job reads it from there. The functions below are shared with
:mod:`anomaly_bench.tracking.export`, which logs finished run folders after the fact.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anomaly_bench.errors import ConfigError, shown
from anomaly_bench.run_folder import METRICS_FILE, flatten, write_json
from anomaly_bench.tracking.observer import Observer, RunStarted, SweepEnded, SweepStarted, result_numbers

log = logging.getLogger("anomaly_bench")

if TYPE_CHECKING:
    from mlflow import MlflowClient

MISSING = "logger=mlflow needs the mlflow package: pip install 'anomaly-bench[mlflow]'"
#: Written into the sweep folder by the process that starts a sweep; read by every job.
PARENT_FILE = ".mlflow_parent.json"
#: Tag that identifies a run folder's result (sha256 of its metrics.json): logged once, never twice.
CONTENT_TAG = "anomaly_bench.metrics_sha256"
FOLDER_TAG = "anomaly_bench.run_folder"
#: URI schemes MLflow serves runs from; plain paths and file: mean the file store, which MLflow 3 deprecates.
SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks")
_KEY_CHARACTERS = re.compile(r"[^A-Za-z0-9_\-. :/]")
MAX_KEY_LENGTH = 250


def default_uri(output_dir: str | Path) -> str:
    """The local store of runs that name no server: SQLite beside the outputs (not the deprecated file store)."""
    folder = Path(output_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def tracking_uri(configured: str | None, output_dir: str | Path) -> str:
    """``logger.mlflow.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else :func:`default_uri`."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(output_dir)


def check_uri(uri: str, key: str) -> None:
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""
    if scheme not in SCHEMES:
        raise ConfigError(
            f"{key}={shown(uri)} is not an MLflow tracking URI; use a server (http://127.0.0.1:5000) or a "
            f"database (sqlite:///path/mlflow.db); allowed schemes: {', '.join(SCHEMES)} (MLflow 3 deprecates "
            "the file store)"
        )


def _probe(uri: str, timeout: float) -> None:
    """A server that does not answer is found in one short request, not after MLflow's minutes of retries."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered (authentication, a proxy's page): the real requests will say more
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ConnectionError(f"cannot reach {uri} ({reason})") from None


def connect(uri: str, timeout: float, retries: int) -> MlflowClient:
    """A client for ``uri`` whose HTTP requests give up after about (retries + 1) x timeout seconds."""
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(max(1, round(timeout))))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(retries)
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # stdout is the run's; the log says where
    if uri.split(":", 1)[0].lower() in ("http", "https"):
        _probe(uri, timeout)
    from mlflow import MlflowClient  # importing mlflow sets its loggers' levels: quieten them after

    for name in ("mlflow", "alembic"):  # their INFO lines (database set-up) would fill run.log
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


def experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    """The id of experiment ``name``, created when missing (artifacts of a SQLite store beside the database)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        location = None
        if uri.startswith("sqlite:///"):
            location = (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created meanwhile by another job of the sweep
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage != "active":
        raise RuntimeError(f"experiment {name!r} is deleted in {uri}; restore it or set logger.mlflow.experiment_name")
    return found.experiment_id


def _key(name: str) -> str:
    return _KEY_CHARACTERS.sub("_", str(name))[:MAX_KEY_LENGTH]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def params_of(config: dict[str, Any]) -> dict[str, str]:
    """The composed config as MLflow params: dotted keys, text values, long values shortened to MLflow's limit."""
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    params = {}
    for key, value in flatten(config).items():
        text = _text(value)
        if len(text) > MAX_PARAM_VAL_LENGTH:
            note = f"… ({len(text)} characters)"
            text = text[: MAX_PARAM_VAL_LENGTH - len(note)] + note
        params[_key(key)] = text
    return params


def final_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {_key(key): value for key, value in result_numbers(metrics).items()}


@cache
def git_commit() -> str | None:
    """The commit of the anomaly-bench checkout this code runs from (None when installed from a wheel)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def run_tags(folder: Path, facts: dict[str, Any]) -> dict[str, str]:
    """Model, dataset, classes, data source, backend, device, code version and the run folder, as tags."""
    keys = ("model", "dataset", "data_source", "backend", "device")
    tags: dict[str, str] = {key: _text(facts[key]) for key in keys if key in facts}
    if "normal_classes" in facts:
        tags["normal_classes"] = _text(facts["normal_classes"])
    tags[FOLDER_TAG] = str(Path(folder).resolve())
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return {key: text[:5000] for key, text in tags.items()}


def content_id(folder: Path) -> str:
    return hashlib.sha256((Path(folder) / METRICS_FILE).read_bytes()).hexdigest()


def log_all(
    client: MlflowClient,
    run_id: str,
    params: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    step: int = 0,
    tags: dict[str, str] | None = None,
) -> None:
    """log_batch in chunks within MLflow's per-request limits."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

    now = int(time.time() * 1000)
    params_list = [Param(k, v) for k, v in (params or {}).items()]
    tag_list = [RunTag(k, v) for k, v in (tags or {}).items()]
    metric_list = [Metric(k, v, now, step) for k, v in (metrics or {}).items()]
    for start in range(0, len(params_list), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=params_list[start : start + MAX_PARAMS_TAGS_PER_BATCH])
    for start in range(0, len(tag_list), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, tags=tag_list[start : start + MAX_PARAMS_TAGS_PER_BATCH])
    for start in range(0, len(metric_list), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metric_list[start : start + MAX_METRICS_PER_BATCH])


def upload(client: MlflowClient, run_id: str, folder: Path, names: list[str]) -> None:
    """Files of the run folder as artifacts, in the same sub-folders (samples/, checkpoints/)."""
    for name in names:
        path = Path(folder) / name
        if path.is_file():
            parent = Path(name).parent.as_posix()
            client.log_artifact(run_id, str(path), None if parent == "." else parent)


def _terminal_status(error: BaseException) -> str:
    return "FAILED" if isinstance(error, Exception) else "KILLED"


def _current_job() -> tuple[Path, int] | None:
    """(sweep folder, job number) when this process runs a job of a sweep (any launcher), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return Path(hydra_cfg.sweep.dir), int(hydra_cfg.job.num)


def read_parent(sweep_dir: Path, uri: str) -> dict[str, str] | None:
    """The sweep's parent run when it was created in this tracking store; a malformed file is ignored."""
    try:
        record = json.loads((sweep_dir / PARENT_FILE).read_text())
    except (OSError, ValueError):
        return None
    keys = ("tracking_uri", "experiment_id", "run_id")
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in keys):
        return None
    return record if record["tracking_uri"] == uri else None


class MlflowTracker(Observer):
    """Settings from conf/logger/mlflow.yaml; see there for what each one means."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        request_timeout: float = 5.0,
        max_retries: int = 1,
        log_artifacts: bool = True,
    ) -> None:
        self.tracking_uri, self.experiment_name = tracking_uri, experiment_name
        self.request_timeout, self.max_retries, self.log_artifacts = float(request_timeout), max_retries, log_artifacts
        self.client: MlflowClient | None = None
        self.run_id: str | None = None
        self.folder: Path | None = None

    def check_settings(self) -> None:
        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError(MISSING)
        if self.tracking_uri is not None:
            check_uri(self.tracking_uri, "logger.mlflow.tracking_uri")
        elif os.environ.get("MLFLOW_TRACKING_URI"):
            check_uri(os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_URI")
        if self.experiment_name is not None and not self.experiment_name.strip():
            raise ConfigError(
                f"logger.mlflow.experiment_name={shown(self.experiment_name)} must be a name or null (the dataset's name)"
            )
        if not 0 < self.request_timeout <= 600:
            raise ConfigError(f"logger.mlflow.request_timeout={self.request_timeout} must be in (0, 600] seconds")
        if not 0 <= self.max_retries <= 10:
            raise ConfigError(f"logger.mlflow.max_retries={self.max_retries} must be in [0, 10]")

    def _connect(self, output_dir: str | Path) -> tuple[MlflowClient, str]:
        uri = tracking_uri(self.tracking_uri, output_dir)
        return connect(uri, self.request_timeout, self.max_retries), uri

    # ----------------------------------------------------------------- one run
    def run_started(self, run: RunStarted) -> None:
        self.client, uri = self._connect(run.config.get("paths", {}).get("output_dir", "outputs"))
        tags = run_tags(run.folder, run.facts)
        job = _current_job()
        parent = read_parent(job[0], uri) if job else None
        if job:
            tags["anomaly_bench.job"] = str(job[1])
        if parent:
            tags["mlflow.parentRunId"] = parent["run_id"]
            experiment = parent["experiment_id"]
        else:
            experiment = experiment_id(self.client, self.experiment_name or str(run.facts["dataset"]), uri)
        self.folder = run.folder
        self.run_id = self.client.create_run(experiment, tags=tags, run_name=run.folder.name).info.run_id
        log_all(self.client, self.run_id, params=params_of(run.config))

    def epoch_ended(self, epoch: int, logs: dict[str, float]) -> None:
        if self.client is not None and self.run_id is not None:
            log_all(self.client, self.run_id, metrics={_key(k): float(v) for k, v in logs.items()}, step=epoch)

    def artifacts_written(self, folder: Path, names: list[str]) -> None:
        if self.log_artifacts and self.client is not None and self.run_id is not None:
            upload(self.client, self.run_id, folder, names)

    def run_completed(self, metrics: dict[str, Any]) -> None:
        if self.client is None or self.run_id is None or self.folder is None:
            return
        log_all(self.client, self.run_id, metrics=final_metrics(metrics), tags={CONTENT_TAG: content_id(self.folder)})
        self.client.set_terminated(self.run_id, "FINISHED")
        log.info("mlflow: run %s logged to %s", self.run_id, self.client.tracking_uri)

    def run_failed(self, metrics: dict[str, Any], error: BaseException) -> None:
        if self.client is None or self.run_id is None:
            return
        log_all(self.client, self.run_id, tags={"error": str(metrics.get("error") or type(error).__name__)[:5000]})
        self.client.set_terminated(self.run_id, _terminal_status(error))

    # ----------------------------------------------------------------- a sweep
    def sweep_started(self, sweep: SweepStarted) -> None:
        """One parent run per sweep folder: created once, reopened when the sweep is resumed."""
        from mlflow.exceptions import MlflowException

        client, uri = self._connect(sweep.config.get("paths", {}).get("output_dir", "outputs"))
        parent = read_parent(sweep.folder, uri)
        if parent is not None:
            try:
                client.update_run(parent["run_id"], status="RUNNING")
            except MlflowException:
                parent = None  # not in this store any more: a new parent
        if parent is None:
            name = self.experiment_name or str(sweep.config.get("dataset", {}).get("name", "sweeps"))
            experiment = experiment_id(client, name, uri)
            tags = {FOLDER_TAG: str(sweep.folder.resolve()), "anomaly_bench.sweep": "true"}
            commit = git_commit()
            if commit:
                tags["mlflow.source.git.commit"] = commit
            run = client.create_run(experiment, tags=tags, run_name=f"sweep {sweep.folder.name}")
            parent = {"tracking_uri": uri, "experiment_id": experiment, "run_id": run.info.run_id}
            sweep.folder.mkdir(parents=True, exist_ok=True)
            write_json(sweep.folder / PARENT_FILE, parent)
        self.client, self.run_id = client, parent["run_id"]

    def sweep_ended(self, sweep: SweepEnded) -> None:
        if self.client is None or self.run_id is None:
            return
        log_all(self.client, self.run_id, metrics={"n_jobs": sweep.n_jobs, "n_failed": sweep.n_failed})
        if self.log_artifacts and sweep.summary.is_file():
            self.client.log_artifact(self.run_id, str(sweep.summary))
        self.client.set_terminated(self.run_id, "FAILED" if sweep.n_failed else "FINISHED")
        log.info(
            "mlflow: sweep %s logged to %s as parent run %s", sweep.folder.name, self.client.tracking_uri, self.run_id
        )
