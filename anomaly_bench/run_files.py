"""Validated reading of a run folder's files: ``detector.json``, ``metrics.json``, ``.hydra/config.yaml``.

A run folder is shared and loaded by people who did not make it, so nothing in it is taken
on trust. Each file is parsed into a schema (types, finite numbers, allowed values, sizes
with a bound) before any of it is used, and a bad field is a one-line :class:`ConfigError`
naming the file and the field. Two rules matter most:

- nothing a file says is executed: a ``_target_`` must be one of the strings in
  :data:`~anomaly_bench.models.DETECTOR_TARGETS`, compared as a string before any module is
  imported (importing a module runs its code), and interpolations (``${...}``) are refused;
- no number inside a file sizes an allocation: files are read up to :data:`MAX_FILE_BYTES`,
  and an image shape is bounded by :data:`MAX_IMAGE_SIDE`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anomaly_bench.errors import ConfigError, shown
from anomaly_bench.run_folder import DETECTOR_FILE, METRICS_FILE, STATUSES

#: The largest run-folder file read (a real metrics.json or detector.json is a few kB).
MAX_FILE_BYTES = 16 * 2**20
#: The largest image side a detector may declare (MVTec AD's photographs are 1024 x 1024).
MAX_IMAGE_SIDE = 8192
CHANNELS = (1, 3)
FORMAT_VERSION = 1


def read_bounded(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; ConfigError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found (or not a regular file)")
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise ConfigError(f"{path}: larger than {limit // 2**20} MB; not a file anomaly-bench writes")
    return data


def parse_json(data: bytes, path: Path) -> Any:
    """Strict JSON: nesting too deep for Python refused, and no NaN or Infinity anywhere (anomaly-bench
    never writes them); the error names the field that holds one."""
    try:
        tree = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid JSON ({shown(reason, 120, quote=False)})") from None
    where = _non_finite(tree, "")
    if where is not None:
        raise ConfigError(f"{path}: {where[0] or 'the file'}={where[1]} is not a finite number")
    return tree


def _non_finite(node: Any, where: str) -> tuple[str, float] | None:
    """The dotted path and value of the first NaN or infinity in a parsed JSON tree (iterative: no depth limit)."""
    stack = [(node, where)]
    while stack:
        value, at = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return at, value
        if isinstance(value, dict):
            stack.extend((v, f"{at}.{k}" if at else str(k)) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((v, f"{at}[{i}]") for i, v in reversed(list(enumerate(value))))
    return None


def read_json_object(path: Path) -> dict:
    tree = parse_json(read_bounded(path), path)
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: holds a JSON {type(tree).__name__}, not an object")
    return tree


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _object(path: Path, tree: dict, key: str, what: str) -> dict:
    value = tree.get(key)
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key}={shown(value, 80)} must be {what}")
    return value


# ----------------------------------------------------------------------------- metrics.json
def read_run_metrics(folder: Path) -> dict:
    """A run folder's metrics.json as an object whose ``status`` is one of :data:`STATUSES`."""
    path = Path(folder) / METRICS_FILE
    metrics = read_json_object(path)
    status = metrics.get("status")
    if status not in STATUSES:
        raise ConfigError(f"{path}: status={shown(status, 60)} must be one of {', '.join(STATUSES)}")
    return metrics


# ----------------------------------------------------------------------------- detector.json
def check_targets(node: Any, where: str, path: Path, allowed: frozenset[str]) -> None:
    """Every ``_target_`` in ``node`` is one of ``allowed`` (as a string; nothing is imported),
    every string is plain (no ``${...}`` interpolation) and every number finite."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            check_targets(item, f"{where}[{i}]", path, allowed)
    elif isinstance(node, dict):
        target = node.get("_target_")
        if "_target_" in node and not (isinstance(target, str) and target in allowed):
            raise ConfigError(
                f"{path}: {where}._target_={shown(target, 120)} is not a detector of anomaly-bench; "
                "refusing to build it from a run folder (allowed: the classes anomaly_bench.models.DETECTOR_TARGETS lists)"
            )
        for key, value in node.items():
            check_targets(value, f"{where}.{key}", path, allowed)
    elif isinstance(node, str) and "${" in node:
        raise ConfigError(f"{path}: {where}={shown(node, 80)} is an interpolation; a run folder holds plain values")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{path}: {where}={node} is not a finite number")


@dataclass(frozen=True)
class DetectorFile:
    """The checked content of ``detector.json`` (see :func:`anomaly_bench.trained.detector_facts`)."""

    model: dict
    files: list[str]
    threshold: float
    threshold_rule: str
    image_shape: tuple[int, int, int]
    facts: dict = field(repr=False, default_factory=dict)


def _image_shape(path: Path, preprocessing: dict) -> tuple[int, int, int]:
    shape: Any = preprocessing.get("image_shape")
    ok = (
        isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(s, int) and not isinstance(s, bool) for s in shape)
        and all(1 <= s <= MAX_IMAGE_SIDE for s in shape[:2])
        and shape[2] in CHANNELS
    )
    if not ok:
        raise ConfigError(
            f"{path}: preprocessing.image_shape={shown(shape, 80)} must be [H, W, C] with H and W in "
            f"1-{MAX_IMAGE_SIDE} and C 1 (grey) or 3 (RGB)"
        )
    return shape[0], shape[1], shape[2]


def _inside(name: Any) -> bool:
    """A relative path that stays inside the run folder: no absolute path, no ``..``, no empty part."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name or "\0" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _file_names(path: Path, files: Any) -> list[str]:
    if not (isinstance(files, list) and all(_inside(name) for name in files)):
        raise ConfigError(f"{path}: files={shown(files, 80)} must be a list of paths inside the run folder")
    return list(files)


def read_detector_file(folder: Path) -> DetectorFile:
    """``detector.json`` held to its schema; ConfigError naming the field otherwise."""
    from anomaly_bench.models import DETECTOR_TARGETS

    path = Path(folder) / DETECTOR_FILE
    if not path.exists():
        raise ConfigError(
            f"{Path(folder)} has no {DETECTOR_FILE} (runs made before it existed cannot be reloaded); "
            "run the experiment again"
        )
    facts = read_json_object(path)
    version = facts.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ConfigError(
            f"{path}: format_version={shown(version, 40)} is not {FORMAT_VERSION}; this anomaly-bench cannot read it"
        )
    model = _object(path, facts, "model", "an object (the model config)")
    if "_target_" not in model:
        raise ConfigError(f"{path}: model._target_ is missing; it names the detector class")
    check_targets(model, "model", path, DETECTOR_TARGETS)
    threshold = _object(path, facts, "threshold", "an object with value and threshold_rule")
    value: Any = threshold.get("value")
    if not _is_number(value):
        raise ConfigError(f"{path}: threshold.value={shown(value, 40)} must be a finite number")
    rule = threshold.get("threshold_rule")
    if not isinstance(rule, str) or not rule:
        raise ConfigError(f"{path}: threshold.threshold_rule={shown(rule, 40)} must be the rule's name")
    preprocessing = _object(path, facts, "preprocessing", "an object with image_shape")
    return DetectorFile(
        model=model,
        files=_file_names(path, facts.get("files", [])),
        threshold=float(value),
        threshold_rule=rule,
        image_shape=_image_shape(path, preprocessing),
        facts=facts,
    )
