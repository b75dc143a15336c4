"""One job of a sweep: resume or run, and record a failure instead of stopping the sweep.

Hydra 1.3 runs every job of a batch but then raises the first failure, which skips the
end-of-sweep hooks; a ConfigError turned into SystemExit would even stop the sweep at once.
So a sweep job never raises for an ordinary exception: the failure goes to the job folder
(``status: failed``, ``error.txt`` with the traceback) and the job returns a value a sweeper
can live with: NaN for the basic sweeper, which ignores it, and for a search with a direction
(the Optuna sweeper) the worst value of that direction, because Optuna ends the whole study
when a trial returns NaN or raises.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from anomaly_bench.run_folder import METRICS_FILE, config_snapshot, record_failure
from anomaly_bench.sweep.resume import completed_result, config_differences, job_folder
from anomaly_bench.sweep.summary import METRICS, write_record

log = logging.getLogger("anomaly_bench")


class ResultExistsError(RuntimeError):
    """The job folder already holds a completed result this job may not reuse or overwrite."""


def _failure_summary(exc: BaseException) -> str:
    """'ValueError: first line' for the sweep summary (the full traceback is in error.txt)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def reusable_result(cfg: DictConfig, folder: Path, resume: bool) -> dict | None:
    """The recorded metrics when ``resume`` may skip this job; raises if a result is in the way."""
    previous = completed_result(folder)
    if previous is None:
        return None
    differences = config_differences(previous.get("config"), config_snapshot(cfg))
    if resume and not differences:
        return previous
    if differences:
        detail = "; ".join(differences[:3]) + (f"; ... {len(differences) - 3} more" if len(differences) > 3 else "")
        raise ResultExistsError(
            f"{folder} already holds a completed run with a different config ({detail}); "
            "start a new sweep folder (hydra.sweep.dir=...) instead of overwriting it"
        )
    raise ResultExistsError(f"{folder} already holds a completed run; pass resume=true to skip finished jobs")


def result_elsewhere(cfg: DictConfig, output_dir: Path, sweep_dir: Path) -> tuple[Path, dict] | None:
    """Another folder of the sweep holding a completed result with exactly this job's config, and its metrics.

    Job folders are named by job number, and the numbers shift when a grid grows (adding
    seeds renumbers every job), so a finished result may sit under another job's name.
    """
    current = config_snapshot(cfg)
    for metrics_file in sorted(sweep_dir.rglob(METRICS_FILE)):
        folder = metrics_file.parent
        if folder == output_dir:
            continue
        previous = completed_result(folder)
        if previous is not None and not config_differences(previous.get("config"), current):
            return folder, previous
    return None


def run_sweep_job(cfg: DictConfig, output_dir: Path) -> float | None:
    """Run (or resume) one sweep job and record its outcome; returns the optimised metric, or
    :func:`failed_trial_value` when the job failed or the metric is undefined."""
    from hydra.core.hydra_config import HydraConfig

    from anomaly_bench.run import run

    hydra_cfg = HydraConfig.get()
    sweep_dir = Path(hydra_cfg.sweep.dir)
    scratch, output_dir = output_dir, job_folder(output_dir, sweep_dir)
    metric = cfg.get("optimized_metric", "val_auroc")
    record: dict = {
        "job": int(hydra_cfg.job.num),
        "overrides": " ".join(hydra_cfg.overrides.task),
        "folder": os.path.relpath(output_dir, sweep_dir),
        "resumed": False,
        "error": None,
    }
    started = time.perf_counter()
    metrics_mtime = _mtime(output_dir / METRICS_FILE)
    try:
        resume = bool(cfg.get("resume", False))
        metrics = reusable_result(cfg, output_dir, resume)
        source = output_dir
        if metrics is None and resume and (found := result_elsewhere(cfg, output_dir, sweep_dir)) is not None:
            source, metrics = found
            if not (output_dir / METRICS_FILE).exists():  # only Hydra's .hydra/ and the log: no result lost
                shutil.rmtree(output_dir, ignore_errors=True)
            record["folder"] = os.path.relpath(source, sweep_dir)
        if metrics is not None:
            log.info("resume: %s already holds a completed result with this config; skipping", source)
            record.update(resumed=True, duration_s=(metrics.get("timings") or {}).get("total"))
        else:
            metrics = run(cfg, output_dir)
            record["duration_s"] = time.perf_counter() - started
        record.update(status="completed", **{k: metrics.get(k) for k in METRICS})
        value = metrics.get(metric)
    except Exception as exc:
        _record_failure(output_dir, exc, recorded_by_run=_mtime(output_dir / METRICS_FILE) != metrics_mtime)
        record.update(status="failed", error=_failure_summary(exc), duration_s=time.perf_counter() - started)
        where = "" if isinstance(exc, ResultExistsError) else f" (traceback in {output_dir / 'error.txt'})"
        log.error("job %d failed: %s%s", record["job"], record["error"], where)
        value = None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        value = failed_trial_value(hydra_cfg)
    if record["duration_s"] is not None:
        record["duration_s"] = round(record["duration_s"], 2)
    if scratch != output_dir:
        _discard_scratch(scratch)
    write_record(sweep_dir, record)
    return value


def _discard_scratch(folder: Path) -> None:
    """Drop the scratch folder that took Hydra's files for a job whose own folder is a finished result."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if Path(getattr(handler, "baseFilename", "/")).parent == folder.resolve():
            root.removeHandler(handler)
            handler.close()
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()  # the scratch parent, once no other job uses it
    except OSError:
        pass


def failed_trial_value(hydra_cfg) -> float:
    """What a failed job reports to the sweeper: the worst value of every optimisable metric
    (all are fractions in [0, 1]) for the search's direction, NaN when the sweeper has none."""
    direction = OmegaConf.select(hydra_cfg, "sweeper.direction", default=None)
    if OmegaConf.is_list(direction) or isinstance(direction, (list, tuple)):
        direction = direction[0] if len(direction) else None
    name = str(getattr(direction, "name", direction)).lower()
    return {"maximize": 0.0, "minimize": 1.0}.get(name, math.nan)


def _record_failure(folder: Path, exc: BaseException, recorded_by_run: bool) -> None:
    """Failures before the run folder started (bad config, missing data) are recorded here."""
    if recorded_by_run or isinstance(exc, ResultExistsError):
        return  # run() wrote status failed + error.txt, or the folder is somebody's result
    problem = record_failure(folder, exc)
    if problem:
        log.error("could not record the failure in %s (%s); that folder holds no result", folder, problem)
