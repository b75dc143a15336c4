"""The observer seam: the events a run and a sweep announce, and the fan-out to the chosen trackers.

Observers are built from the ``logger`` config group (``logger.<name>._target_``), checked by
the config schema before training (:func:`anomaly_bench.config.check_logger`), and called by
the pipeline (anomaly_bench/run.py) after the run folder has recorded the same event. A
tracker is somebody else's server or disk: whatever it raises is reported as one warning
line and the tracker is dropped for the rest of the run, so the run and its folder go on.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anomaly_bench.errors import one_line
from anomaly_bench.run_folder import flatten

log = logging.getLogger("anomaly_bench")


@dataclass(frozen=True)
class RunStarted:
    """A run folder has just been marked ``running``: what a tracker records about the run."""

    folder: Path  # the run folder (absolute)
    config: dict[str, Any]  # the composed config, as recorded in metrics.json
    facts: dict[str, Any]  # the start facts of metrics.json: dataset, model, classes, backend, device, ...


@dataclass(frozen=True)
class SweepStarted:
    """``anomaly-bench -m`` is about to launch its jobs (in this or other processes)."""

    folder: Path  # the sweep folder; jobs find what a tracker leaves here (e.g. a parent run id)
    config: dict[str, Any]  # the sweep's composed config (swept keys at their base values)


@dataclass(frozen=True)
class SweepEnded:
    folder: Path
    summary: Path  # summary.csv
    n_jobs: int
    n_failed: int


#: metrics.json keys that are facts about the run, not results.
NOT_RESULTS = ("config", "data", "versions", "seed", "threads", "normal_classes", "anomaly_classes")


def result_numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of metrics.json under dotted keys (auroc, f1, val_auroc, timings.fit, ...);
    ``metrics`` may be nested or already flattened."""
    return {
        key: float(value)
        for key, value in flatten(metrics).items()
        if key.split(".", 1)[0] not in NOT_RESULTS
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    }


class Observer:
    """Base of every tracker: each hook is optional; raising in one only drops this tracker."""

    def check_settings(self) -> None:
        """Raise ConfigError for settings that cannot work; runs before training, contacts nothing."""

    def run_started(self, run: RunStarted) -> None:
        """The run folder says ``running``."""

    def epoch_ended(self, epoch: int, logs: dict[str, float]) -> None:
        """A training epoch ended (1-based ``epoch``); ``logs`` holds every value Keras logged."""

    def artifacts_written(self, folder: Path, names: list[str]) -> None:
        """Files of the completed run folder (relative names, metrics.json included)."""

    def run_completed(self, metrics: dict[str, Any]) -> None:
        """metrics.json says ``completed``; ``metrics`` is its content."""

    def run_failed(self, metrics: dict[str, Any], error: BaseException) -> None:
        """metrics.json says ``failed`` (``error`` is what raised: an interrupt or an exception)."""

    def sweep_started(self, sweep: SweepStarted) -> None:
        """Called in the process that starts a sweep, before any job."""

    def sweep_ended(self, sweep: SweepEnded) -> None:
        """Called in the process that started the sweep, after summary.csv is written."""


class Trackers:
    """The trackers of one run or sweep; calls each in turn and drops one that raises, with one warning."""

    def __init__(self, observers: dict[str, Observer]) -> None:
        self.active = dict(observers)

    @classmethod
    def from_config(cls, logger: dict[str, Any] | None) -> Trackers:
        """Build the trackers of a ``logger`` node that :func:`anomaly_bench.config.check_logger` accepted."""
        from anomaly_bench.config import build

        return cls({name: build(f"logger.{name}", node) for name, node in (logger or {}).items()})

    def _announce(self, hook: str, *args: Any) -> None:
        for name, observer in list(self.active.items()):
            try:
                getattr(observer, hook)(*args)
            except Exception as exc:
                del self.active[name]
                log.warning("tracker %s: %s; the run goes on without it", name, one_line(exc) or type(exc).__name__)

    def run_started(self, run: RunStarted) -> None:
        self._announce("run_started", run)

    def epoch_ended(self, epoch: int, logs: dict[str, float]) -> None:
        self._announce("epoch_ended", epoch, logs)

    def artifacts_written(self, folder: Path, names: list[str]) -> None:
        self._announce("artifacts_written", folder, names)

    def run_completed(self, metrics: dict[str, Any]) -> None:
        self._announce("run_completed", metrics)

    def run_failed(self, metrics: dict[str, Any], error: BaseException) -> None:
        self._announce("run_failed", metrics, error)

    def sweep_started(self, sweep: SweepStarted) -> None:
        self._announce("sweep_started", sweep)

    def sweep_ended(self, sweep: SweepEnded) -> None:
        self._announce("sweep_ended", sweep)
