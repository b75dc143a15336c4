"""Read one run folder into a :class:`RunRecord` without ever raising.

Speed matters (thousands of folders): metrics with ``json``, the composed config with
PyYAML's C loader (``OmegaConf.load`` is ~15x slower). Anything unreadable becomes a status
and a one-line ``problem`` that the table lists beside the good runs.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from anomaly_bench.compare.discover import HYDRA_CONFIG, METRICS_FILE
from anomaly_bench.run_files import MAX_FILE_BYTES
from anomaly_bench.run_folder import COMPLETED, DETECTOR_KEY, ERROR_FILE, STATUSES, detector_section, flatten

# What a completed metrics.json must hold for its row to mean anything.
REQUIRED_NUMBERS = ("auroc", "auprc", "precision", "recall", "f1", "threshold")
REQUIRED_TEXT = ("threshold_rule",)
KNOWN_STATUSES = STATUSES
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class RunRecord:
    """One folder: ``status`` is completed | failed | running | no_metrics | corrupt.

    ``config`` and ``metrics`` are flattened to dotted keys (``model.name``, ``timings.total``,
    ``detector.n_params``).
    """

    path: Path
    status: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "completed"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_completed(metrics: dict) -> str | None:
    missing = [k for k in REQUIRED_NUMBERS + REQUIRED_TEXT if k not in metrics]
    if missing:
        return f"metrics.json says completed but lacks {', '.join(missing)}"
    bad = [k for k in REQUIRED_NUMBERS if metrics[k] is not None and not _is_number(metrics[k])]
    bad += [k for k in REQUIRED_TEXT if not isinstance(metrics[k], str)]
    if bad:
        return f"metrics.json holds non-numeric {', '.join(bad)}"
    return None


def _read_config(folder: Path) -> tuple[dict, str | None]:
    path = os.path.join(folder, HYDRA_CONFIG)
    if not os.path.isfile(path):
        return {}, None
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            return {}, f".hydra/config.yaml is larger than {MAX_FILE_BYTES // 2**20} MB; not a file Hydra writes"
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
        if "*" in text and "&" in text and _has_alias(text):
            return (
                {},
                ".hydra/config.yaml uses YAML aliases; not a file Hydra writes (aliases can multiply a file's size)",
            )
        tree = yaml.load(text, Loader=_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return {}, f".hydra/config.yaml unreadable ({type(exc).__name__})"
    if not isinstance(tree, dict):
        return {}, ".hydra/config.yaml is not a mapping"
    return flatten(tree), None


def _has_alias(text: str) -> bool:
    """True when the YAML holds an alias (``*name``); only called when the text holds both ``&`` and ``*``."""
    return any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=_LOADER))


def _read_metrics(folder: Path) -> tuple[dict | None, str | None]:
    path = os.path.join(folder, METRICS_FILE)
    if not os.path.isfile(path):
        return None, None
    if os.path.getsize(path) > MAX_FILE_BYTES:
        return None, f"metrics.json is larger than {MAX_FILE_BYTES // 2**20} MB; not a file anomaly-bench writes"
    try:
        with open(path, encoding="utf-8") as handle:
            metrics = json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"metrics.json is not valid JSON ({type(exc).__name__})"
    if not isinstance(metrics, dict):
        return None, "metrics.json is not a JSON object"
    completed = metrics.get("status") == COMPLETED
    if completed and not isinstance(metrics.get(DETECTOR_KEY), dict) and (legacy := detector_section(metrics)):
        # Finished before detector facts were nested: they are read as detector.* too, so one
        # column holds old and new runs alike.
        metrics = {**metrics, DETECTOR_KEY: legacy}
    return flatten(metrics), None


def _failure_reason(folder: Path, metrics: dict) -> str:
    error = str(metrics.get("error") or "no error message").strip().splitlines()
    where = f"; traceback in {ERROR_FILE}" if os.path.isfile(os.path.join(folder, ERROR_FILE)) else ""
    return f"{error[0] if error else 'no error message'}{where}"


def load_run(folder: Path) -> RunRecord:
    """The record of one run folder; problems become a status, never an exception.

    Whatever a folder holds (a metrics.json nested 200,000 deep, numbers too large for a
    float), the other folders' rows still print: any error marks this one corrupt with the reason.
    """
    try:
        return _load_run(folder)
    except Exception as exc:
        reason = str(exc).strip().splitlines()
        detail = f": {reason[0][:160]}" if reason else ""
        return RunRecord(folder, "corrupt", {}, {}, f"unreadable ({type(exc).__name__}{detail})")


def _load_run(folder: Path) -> RunRecord:
    config, config_problem = _read_config(folder)
    metrics, metrics_problem = _read_metrics(folder)
    if metrics_problem:
        return RunRecord(folder, "corrupt", config, {}, metrics_problem)
    if metrics is None:
        return RunRecord(
            folder, "no_metrics", config, {}, "no metrics.json: the job never started or was killed before it began"
        )
    status = metrics.get("status")
    if status not in KNOWN_STATUSES:
        return RunRecord(folder, "corrupt", config, metrics, f"metrics.json has unknown status {status!r}")
    if status == "failed":
        return RunRecord(folder, "failed", config, metrics, _failure_reason(folder, metrics))
    if status == "running":
        return RunRecord(
            folder,
            "running",
            config,
            metrics,
            "unfinished: metrics.json says running (still running, or killed mid-way)",
        )
    problem = _check_completed(metrics) or config_problem
    if problem:
        return RunRecord(folder, "corrupt", config, metrics, problem)
    missing = None if config else "no .hydra/config.yaml: its config columns stay blank"
    return RunRecord(folder, "completed", config, metrics, missing)
