"""The structured-config schema and the checks that run before any training.

Hydra composes YAML; this module is where a composed config is held to the schema
(types, known keys), then to the rules YAML cannot express (class ranges, disjoint
classes, positive sizes, importable targets). Everything raises :class:`ConfigError`
with one line naming the key, the value and what is allowed.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from anomaly_bench.data.sources import SOURCES
from anomaly_bench.errors import ConfigError

N_CLASSES = 10


@dataclass
class DatasetConfig:
    name: str = "mnist"
    normal_classes: list[int] = field(default_factory=lambda: [0])
    anomaly_classes: Any = "rest"
    labelled_anomalies: int = 0
    val_fraction: float = 0.1
    val_anomalies: int = 200
    max_train: Optional[int] = None
    max_test: Optional[int] = None
    split_seed: int = 0
    source: str = "auto"
    path: Optional[str] = None
    download_timeout: float = 10.0


@dataclass
class EarlyStoppingConfig:
    enabled: bool = False
    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    restore_best_weights: bool = True


@dataclass
class TrainerConfig:
    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 0.001
    seed: int = 0
    deterministic: bool = False
    threads: Optional[int] = None
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


@dataclass
class RunSettings:
    """The typed view of a composed config that the pipeline works with."""

    dataset: DatasetConfig
    trainer: TrainerConfig
    model: dict
    threshold: dict
    optimized_metric: str = "val_auroc"
    resume: bool = False
    n_reconstructions: int = 8


TOP_LEVEL_KEYS = {"dataset", "model", "threshold", "trainer", "paths", "optimized_metric",
                  "resume", "n_reconstructions", "hydra"}


def _typed(schema: type, node: Any, group: str):
    """Merge a group onto its dataclass schema: unknown keys and wrong types fail here."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = f"{group}.{exc.full_key}" if getattr(exc, "full_key", None) else group
        reason = str(exc).splitlines()[0]
        raise ConfigError(f"{key}: {reason}") from None


def _check_classes(key: str, value: Any) -> list[int]:
    if not isinstance(value, (list, tuple, ListConfig)) or len(value) == 0:
        raise ConfigError(f"{key}={value!r} must be a non-empty list of classes 0-{N_CLASSES - 1}")
    bad = [c for c in value if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < N_CLASSES]
    if bad:
        raise ConfigError(f"{key}={list(value)} contains {bad}; allowed classes are 0-{N_CLASSES - 1}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{key}={list(value)} lists a class twice")
    return [int(c) for c in value]


def check_dataset(ds: DatasetConfig) -> None:
    normal = _check_classes("dataset.normal_classes", ds.normal_classes)
    if ds.anomaly_classes == "rest":
        anomalous = [c for c in range(N_CLASSES) if c not in normal]
        if not anomalous:
            raise ConfigError("dataset.normal_classes lists all 10 classes; no anomaly class is left for anomaly_classes=rest")
    elif isinstance(ds.anomaly_classes, str):
        raise ConfigError(f"dataset.anomaly_classes={ds.anomaly_classes!r} must be 'rest' or a list of classes 0-9")
    else:
        anomalous = _check_classes("dataset.anomaly_classes", ds.anomaly_classes)
    overlap = sorted(set(normal) & set(anomalous))
    if overlap:
        raise ConfigError(
            f"dataset.anomaly_classes={list(anomalous)} overlaps dataset.normal_classes={normal} in {overlap}; "
            "a class is either normal or anomalous"
        )
    if not 0.0 <= ds.val_fraction < 1.0:
        raise ConfigError(f"dataset.val_fraction={ds.val_fraction} must be in [0, 1)")
    for key in ("max_train", "max_test"):
        value = getattr(ds, key)
        if value is not None and value <= 0:
            raise ConfigError(f"dataset.{key}={value} must be a positive count or null (all images)")
    if ds.val_anomalies < 0:
        raise ConfigError(f"dataset.val_anomalies={ds.val_anomalies} must be >= 0 (0 = no val_auroc)")
    if ds.labelled_anomalies < 0:
        raise ConfigError(f"dataset.labelled_anomalies={ds.labelled_anomalies} must be >= 0")
    if ds.source not in SOURCES:
        raise ConfigError(f"dataset.source={ds.source!r} is not allowed; choose one of: {', '.join(SOURCES)}")
    if ds.source == "explicit" and not ds.path:
        raise ConfigError("dataset.source=explicit needs dataset.path=<IDX folder or .npz>")


