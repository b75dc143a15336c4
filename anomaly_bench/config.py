"""The structured-config schema and the checks that run before any training.

Hydra composes YAML; this module is where a composed config is held to the schema
(types, known keys), then to the rules YAML cannot express (class ranges, disjoint
classes, positive sizes, importable targets). Everything raises :class:`ConfigError`
with one line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import importlib
import inspect
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from anomaly_bench.data.sources import DATASETS, OWN_DATASETS, SOURCES, SPECS
from anomaly_bench.errors import ConfigError, shown


@dataclass
class DatasetConfig:
    name: str = "mnist"
    # Class indices, or class names (folder names for dataset=folder / mvtec).
    normal_classes: list[Any] = field(default_factory=lambda: [0])
    anomaly_classes: Any = "rest"
    labelled_anomalies: int = 0
    val_fraction: float = 0.1
    val_anomalies: int = 200
    max_train: int | None = None
    max_test: int | None = None
    split_seed: int = 0
    source: str = "auto"
    path: str | None = None
    download_timeout: float = 10.0
    # [H, W] to resize every image to (null = the data's own size); 1 or 3 channels (null = the data's own).
    image_size: list[int] | None = None
    channels: int | None = None
    # dataset=folder without train/ and test/ subfolders: the stratified share of each class held out for testing.
    test_fraction: float = 0.2
    # Unreadable image files: false = refuse with the file's name; true = skip them (listed in metrics.json).
    skip_unreadable: bool = False


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
    threads: int | None = None
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


TOP_LEVEL_KEYS = {
    "dataset",
    "model",
    "threshold",
    "trainer",
    "paths",
    "optimized_metric",
    "resume",
    "n_reconstructions",
    "hydra",
}


def _typed(schema: type, node: Any, group: str):
    """Merge a group onto its dataclass schema: unknown keys and wrong types fail here."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = f"{group}.{exc.full_key}" if getattr(exc, "full_key", None) else group
        reason = str(exc).splitlines()[0]
        if "is not a ListConfig" in reason:
            value = OmegaConf.select(OmegaConf.create({group: node}), key, default=None)
            example = f"[{value}]" if isinstance(value, (int, str)) and not isinstance(value, bool) else "[0]"
            reason = f"{shown(value)} must be a list such as {example}"
            raise ConfigError(f"{key}={reason}") from None
        raise ConfigError(f"{key}: {reason}") from None


def _check_classes(key: str, value: Any, names: tuple[str, ...] | None) -> list:
    """Indices or names; with a dataset's known class list (``names``) also their range, before loading."""
    if not isinstance(value, (list, tuple, ListConfig)) or len(value) == 0:
        example = f"[{value}]" if isinstance(value, (int, str)) and not isinstance(value, bool) else "[0]"
        kinds = f"classes 0-{len(names) - 1}" if names else "classes (indices or names)"
        raise ConfigError(f"{key}={shown(value)} must be a non-empty list of {kinds}, such as {example}")
    n = len(names) if names is not None else None
    bad = [
        c
        for c in value
        if not (isinstance(c, str) and c and (names is None or c in names))
        and not (isinstance(c, int) and not isinstance(c, bool) and c >= 0 and (n is None or c < n))
    ]
    if bad:
        allowed = f"allowed classes are 0-{n - 1}" if n is not None else "allowed are class indices >= 0 or class names"
        if names is not None and names != tuple(str(c) for c in range(len(names))):
            allowed += f" or their names ({', '.join(names)})"
        raise ConfigError(f"{key}={list(value)} contains {bad}; {allowed}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{key}={list(value)} lists a class twice")
    return list(value)


def check_dataset(ds: DatasetConfig) -> None:
    """What can be checked before loading; class lists of a user's own data are checked again after."""
    if ds.name not in DATASETS:
        raise ConfigError(f"dataset.name={ds.name!r} is not supported; allowed: {', '.join(DATASETS)}")
    names = SPECS[ds.name].class_names if ds.name in SPECS else None
    normal = _check_classes("dataset.normal_classes", ds.normal_classes, names)
    if ds.anomaly_classes == "rest":
        if names is not None and len(set(normal)) == len(names):
            raise ConfigError(
                f"dataset.normal_classes lists all {len(names)} classes; no anomaly class is left for "
                "anomaly_classes=rest"
            )
    elif isinstance(ds.anomaly_classes, str):
        raise ConfigError(
            f"dataset.anomaly_classes={shown(ds.anomaly_classes)} must be 'rest' or a list of classes, such as [1,2]"
        )
    else:
        anomalous = _check_classes("dataset.anomaly_classes", ds.anomaly_classes, names)
        overlap = [c for c in anomalous if c in normal]
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
    if ds.split_seed < 0:
        raise ConfigError(f"dataset.split_seed={ds.split_seed} must be a whole number >= 0")
    if ds.source not in SOURCES:
        raise ConfigError(f"dataset.source={shown(ds.source)} is not allowed; choose one of: {', '.join(SOURCES)}")
    if ds.name in OWN_DATASETS and not ds.path:
        raise ConfigError(f"dataset={ds.name} needs dataset.path=<{OWN_DATASETS[ds.name]}>")
    if ds.source == "explicit" and not ds.path:
        raise ConfigError("dataset.source=explicit needs dataset.path=<IDX folder or .npz>")
    if ds.image_size is not None and (len(ds.image_size) != 2 or any(s < 1 for s in ds.image_size)):
        raise ConfigError(
            f"dataset.image_size={list(ds.image_size)} must be [H, W] with two positive sizes, or null "
            "(the data's own size)"
        )
    if ds.channels not in (None, 1, 3):
        raise ConfigError(f"dataset.channels={ds.channels} must be 1 (grey), 3 (RGB) or null (the data's own)")
    if not 0.0 < ds.test_fraction < 1.0:
        raise ConfigError(f"dataset.test_fraction={ds.test_fraction} must be in (0, 1)")


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


