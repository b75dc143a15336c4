"""Is a job folder's result reusable? The recorded config must equal the config of this job.

Hydra rewrites ``.hydra/`` before a job's code starts, so the config a result was computed
with is recorded in ``metrics.json`` (key ``config``, see :func:`anomaly_bench.run_folder.config_snapshot`). Keys
that do not change a result are left out: ``resume`` itself and Hydra's own settings.
"""
from __future__ import annotations

from pathlib import Path

from anomaly_bench.run_folder import flatten, read_metrics


def config_differences(recorded: dict | None, current: dict) -> list[str]:
    """``key: old -> new`` for every differing key (a missing record differs everywhere)."""
    if recorded is None:
        return ["no config recorded in metrics.json"]
    old, new = flatten(recorded), flatten(current)
    missing = object()
    return [f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}"
            for key in sorted(old.keys() | new.keys()) if old.get(key, missing) != new.get(key, missing)]


def completed_result(folder: Path) -> dict | None:
    """The folder's metrics if it holds a completed result (running/failed/corrupt: None)."""
    metrics = read_metrics(folder)
    return metrics if metrics is not None and metrics.get("status") == "completed" else None
