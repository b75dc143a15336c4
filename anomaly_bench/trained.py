"""A completed run folder as a ready detector: the trained model, the run's preprocessing, its threshold.

At the end of a run, ``detector.json`` records what the folder's model files need to become
a detector again: the model config (``_target_`` and settings), the image shape the model
was trained on, how pixels were scaled, and the threshold with its rule. :func:`load_detector`
rebuilds the detector from that config, checks it with that image shape and calls its
``load(folder)``. A run folder may come from someone else, so every ``_target_`` in the saved
config must name a detector class of this package or a scikit-learn estimator before anything
is built: a config is otherwise a way to call any function.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anomaly_bench.data.images import conform, to_float
from anomaly_bench.errors import ConfigError
from anomaly_bench.run_folder import COMPLETED, DETECTOR_FILE, read_detector_file, read_metrics

FORMAT_VERSION = 1
SCALING = "x / 255 -> float32 in [0, 1]"
RESIZE = "Pillow bilinear to image_size; grey <-> RGB by Pillow's conversion"


def detector_facts(
    model_config: dict,
    image_shape: tuple[int, ...],
    threshold: float,
    rule: dict,
    files: list[str],
    dataset_image_size: list[int] | None = None,
    dataset_channels: int | None = None,
) -> dict:
    """The content of ``detector.json`` (see the module docstring); ``rule`` is ThresholdRule.describe().

    ``image_shape`` is what the model was trained on; new images are brought to it with
    :func:`~anomaly_bench.data.images.conform` and :func:`~anomaly_bench.data.images.to_float`, as
    the training images were. ``dataset_image_size``/``dataset_channels`` are the run's
    dataset.image_size/dataset.channels settings (null: the data's own), recorded for the reader."""
    height, width, channels = (int(s) for s in image_shape)
    return {
        "format_version": FORMAT_VERSION,
        "model": model_config,
        "files": files,
        "threshold": {"value": float(threshold), **rule},
        "preprocessing": {
            "image_shape": [height, width, channels],
            "image_size": [height, width],
            "channels": channels,
            "dtype": "uint8",
            "scaling": SCALING,
            "resize": RESIZE,
            "dataset": {
                "image_size": None if dataset_image_size is None else [int(s) for s in dataset_image_size],
                "channels": None if dataset_channels is None else int(dataset_channels),
            },
        },
    }


@dataclass
class TrainedDetector:
    """A detector restored from a run folder. ``score`` takes images in the run's shape and scale
    (float32 in [0, 1]); ``prepare`` brings uint8 images of any size and 1 or 3 channels there."""

    detector: Any
    run_dir: Path
    threshold: float
    threshold_rule: str
    image_shape: tuple[int, int, int]
    facts: dict = field(repr=False, default_factory=dict)

    @property
    def name(self) -> str:
        return self.detector.name

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x C (C = 1 or 3) -> float32 N x h x w x c of the run, scaled as in training."""
        height, width, channels = self.image_shape
        return to_float(conform(images, (height, width), channels))

    def score(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        if images.shape[1:] != self.image_shape:
            raise ValueError(
                f"images have shape {images.shape[1:]}, the run's model takes {self.image_shape}; "
                "use prepare() on uint8 images first"
            )
        return np.asarray(self.detector.score(images), dtype=np.float64)

    def flag(self, scores: np.ndarray) -> np.ndarray:
        """True where the run's threshold rule calls an image anomalous (score strictly above it)."""
        return np.asarray(scores) > self.threshold

    def reconstruct(self, images: np.ndarray) -> np.ndarray | None:
        """The model's normal counterpart of each image (reconstruction, nearest normal example), if it has one."""
        return self.detector.reconstruct(np.asarray(images, dtype=np.float32))


def _check_targets(node: Any, where: str) -> None:
    """Every ``_target_`` must be a Detector subclass or a scikit-learn estimator class."""
    from sklearn.base import BaseEstimator

    from anomaly_bench.models.base import Detector

    if isinstance(node, list):
        for i, item in enumerate(node):
            _check_targets(item, f"{where}[{i}]")
        return
    if not isinstance(node, dict):
        return
    target = node.get("_target_")
    if target is not None:
        module_name, _, attribute = str(target).rpartition(".")
        allowed = module_name.startswith(("anomaly_bench.", "sklearn."))
        cls = None
        if allowed:
            try:
                cls = getattr(importlib.import_module(module_name), attribute, None)
            except ImportError:
                cls = None
        if not (isinstance(cls, type) and (issubclass(cls, Detector) or issubclass(cls, BaseEstimator))):
            raise ConfigError(
                f"{where}._target_={target!r} is not a detector of anomaly_bench or a scikit-learn "
                "estimator; refusing to build it from a run folder"
            )
    for key, value in node.items():
        _check_targets(value, f"{where}.{key}")


def load_detector(run_dir: str | Path) -> TrainedDetector:
    """The trained detector of a completed run folder. Raises ConfigError (one line) for a folder
    that is not a completed run, was written before detector.json existed, or names unknown classes."""
    from anomaly_bench.config import build

    folder = Path(run_dir)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; give a run folder (one holding metrics.json)")
    metrics = read_metrics(folder)
    if metrics is None:
        raise ConfigError(f"{folder} holds no readable metrics.json; it is not a run folder")
    status = metrics.get("status")
    if status != COMPLETED:
        raise ConfigError(f"{folder}: status is {status!r}, not {COMPLETED!r}; only a completed run is a detector")
    facts = read_detector_file(folder)
    if facts is None:
        raise ConfigError(
            f"{folder} has no readable {DETECTOR_FILE} (runs made before it existed cannot be "
            "reloaded); run the experiment again"
        )
    if facts.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"{folder / DETECTOR_FILE}: format_version {facts.get('format_version')!r} is not "
            f"{FORMAT_VERSION}; this anomaly-bench cannot read it"
        )
    model_config = facts["model"]
    _check_targets(model_config, "model")
    try:
        detector = build("model", model_config)
    except ConfigError as exc:
        raise ConfigError(f"{folder / DETECTOR_FILE}: {exc}") from None
    height, width, channels = (int(s) for s in facts["preprocessing"]["image_shape"])
    image_shape = (height, width, channels)
    # The run's own check sequence: settings alone, then against the image shape (builds the network).
    detector.check(image_shape)
    try:
        detector.load(folder)
    except (OSError, KeyError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"{folder}: the saved {detector.name} model cannot be read: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    threshold = facts["threshold"]
    return TrainedDetector(
        detector, folder, float(threshold["value"]), str(threshold.get("threshold_rule")), image_shape, facts
    )
