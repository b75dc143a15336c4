"""The pipeline: composed config in, trained model, scores and a complete run folder out.

``run(cfg)`` is a plain function so tests and notebooks call it through Hydra's compose API;
the command line (cli.py) only adds Hydra's folder handling and exit codes around it.
Everything that can be checked is checked before the folder starts to look like a result.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from anomaly_bench import backend, plots
from anomaly_bench.config import RunSettings, validate
from anomaly_bench.config import build as _instantiate
from anomaly_bench.console import held_progress
from anomaly_bench.data import RawDataset, Splits
from anomaly_bench.data.validation import validation_metrics
from anomaly_bench.errors import ConfigError
from anomaly_bench.metrics import decision_metrics, flagged_rate_by_class, ranking_metrics
from anomaly_bench.models.base import Detector, TrainingData
from anomaly_bench.run_folder import (
    DETECTOR_KEY,
    HYDRA_CONFIG_FILE,
    METRICS_FILE,
    SCORES_FILE,
    RunFolder,
    config_snapshot,
    write_detector_file,
)
from anomaly_bench.threads import limit_threads, threads_for_job
from anomaly_bench.thresholds import ScoreSets, ThresholdRule
from anomaly_bench.tracking.observer import RunStarted, Trackers
from anomaly_bench.trained import detector_facts

log = logging.getLogger("anomaly_bench")


def _versions() -> dict[str, str]:
    """Installed versions of what shaped the result; a backend that is not installed is left out."""
    found = {"python": platform.python_version()}
    for package in (
        "anomaly-bench",
        "tensorflow",
        "jax",
        "jaxlib",
        "torch",
        "keras",
        "numpy",
        "scikit-learn",
        "hydra-core",
    ):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    if "tensorflow" not in found and "tensorflow" in sys.modules:  # e.g. installed as tensorflow-cpu
        found["tensorflow"] = sys.modules["tensorflow"].__version__
    return found


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and the backend; deterministic kernels where the backend offers them."""
    import keras

    keras.utils.set_random_seed(seed)
    if deterministic:
        backend.make_deterministic()


class Prepared(NamedTuple):
    """Everything a run needs, built and checked before its folder starts to look like a result."""

    settings: RunSettings
    rule: ThresholdRule
    detector: Detector
    raw: RawDataset
    splits: Splits


def prepare(cfg: DictConfig) -> Prepared:
    """Validate and build everything that can fail for a reason the user can fix.

    Settings come first, then the data (read and checked), then what needs the data: the
    detector's shape checks (the image shape comes from the data) and its size checks (k
    neighbours, PCA components, validation images). All of it happens before a run folder starts.
    """
    settings = validate(cfg)
    rule: ThresholdRule = _instantiate("threshold", settings.threshold)
    if rule.needs_validation and settings.dataset.split.val_fraction == 0:
        raise ConfigError(f"threshold={rule.name} needs validation images; set dataset.val_fraction > 0")
    settings.trainer.threads = limit_threads(threads_for_job(settings.trainer.threads))
    seed_everything(settings.trainer.seed, settings.trainer.deterministic)
    detector = _instantiate("model", settings.model)
    if detector.supervision == "supervised" and settings.dataset.split.labelled_anomalies == 0:
        raise ConfigError(
            f"dataset.labelled_anomalies=0 but model={detector.name} is supervised and trains on "
            "labelled anomalies; set dataset.labelled_anomalies to a count > 0 (article 001: 10)"
        )
    if detector.needs_validation and settings.dataset.split.val_fraction == 0:
        raise ConfigError(
            f"dataset.val_fraction=0 but model={detector.name} needs validation images; "
            "set dataset.val_fraction > 0 (default 0.1)"
        )
    detector.check()  # its settings alone: bad ones fail before any data is read
    raw, splits = settings.dataset.load()
    detector.check(raw.image_shape, splits)  # the same entry point, now with the data's shape and size
    _check_validation_size(settings, rule, detector, splits)
    return Prepared(settings, rule, detector, raw, splits)


def _check_validation_size(settings: RunSettings, rule: ThresholdRule, detector, splits: Splits) -> None:
    """A validation share that rounds to no image is refused when anything needs validation images."""
    if len(splits.val):
        return
    es = settings.trainer.early_stopping
    users = [f"threshold={rule.name}"] * rule.needs_validation + [f"model={detector.name}"] * detector.needs_validation
    users += ["trainer.early_stopping"] * (es.enabled and es.monitor.startswith("val_"))
    if users and settings.dataset.split.val_fraction > 0:
        n = len(splits.train) - int(splits.train.labels.sum())
        raise ConfigError(
            f"dataset.val_fraction={settings.dataset.split.val_fraction} of {n} normal training images rounds "
            f"to 0 validation images, but {' and '.join(users)} needs them; raise dataset.val_fraction "
            "or dataset.max_train"
        )


