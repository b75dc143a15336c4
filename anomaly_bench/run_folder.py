"""The run folder's layout and status protocol: a folder is a result only once metrics.json says completed.

run, sweep, compare and predict take the folder's file names, statuses, the metrics reader
and the config snapshot from here, so the layout is defined once.

metrics.json is written as ``running`` when work starts and replaced atomically at the end,
so a run killed half-way is recognisable as unfinished and never mistaken for a result.
A failure is recorded best effort: on a full disk the atomic write has no room for its
temporary file, so metrics.json is then rewritten in place (truncating frees its blocks),
and a caller learns what could not be written instead of getting a second exception.
"""

from __future__ import annotations

import json
import math
import os
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

METRICS_FILE = "metrics.json"
SWEEP_FILE = "multirun.yaml"  # Hydra writes it into every sweep folder
ERROR_FILE = "error.txt"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def write_json(path: Path, payload: dict) -> None:
    """Write atomically (temp file + rename): readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(_jsonable(payload), indent=2, allow_nan=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a half-written temporary file (full disk) is no one's
        raise


def read_metrics(folder: Path) -> dict | None:
    """The folder's metrics.json as an object, or None when it is missing, unreadable or not an object.

    For the folder's own protocol (start, resume, record a failure); a folder someone else made
    is read with :func:`anomaly_bench.run_files.read_run_metrics`, which names what is wrong."""
    try:
        metrics = json.loads((folder / METRICS_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return metrics if isinstance(metrics, dict) else None


class RunFolder:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.metrics: dict = {}

    def start(self, facts: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        previous = read_metrics(self.path)
        if previous and previous.get("status") == "completed":
            raise FileExistsError(f"{self.path} already holds a completed run; a run never overwrites another")
        (self.path / ERROR_FILE).unlink(missing_ok=True)  # left by an earlier failed attempt
        self.metrics = {"status": "running", "started_at": now_iso(), **facts}
        write_json(self.path / METRICS_FILE, self.metrics)

    def complete(self, results: dict) -> dict:
        self.metrics.update(results, status="completed", finished_at=now_iso())
        write_json(self.path / METRICS_FILE, self.metrics)
        return self.metrics

    def fail(self, exc: BaseException) -> str | None:
        """Mark the folder failed with the traceback in error.txt; never raises. Returns what could
        not be written (e.g. "metrics.json: No space left on device"), or None when all was."""
        self.metrics.update(status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=now_iso())
        problems = []
        try:
            write_json(self.path / METRICS_FILE, self.metrics)
        except (OSError, ValueError):
            try:
                with open(self.path / METRICS_FILE, "w") as handle:  # in place: no room for a temporary file
                    handle.write(json.dumps(_jsonable(self.metrics), allow_nan=False) + "\n")
            except (OSError, ValueError) as again:
                problems.append(f"{METRICS_FILE}: {getattr(again, 'strerror', None) or again}")
        try:
            (self.path / ERROR_FILE).write_text("".join(traceback.format_exception(exc)))
        except OSError as exc_write:
            problems.append(f"{ERROR_FILE}: {exc_write.strerror or exc_write}")
            try:
                (self.path / ERROR_FILE).unlink(missing_ok=True)  # an empty error.txt would explain nothing
            except OSError:
                pass
        return "; ".join(problems) or None


def record_failure(folder: Path, exc: BaseException) -> str | None:
    """Make sure a folder whose run raised says ``failed`` (keeping the facts of a started run).

    Returns None once recorded, else what could not be written. A completed result is never touched.
    """
    previous = read_metrics(folder)
    if previous is not None and previous.get("status") == "completed":
        return None
    record = RunFolder(folder)
    record.metrics = previous or {}
    return record.fail(exc)


# --- The files of a run folder, named once for every consumer (run, sweep, compare, predict). ---
COMPLETED, FAILED, RUNNING = "completed", "failed", "running"
STATUSES = (COMPLETED, FAILED, RUNNING)
SCORES_FILE = "scores.csv"
DETECTOR_FILE = "detector.json"
HYDRA_CONFIG_FILE = os.path.join(".hydra", "config.yaml")
#: Config keys that cannot change a result (where it is tracked included): left out of the snapshot
#: recorded in metrics.json, so a sweep resumed with another logger still finds its results.
NOT_RESULT_KEYS = ("resume", "logger", "hydra")
#: metrics.json keeps the detector's own facts (``describe()`` and what ``fit`` reported) under
#: this key, so a detector can never overwrite a pipeline metric such as ``threshold``.
DETECTOR_KEY = "detector"
#: Every top-level key the pipeline wrote while detector facts still sat beside them (one flat
#: mapping). In such a metrics.json any other top-level key came from the detector. Fixed for
#: good: it describes files already written, not what the pipeline writes today.
FLAT_LAYOUT_PIPELINE_KEYS = frozenset(
    {
        "status", "started_at", "finished_at", "error",
        "dataset", "model", "normal_classes", "anomaly_classes", "seed", "threads", "backend", "device",
        "data_source", "data_location", "test_split", "data", "versions", "config",
        "n_train", "n_train_anomalies", "n_val", "n_val_anomalies", "n_test", "n_test_anomalies", "val_auroc",
        "auroc", "auprc", "threshold", "threshold_rule", "oracle", "threshold_k", "threshold_q",
        "precision", "recall", "f1", "accuracy", "confusion_matrix", "flagged_rate_by_class",
        "artifacts", "timings",
    }
)  # fmt: skip


def detector_section(metrics: dict) -> dict:
    """The detector's facts in a metrics.json: its ``detector`` mapping or, in a file written
    before the facts were nested, the top-level keys the pipeline did not write."""
    nested = metrics.get(DETECTOR_KEY)
    if isinstance(nested, dict):
        return nested
    return {k: v for k, v in metrics.items() if k not in FLAT_LAYOUT_PIPELINE_KEYS}


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> dotted keys (``model.name``); lists stay values (``[0, 1]``)."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def config_snapshot(cfg) -> dict:
    """The resolved job config (an OmegaConf DictConfig) minus keys that cannot change a result;
    recorded in metrics.json so that resume can tell whether a finished result is this job's."""
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(container, dict):
        raise TypeError(f"config_snapshot needs a DictConfig, got {type(cfg).__name__}")
    return {k: v for k, v in container.items() if k not in NOT_RESULT_KEYS}


def write_detector_file(folder: Path, facts: dict) -> str:
    """``detector.json``: what turns the folder into a reusable detector (model config, saved
    files, threshold and its rule, preprocessing), written when the model files are."""
    write_json(Path(folder) / DETECTOR_FILE, facts)
    return DETECTOR_FILE
