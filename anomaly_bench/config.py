"""The structured-config schema and the checks that run before any training.

Hydra composes YAML; this module is where a composed config is held to the schema
(types, known keys), then to the rules YAML cannot express (class ranges, disjoint
classes, positive sizes, importable targets). Everything raises :class:`ConfigError`
with one line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from anomaly_bench.data.dataset import Dataset
from anomaly_bench.data.sources import DataSource
from anomaly_bench.data.split import SplitConfig
from anomaly_bench.errors import ConfigError, shown


@dataclass
class EarlyStoppingConfig:
    enabled: bool = False
    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    restore_best_weights: bool = True


#: How the learning rate moves over the epochs: held at trainer.learning_rate, or cosine-annealed
#: from it towards 0 at the last epoch (a network trained for few epochs settles instead of
#: ending on the noise of a large step).
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainerConfig:
    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 0.001
    lr_schedule: str = "constant"
    seed: int = 0
    deterministic: bool = False
    threads: int | None = None
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


@dataclass
class RunSettings:
    """The typed view of a composed config that the pipeline works with."""

    dataset: Dataset
    trainer: TrainerConfig
    model: dict
    threshold: dict
    optimized_metric: str = "val_auroc"
    resume: bool = False
    n_reconstructions: int = 8
    # Trackers by name (logger.mlflow, logger.tensorboard), each with its _target_; empty: run folder only.
    logger: dict = field(default_factory=dict)


TOP_LEVEL_KEYS = {
    "dataset",
    "model",
    "threshold",
    "trainer",
    "paths",
    "optimized_metric",
    "resume",
    "n_reconstructions",
    "logger",
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


def check_split(ds: SplitConfig, names: tuple[str, ...] | None) -> None:
    """What can be checked before loading (class ranges where the source knows its classes);
    class lists of a user's own data are checked again once the data is read."""
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


SPLIT_KEYS = tuple(f.name for f in dataclasses.fields(SplitConfig))


def build_dataset(node: dict) -> Dataset:
    """The ``dataset`` group: split keys to :class:`SplitConfig`, the rest to the source its ``_target_`` names.

    One group keeps the user's vocabulary (``dataset.normal_classes=[5]``, ``dataset.path=...``);
    the source class takes only its own keys, so a key no source or split knows is refused here.
    """
    split = _typed(SplitConfig, {k: v for k, v in node.items() if k in SPLIT_KEYS}, "dataset")
    source_node = {k: v for k, v in node.items() if k not in SPLIT_KEYS}
    resolve_target("dataset", source_node, also_allowed=SPLIT_KEYS, base=DataSource)
    source = build("dataset", source_node)
    check_split(split, source.known_classes)
    return Dataset(source, split)


def check_trainer(tr: TrainerConfig) -> None:
    for key in ("epochs", "batch_size"):
        if getattr(tr, key) <= 0:
            raise ConfigError(f"trainer.{key}={getattr(tr, key)} must be a positive integer")
    if tr.learning_rate <= 0:
        raise ConfigError(f"trainer.learning_rate={tr.learning_rate} must be > 0")
    if tr.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"trainer.lr_schedule={tr.lr_schedule!r} is not known; allowed: {', '.join(LR_SCHEDULES)}")
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


EXAMPLE_TARGETS = {
    "dataset": "anomaly_bench.data.sources.mnist.Mnist",
    "model": "anomaly_bench.models.pca.PCADetector",
    "threshold": "anomaly_bench.thresholds.TrainMean",
}


def resolve_target(group: str, node: dict, also_allowed: tuple[str, ...] = (), base: type | None = None) -> type:
    """Import ``_target_`` (a subclass of ``base`` when given) and check the group's other keys are
    parameters it accepts (``also_allowed``: keys of the group that are not the class's, named in the error)."""
    target = node.get("_target_")
    if not target:
        example = EXAMPLE_TARGETS.get(group, EXAMPLE_TARGETS["threshold"])
        raise ConfigError(f"{group}._target_ is missing; it must name a class, e.g. {example}")
    cls = _import_class(target)
    if cls is None:
        raise ConfigError(f"{group}._target_={target!r} does not import; it must name an importable class")
    if base is not None and not issubclass(cls, base):
        raise ConfigError(
            f"{group}._target_={target!r} is not a {group} class (a subclass of {base.__module__}.{base.__qualname__})"
        )
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(k for k in node if k != "_target_" and k not in params)
        if unknown:
            allowed = ", ".join(k for k in (*params, *also_allowed) if k != "self")
            raise ConfigError(f"{group}.{unknown[0]} is not a setting of {target}; allowed: {allowed}")
    check_setting_types(group, node, cls)
    return cls


def check_logger(node: Any) -> dict:
    """The ``logger`` group: every entry names a tracker class with settings it accepts, checked
    before training so that a typo never surfaces as a warning after a long run."""
    from anomaly_bench.tracking.observer import Observer

    if node is None:
        return {}
    if not isinstance(node, dict):
        raise ConfigError(
            f"logger={shown(node)} must name trackers such as logger=mlflow or logger=[mlflow,tensorboard]"
        )
    for name, entry in node.items():
        if not isinstance(entry, dict):
            raise ConfigError(
                f"logger.{name}={shown(entry)} must be a tracker's settings with a _target_ (see conf/logger/)"
            )
        cls = resolve_target(f"logger.{name}", entry)
        if not issubclass(cls, Observer):
            raise ConfigError(
                f"logger.{name}._target_={entry['_target_']!r} is not a tracker; it must name a subclass of "
                "anomaly_bench.tracking.observer.Observer"
            )
        build(f"logger.{name}", entry).check_settings()
    return node


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
    dataset = build_dataset(container.get("dataset") or {})
    trainer = _typed(TrainerConfig, container.get("trainer", {}), "trainer")
    check_trainer(trainer)
    if (
        trainer.early_stopping.enabled
        and trainer.early_stopping.monitor.startswith("val_")
        and dataset.split.val_fraction == 0
    ):
        raise ConfigError(
            f"trainer.early_stopping.monitor={trainer.early_stopping.monitor} needs validation images; set dataset.val_fraction > 0"
        )
    model, threshold = container.get("model") or {}, container.get("threshold") or {}
    # The threshold rule and the trackers first: they are built without TensorFlow, which importing a
    # model may start.
    resolve_target("threshold", threshold)
    build("threshold", threshold)
    logger = check_logger(container.get("logger"))
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
        logger=logger,
    )


OPTIMIZABLE_METRICS = ("val_auroc", "auroc", "auprc", "f1", "precision", "recall", "accuracy")
