"""Finished run folders into MLflow after the fact (``anomaly-bench-compare PATH... --to-mlflow [URI]``).

Folders are untrusted: they are found and read by the compare readers (discover, load_run),
only completed ones are logged, artifact names are taken only when they point at a regular
file inside the folder, and a folder already in the store (live-logged or exported before,
recognised by the sha256 of its metrics.json in a tag) is not logged again.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anomaly_bench.compare.discover import discover
from anomaly_bench.compare.load import RunRecord, load_run
from anomaly_bench.run_folder import METRICS_FILE
from anomaly_bench.tracking.mlflow_tracker import (
    CONTENT_TAG,
    MlflowTracker,
    check_uri,
    connect,
    content_id,
    experiment_id,
    final_metrics,
    log_all,
    params_of,
    run_tags,
    upload,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

HISTORY_FILE = "history.csv"
MAX_HISTORY_ROWS = 100_000
_DEFAULTS = MlflowTracker()


@dataclass
class Exported:
    logged: list[Path] = field(default_factory=list)
    already: list[Path] = field(default_factory=list)
    not_completed: list[RunRecord] = field(default_factory=list)

    def describe(self, uri: str) -> str:
        return (
            f"MLflow {uri}: logged {len(self.logged)} run folders, {len(self.already)} already logged, "
            f"{len(self.not_completed)} not completed (skipped)"
        )


def _time_ms(text: Any) -> int | None:
    try:
        return int(datetime.fromisoformat(str(text)).timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        return None


def safe_artifacts(folder: Path, names: Any) -> list[str]:
    """The listed artifact names that are regular files inside ``folder`` (no links, no ``..``), plus metrics.json."""
    root = os.path.realpath(folder)
    kept = []
    for name in [*(names if isinstance(names, list) else []), METRICS_FILE]:
        if not isinstance(name, str) or not name or os.path.isabs(name) or name in kept:
            continue
        path = os.path.join(root, name)
        real = os.path.realpath(path)
        if real.startswith(root + os.sep) and not os.path.islink(path) and os.path.isfile(real):
            kept.append(name)
    return kept


def epoch_history(folder: Path) -> dict[int, dict[str, float]]:
    """history.csv as {epoch: {name: value}}: numeric columns only, the first rows only."""
    import pandas as pd

    path = Path(folder) / HISTORY_FILE
    if not path.is_file() or path.is_symlink():
        return {}
    try:
        table = pd.read_csv(path, nrows=MAX_HISTORY_ROWS)
    except (OSError, ValueError, pd.errors.ParserError):
        return {}
    numeric = table.apply(pd.to_numeric, errors="coerce")
    steps = numeric["epoch"] if "epoch" in numeric else pd.Series(range(1, len(numeric) + 1))
    history: dict[int, dict[str, float]] = {}
    for i, row in numeric.drop(columns=["epoch"], errors="ignore").iterrows():
        step = steps.iloc[i] if isinstance(i, int) else math.nan
        if math.isfinite(step):
            history[int(step)] = {str(k): float(v) for k, v in row.items() if math.isfinite(v)}
    return history


def already_logged(client: MlflowClient, content: str) -> bool:
    from mlflow.entities import ViewType

    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    if not experiments:
        return False
    found = client.search_runs(experiments, filter_string=f"tags.`{CONTENT_TAG}` = '{content}'", max_results=1)
    return len(found) > 0


def log_folder(client: MlflowClient, uri: str, record: RunRecord, content: str) -> None:
    """One completed run folder as a finished MLflow run: params, metrics (with epoch history), tags, artifacts."""
    metrics = record.metrics
    config = {k[len("config.") :]: v for k, v in metrics.items() if k.startswith("config.")} or record.config
    dataset = metrics.get("dataset")
    name = str(dataset)[:200] if isinstance(dataset, str) and dataset.strip() else "anomaly-bench"
    tags = {**run_tags(record.path, metrics), CONTENT_TAG: content}
    run = client.create_run(
        experiment_id(client, name, uri),
        start_time=_time_ms(metrics.get("started_at")),
        tags=tags,
        run_name=record.path.resolve().name,
    )
    run_id = run.info.run_id
    log_all(client, run_id, params=params_of(config))
    for epoch, values in epoch_history(record.path).items():
        log_all(client, run_id, metrics=final_metrics(values), step=epoch)
    log_all(client, run_id, metrics=final_metrics(metrics))
    upload(client, run_id, record.path, safe_artifacts(record.path, metrics.get("artifacts")))
    client.set_terminated(run_id, "FINISHED", end_time=_time_ms(metrics.get("finished_at")))


def export(paths: list[str], uri: str) -> Exported:
    """Log the completed run folders under ``paths`` into ``uri``, each at most once."""
    check_uri(uri, "--to-mlflow")
    found = discover(paths)
    client = connect(uri, _DEFAULTS.request_timeout, _DEFAULTS.max_retries)
    result = Exported()
    for folder in found.runs:
        record = load_run(folder)
        if not record.ok:
            result.not_completed.append(record)
            continue
        content = content_id(folder)
        if already_logged(client, content):
            result.already.append(folder)
            continue
        log_folder(client, uri, record, content)
        result.logged.append(folder)
    return result
