"""Is a job folder's result reusable? The recorded config must equal the config of this job.

Hydra rewrites ``.hydra/`` before a job's code starts, so the config a result was computed
with is recorded in ``metrics.json`` (key ``config``, see :func:`anomaly_bench.run_folder.config_snapshot`). Keys
that do not change a result are left out: ``resume`` itself and Hydra's own settings.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from anomaly_bench.run_folder import flatten, read_metrics

# Where Hydra's per-job files (.hydra/, run.log) go for a job whose own folder already holds a
# completed result: Hydra writes them before any of the project's code runs, and a finished
# folder is never modified. Compare skips dot-folders; the job removes its scratch folder.
SCRATCH_DIR = ".scratch"


def config_differences(recorded: dict | None, current: dict) -> list[str]:
    """``key: old -> new`` for every differing key (a missing record differs everywhere)."""
    if recorded is None:
        return ["no config recorded in metrics.json"]
    old, new = flatten(recorded), flatten(current)
    missing = object()
    return [
        f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key, missing) != new.get(key, missing)
    ]


def completed_result(folder: Path) -> dict | None:
    """The folder's metrics if it holds a completed result (running/failed/corrupt: None)."""
    metrics = read_metrics(folder)
    return metrics if metrics is not None and metrics.get("status") == "completed" else None


def untouched_job_subdir(subdir: str, *, _root_: DictConfig) -> str:
    """Resolver for ``hydra.sweep.subdir``: the job's folder name, or a scratch folder when that
    folder holds a completed result, so Hydra's own files never land in a finished run."""
    sweep_dir = Path(str(_root_.hydra.sweep.dir))
    return f"{SCRATCH_DIR}/{subdir}" if completed_result(sweep_dir / subdir) is not None else subdir


def job_folder(output_dir: Path, sweep_dir: Path) -> Path:
    """The job's own folder, also when Hydra was pointed at its scratch folder."""
    if output_dir.resolve().parent == (sweep_dir / SCRATCH_DIR).resolve():
        return sweep_dir / output_dir.name
    return output_dir
