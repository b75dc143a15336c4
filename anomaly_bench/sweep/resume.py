"""Is a job folder's result reusable? The recorded config must equal the config of this job.

Hydra rewrites ``.hydra/`` before a job's code starts, so the config a result was computed
with is recorded in ``metrics.json`` (key ``config``, see :func:`anomaly_bench.run_folder.config_snapshot`). Keys
that do not change a result are left out: ``resume`` itself and Hydra's own settings.
"""

from __future__ import annotations

import inspect
from dataclasses import fields
from pathlib import Path

from omegaconf import DictConfig

from anomaly_bench.run_folder import flatten, read_metrics

# Where Hydra's per-job files (.hydra/, run.log) go for a job whose own folder already holds a
# completed result: Hydra writes them before any of the project's code runs, and a finished
# folder is never modified. Compare skips dot-folders; the job removes its scratch folder.
SCRATCH_DIR = ".scratch"


#: Dataset keys that cannot change a result: where decoded images are cached, and the class path
#: (``dataset.name`` names the source; records made before datasets had a ``_target_`` lack it).
NOT_RESULT_DATASET_KEYS = ("cache", "_target_")


def _source_class(dataset: dict) -> type | None:
    """The package's source class a recorded dataset config used, matched as a string: by its
    ``_target_``, or by ``name`` for records without one. Nothing named in a record is imported."""
    from anomaly_bench.data.sources import declared_sources

    declared = declared_sources()
    target = dataset.get("_target_")
    if target is None:
        return declared.get(str(dataset.get("name")))
    return next((c for c in declared.values() if f"{c.__module__}.{c.__qualname__}" == target), None)


def comparable(config: dict) -> dict:
    """A recorded or current config in the form resume compares: the dataset's keys completed
    with their defaults (split settings and the source's own), keys its source does not take
    dropped (older records carried source and download_timeout for every dataset), and keys
    that cannot change a result left out."""
    dataset = config.get("dataset")
    if not isinstance(dataset, dict):
        return config
    from anomaly_bench.data.split import SplitConfig

    cls = _source_class(dataset)
    if cls is not None:
        params = inspect.signature(cls).parameters
        split_defaults = {
            f.name: f.default_factory() if callable(f.default_factory) else f.default for f in fields(SplitConfig)
        }
        own = {k: p.default for k, p in params.items() if p.default is not p.empty}
        dataset = {**split_defaults, **own, **{k: v for k, v in dataset.items() if k in params or k in split_defaults}}
    dataset = {k: v for k, v in dataset.items() if k not in NOT_RESULT_DATASET_KEYS}
    return {**config, "dataset": dataset}


def config_differences(recorded: dict | None, current: dict) -> list[str]:
    """``key: old -> new`` for every differing key (a missing record differs everywhere)."""
    if recorded is None:
        return ["no config recorded in metrics.json"]
    old, new = flatten(comparable(recorded)), flatten(comparable(current))
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
