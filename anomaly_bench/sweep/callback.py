"""The Hydra callback that frames a sweep: job count, progress lines, Keras cleanup, summary.

Configured under ``hydra.callbacks`` (conf/hydra/default.yaml). Hydra calls the multirun
hooks in the process that started the sweep and the job hooks wherever the job runs (the
same process for the basic launcher, a reused worker for joblib, a cluster node for
submitit); the callback object travels to the workers with the attributes set in
``on_multirun_start``, which is how every job knows the size of the sweep.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from anomaly_bench.tracking.observer import SweepEnded, SweepStarted, Trackers

log = logging.getLogger("anomaly_bench")
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass(frozen=True)
class SweepOutcome:
    summary: Path
    n_jobs: int
    n_failed: int


_last_outcome: SweepOutcome | None = None


def pop_outcome() -> SweepOutcome | None:
    """The sweep that ended in this process since the last call; the CLI turns failures into its exit code."""
    global _last_outcome
    outcome, _last_outcome = _last_outcome, None
    return outcome


def count_jobs(config: DictConfig) -> int | None:
    """Number of jobs the basic sweeper will launch (None for other sweepers or glob sweeps)."""
    if OmegaConf.select(config, "hydra.sweeper._target_") != BASIC_SWEEPER:
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    arguments += [str(o) for o in config.hydra.overrides.task]
    try:
        overrides = OverridesParser.create().parse_overrides(arguments)
        (batch,) = BasicSweeper.split_arguments(overrides, None)
    except Exception:
        return None
    return len(batch)


def task_container(config: DictConfig) -> dict[str, Any]:
    """The sweep's config without the ``hydra`` node, resolved (Hydra's own keys resolve only per job)."""
    task: dict[str, Any] = {}
    for key in config:
        if key != "hydra":
            node = config[key]
            task[str(key)] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    return task


def sweep_trackers(config: DictConfig) -> Trackers:
    """The trackers of the sweep's ``logger`` group; a bad setting was refused before the sweep started."""
    from anomaly_bench.config import check_logger

    logger = OmegaConf.to_container(config.logger, resolve=True) if "logger" in config else None
    return Trackers.from_config(check_logger(logger))


# The trackers of the sweep running in this process. Not an attribute of the callback: launchers
# send the callback to their workers, and a tracker's client (a database connection) does not travel.
_sweep_trackers = Trackers({})


class SweepCallback(Callback):
    def __init__(self) -> None:
        self.n_jobs: int | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Count the jobs, reset the job records, and let the trackers open the sweep (an MLflow parent
        run whose id jobs read from the sweep folder, in whichever process they run)."""
        from anomaly_bench.sweep.summary import reset_records

        self.n_jobs = count_jobs(config)
        sweep_dir = Path(config.hydra.sweep.dir)
        reset_records(sweep_dir)
        global _sweep_trackers
        _sweep_trackers = sweep_trackers(config)
        _sweep_trackers.sweep_started(SweepStarted(sweep_dir.resolve(), task_container(config)))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        number = int(config.hydra.job.num)
        position = f"{number + 1}/{self.n_jobs}" if self.n_jobs else f"{number + 1}"
        overrides = " ".join(config.hydra.overrides.task)
        log.info("job %s (#%d): %s", position, number, overrides or "(no overrides)")

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """Free the Keras graph and weights: launcher workers run many jobs in one process."""
        if "keras" in sys.modules:
            import keras

            keras.utils.clear_session(free_memory=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _last_outcome
        from anomaly_bench.sweep.optuna_checks import correct_results
        from anomaly_bench.sweep.summary import describe, read_records, write_summary

        sweep_dir = Path(config.hydra.sweep.dir)
        path, table = write_summary(sweep_dir, read_records(sweep_dir))
        correction = correct_results(sweep_dir, table, config)
        print(describe(table, path), flush=True)
        if correction:
            print(correction, flush=True)
        _last_outcome = SweepOutcome(summary=path, n_jobs=len(table), n_failed=int((table["status"] == "failed").sum()))
        _sweep_trackers.sweep_ended(SweepEnded(sweep_dir.resolve(), path, _last_outcome.n_jobs, _last_outcome.n_failed))