def data_facts(raw, splits: Splits) -> dict:
    """What the data layer did, for metrics.json: shapes, conversion, class names, skipped files."""
    return {
        **raw.info,
        "class_names": splits.class_names,
        "normal_class_names": splits.names(splits.normal_classes),
        "anomaly_class_names": splits.names(splits.anomaly_classes),
        "model_input": "float32 in [0, 1] (uint8 / 255)",
    }


def _pick(split_labels: np.ndarray, value: int, n: int) -> np.ndarray:
    """Up to n test images of one kind, spread evenly over the split (same picks every run)."""
    candidates = np.flatnonzero(split_labels == value)
    if len(candidates) == 0:
        return candidates
    return candidates[np.linspace(0, len(candidates) - 1, num=min(n, len(candidates))).astype(int)]


def write_artifacts(
    folder: Path,
    settings: RunSettings,
    detector,
    splits: Splits,
    history: pd.DataFrame,
    test_scores: np.ndarray,
    flagged: np.ndarray,
    threshold: float,
    metrics: dict,
    data_source: str = "",
) -> list[str]:
    title = plots.run_title(settings.dataset.name, detector.name, splits.names(splits.normal_classes), data_source)
    test = splits.test
    pd.DataFrame(
        {
            "index": test.index,
            "label": test.labels,
            "class": test.classes,
            "score": test_scores,
            "flagged": flagged.astype(int),
        }
    ).to_csv(folder / SCORES_FILE, index=False)
    written = [SCORES_FILE]
    if len(history):
        history.to_csv(folder / "history.csv", index=False)
        plots.training_curve(history, folder / "training_curve.png", title)
        written += ["history.csv", "training_curve.png"]
    plots.score_histogram(
        test_scores,
        test.labels,
        threshold,
        folder / "score_histogram.png",
        f"{title}\nthreshold: {metrics['threshold_rule']}",
    )
    plots.roc(test.labels, test_scores, metrics["auroc"], folder / "roc_curve.png", title)
    plots.precision_recall(test.labels, test_scores, metrics["auprc"], folder / "pr_curve.png", title)
    plots.confusion(metrics["confusion_matrix"], folder / "confusion_matrix.png", title)
    written += ["score_histogram.png", "roc_curve.png", "pr_curve.png", "confusion_matrix.png"]
    picks = [_pick(test.labels, value, settings.n_reconstructions) for value in (0, 1)]
    chosen = np.concatenate(picks)
    recon = detector.reconstruct(test.subset(chosen).x) if len(chosen) else None
    if recon is not None:
        rows, start = [], 0
        for kind, pick in zip(("normal", "anomaly"), picks):
            if len(pick):
                rows.append((f"{kind}: original", test.subset(pick).x))
                rows.append((f"{kind}: {detector.reconstruction_label}", recon[start : start + len(pick)]))
            start += len(pick)
        plots.reconstructions(rows, folder / "reconstructions.png", title)
        written.append("reconstructions.png")
    written += detector.write_extra_artifacts(folder, splits, test_scores)
    saved = detector.save(folder)
    rule = {k: v for k, v in metrics.items() if k.startswith("threshold_") or k == "oracle"}
    written += saved + [
        write_detector_file(
            folder,
            detector_facts(
                settings.model,
                splits.image_shape,
                threshold,
                rule,
                saved,
                settings.dataset.source.image_size,
                settings.dataset.source.channels,
            ),
        )
    ]
    return written