def check_trainer(tr: TrainerConfig) -> None:
    for key in ("epochs", "batch_size"):
        if getattr(tr, key) <= 0:
            raise ConfigError(f"trainer.{key}={getattr(tr, key)} must be a positive integer")
    if tr.learning_rate <= 0:
        raise ConfigError(f"trainer.learning_rate={tr.learning_rate} must be > 0")
    if tr.threads is not None and tr.threads <= 0:
        raise ConfigError(f"trainer.threads={tr.threads} must be a positive integer or null (TensorFlow's default)")
    if tr.early_stopping.patience < 0:
        raise ConfigError(f"trainer.early_stopping.patience={tr.early_stopping.patience} must be >= 0")


def _import_class(dotted: str) -> type | None:
    """The class at a dotted path, or None (quietly: the caller words the error)."""
    module_name, _, attr = str(dotted).rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr) if module_name else None
    except Exception:
        return None
    return obj if isinstance(obj, type) else None


def resolve_target(group: str, node: dict) -> type:
    """Import ``_target_`` and check the group's other keys are parameters it accepts."""
    target = node.get("_target_")
    if not target:
        raise ConfigError(f"{group}._target_ is missing; it must name a class, e.g. anomaly_bench.thresholds.TrainMean")
    cls = _import_class(target)
    if cls is None:
        raise ConfigError(f"{group}._target_={target!r} does not import; it must name an importable class")
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(k for k in node if k != "_target_" and k not in params)
        if unknown:
            allowed = ", ".join(k for k in params if k != "self")
            raise ConfigError(f"{group}.{unknown[0]} is not a setting of {target}; allowed: {allowed}")
    return cls


def validate(cfg: DictConfig) -> RunSettings:
    """Schema + semantic checks of a composed config; raises ConfigError on the first problem."""
    unknown = sorted(set(cfg.keys()) - TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(f"{unknown[0]} is not a config key; top-level keys are: {', '.join(sorted(TOP_LEVEL_KEYS - {'hydra'}))}")
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{getattr(exc, 'full_key', 'config')}: {str(exc).splitlines()[0]}") from None
    dataset = _typed(DatasetConfig, container.get("dataset", {}), "dataset")
    trainer = _typed(TrainerConfig, container.get("trainer", {}), "trainer")
    check_dataset(dataset)
    check_trainer(trainer)
    if trainer.early_stopping.enabled and trainer.early_stopping.monitor.startswith("val_") and dataset.val_fraction == 0:
        raise ConfigError(
            f"trainer.early_stopping.monitor={trainer.early_stopping.monitor} needs validation images; set dataset.val_fraction > 0"
        )
    model, threshold = container.get("model") or {}, container.get("threshold") or {}
    resolve_target("model", model)
    resolve_target("threshold", threshold)
    metric = container.get("optimized_metric", "val_auroc")
    if metric not in OPTIMIZABLE_METRICS:
        raise ConfigError(f"optimized_metric={metric!r} is not allowed; choose one of: {', '.join(OPTIMIZABLE_METRICS)}")
    return RunSettings(
        dataset=dataset, trainer=trainer, model=model, threshold=threshold,
        optimized_metric=metric, resume=bool(container.get("resume", False)),
        n_reconstructions=int(container.get("n_reconstructions", 8)),
    )


OPTIMIZABLE_METRICS = ("val_auroc", "auroc", "auprc", "f1", "precision", "recall", "accuracy")