SCALAR_KINDS = {float: "a number", int: "a whole number", bool: "true or false", str: "a string"}


def _scalar_kind(annotation: Any) -> tuple[type | None, bool]:
    """(float | int | bool | str, accepts None) for simple annotations; (None, _) for anything else."""
    args = typing.get_args(annotation)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 and rest[0] in SCALAR_KINDS else None), True
    return (annotation if annotation in SCALAR_KINDS else None), False


def _fits(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_setting_types(group: str, node: dict, cls: type) -> None:
    """Settings of a ``_target_`` class hold the kind of value its constructor declares.

    ``threshold.value=null`` or ``=abc`` would otherwise fail inside the constructor with a
    message that names no key.
    """
    try:
        params = inspect.signature(cls, eval_str=True).parameters
    except Exception:
        return  # annotations that do not evaluate: the constructor stays the judge
    for key, value in node.items():
        param = params.get(key)
        if param is None or param.annotation is param.empty:
            continue
        kind, optional = _scalar_kind(param.annotation)
        if kind is None or (value is None and optional) or _fits(value, kind):
            continue
        null = " or null" if optional else ""
        raise ConfigError(f"{group}.{key}={shown(value)} must be {SCALAR_KINDS[kind]}{null}")


def check_finite(tree: Any, key: str) -> None:
    """NaN and infinity mean nothing as a setting (a learning rate, a threshold, a k): refuse them all."""
    if isinstance(tree, dict):
        for name, value in tree.items():
            check_finite(value, f"{key}.{name}" if key else str(name))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            check_finite(value, f"{key}[{i}]")
    elif isinstance(tree, float) and not math.isfinite(tree):
        raise ConfigError(f"{key}={tree} is not allowed; settings must be finite numbers")


def build(group: str, node: dict):
    """The object a group's ``_target_`` names, built with its settings; its own checks raise ConfigError."""
    from hydra.utils import instantiate

    try:
        return instantiate(node, _convert_="all")
    except Exception as exc:
        cause = exc.__cause__ or exc
        raise ConfigError(f"{group}: cannot build {node.get('_target_')}: {cause}") from None


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
    check_setting_types(group, node, cls)
    return cls


def validate(cfg: DictConfig) -> RunSettings:
    """Schema + semantic checks of a composed config; raises ConfigError on the first problem."""
    unknown = sorted(set(map(str, cfg.keys())) - TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(
            f"{unknown[0]} is not a config key; top-level keys are: {', '.join(sorted(TOP_LEVEL_KEYS - {'hydra'}))}"
        )
    try:
        container = typing.cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))  # a DictConfig: a dict
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{getattr(exc, 'full_key', 'config')}: {str(exc).splitlines()[0]}") from None
    check_finite({k: v for k, v in container.items() if k != "hydra"}, "")
    dataset = _typed(DatasetConfig, container.get("dataset", {}), "dataset")
    trainer = _typed(TrainerConfig, container.get("trainer", {}), "trainer")
    check_dataset(dataset)
    check_trainer(trainer)
    if (
        trainer.early_stopping.enabled
        and trainer.early_stopping.monitor.startswith("val_")
        and dataset.val_fraction == 0
    ):
        raise ConfigError(
            f"trainer.early_stopping.monitor={trainer.early_stopping.monitor} needs validation images; set dataset.val_fraction > 0"
        )
    model, threshold = container.get("model") or {}, container.get("threshold") or {}
    # The threshold rule first: it is built without TensorFlow, which importing a model may start.
    resolve_target("threshold", threshold)
    build("threshold", threshold)
    resolve_target("model", model)
    metric = container.get("optimized_metric", "val_auroc")
    if metric not in OPTIMIZABLE_METRICS:
        raise ConfigError(
            f"optimized_metric={metric!r} is not allowed; choose one of: {', '.join(OPTIMIZABLE_METRICS)}"
        )
    return RunSettings(
        dataset=dataset,
        trainer=trainer,
        model=model,
        threshold=threshold,
        optimized_metric=metric,
        resume=bool(container.get("resume", False)),
        n_reconstructions=int(container.get("n_reconstructions", 8)),
    )


OPTIMIZABLE_METRICS = ("val_auroc", "auroc", "auprc", "f1", "precision", "recall", "accuracy")