def run(cfg: DictConfig, output_dir: str | Path | None = None) -> dict:
    """Run one experiment and return its metrics (also written to ``output_dir/metrics.json``).

    ``output_dir`` defaults to the Hydra run folder; pass one when calling through the
    compose API. Raises ConfigError (nothing written) for bad input; any later failure is
    recorded as ``status: failed`` with ``error.txt`` and re-raised.

    The trackers of the ``logger`` group hear of each event after the run folder has recorded
    it (started, every epoch, artifacts, completed or failed); they never change the outcome.
    """
    from anomaly_bench.models.keras_training import epoch_listener

    started = time.perf_counter()
    with held_progress():
        log.info("stage config: validating")
        settings, rule, detector, raw, splits = prepare(cfg)
    counts = splits.counts()
    log.info(
        "stage data: %s from %s - train %d (anomalies %d), val %d, test %d (anomalies %d)",
        settings.dataset.name,
        raw.source,
        counts["n_train"],
        counts["n_train_anomalies"],
        counts["n_val"],
        counts["n_test"],
        counts["n_test_anomalies"],
    )

    if output_dir is None:
        from hydra.core.hydra_config import HydraConfig

        output_dir = HydraConfig.get().runtime.output_dir
    folder = RunFolder(Path(output_dir))
    if not (folder.path / HYDRA_CONFIG_FILE).exists():
        (folder.path / HYDRA_CONFIG_FILE).parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, folder.path / HYDRA_CONFIG_FILE)
    trackers = Trackers.from_config(settings.logger)
    handler = _attach_run_log(folder.path)
    facts: dict[str, Any] = {
        "dataset": settings.dataset.name,
        "model": detector.name,
        "normal_classes": splits.normal_classes,
        "anomaly_classes": splits.anomaly_classes,
        "seed": settings.trainer.seed,
        "threads": settings.trainer.threads,
        "backend": backend.name(),
        "device": backend.device(),
        "data_source": raw.source,
        "data_location": raw.location,
        "test_split": raw.test_split,
        **counts,
        "data": data_facts(raw, splits),
        "versions": _versions(),
        "config": config_snapshot(cfg),
    }
    folder.start(facts)
    trackers.run_started(RunStarted(folder.path.resolve(), facts["config"], facts))
    try:
        if detector.trains_by_epochs:
            log.info("stage fit: %s for up to %d epochs", detector.name, settings.trainer.epochs)
        else:
            unused = ", ".join(detector.unused_settings)
            log.info("stage fit: %s in one pass, not by epochs (%s do not apply)", detector.name, unused)
        t0 = time.perf_counter()
        detector.run_dir = folder.path
        with epoch_listener(trackers.epoch_ended):
            fit = detector.fit(TrainingData.of(splits), settings.trainer)
        t_fit = time.perf_counter() - t0

        log.info("stage score: %d test images", counts["n_test"])
        t0 = time.perf_counter()
        test_scores = detector.score(splits.test.x)
        t_score = time.perf_counter() - t0
        score_sets = ScoreSets(
            train=detector.score(splits.train.x) if "train" in rule.needs else np.empty(0),
            val=detector.score(splits.val.x) if "val" in rule.needs else np.empty(0),
            test=test_scores,
            test_labels=splits.test.labels,
        )
        threshold = rule(score_sets)
        flagged = test_scores > threshold
        metrics = {
            **validation_metrics(detector, raw, splits, settings.dataset.split, score_sets.val),
            **ranking_metrics(splits.test.labels, test_scores),
            "threshold": threshold,
            **rule.describe(),
            **decision_metrics(splits.test.labels, flagged),
            "flagged_rate_by_class": flagged_rate_by_class(splits.test.classes, flagged, splits.class_names),
            DETECTOR_KEY: {**detector.describe(), **fit.info},
        }
        log.info("stage artefacts: writing plots and model")
        t0 = time.perf_counter()
        metrics["artifacts"] = write_artifacts(
            folder.path, settings, detector, splits, fit.history, test_scores, flagged, threshold, metrics, raw.source
        )
        t_art = time.perf_counter() - t0
        metrics["timings"] = {
            "fit": t_fit,
            "score": t_score,
            "artifacts": t_art,
            "total": time.perf_counter() - started,
        }
        result = folder.complete(metrics)
    except BaseException as exc:
        folder.fail(exc)
        trackers.run_failed(folder.metrics, exc)
        _detach_run_log(handler)
        raise
    try:
        trackers.artifacts_written(folder.path, [*result["artifacts"], METRICS_FILE])
        trackers.run_completed(result)
    finally:
        _detach_run_log(handler)
    auroc = result["auroc"]
    log.info(
        "done: auroc %s, f1 %.4f, threshold %.5g (%s) -> %s",
        f"{auroc:.4f}" if auroc is not None else "n/a",
        result["f1"],
        threshold,
        rule.name,
        folder.path,
    )
    return result


def _attach_run_log(folder: Path) -> logging.Handler | None:
    """Hydra's job logging already writes run.log; compose-API callers get one here."""
    target = os.path.abspath(folder / "run.log")
    root = logging.getLogger()
    if any(getattr(h, "baseFilename", None) == target for h in root.handlers):
        return None
    handler = logging.FileHandler(target)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler


def _detach_run_log(handler: logging.Handler | None) -> None:
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        handler.close()
