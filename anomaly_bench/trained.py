"""A completed run folder as a ready detector: the trained model, the run's preprocessing, its threshold.

At the end of a run, ``detector.json`` records what the folder's model files need to become
a detector again: the model config (``_target_`` and settings), the image shape the model
was trained on, how pixels were scaled, and the threshold with its rule. :func:`load_detector`
rebuilds the detector from that config, checks it with that image shape and calls its
``load(folder)``. A run folder may come from someone else, so detector.json is read through
its schema (:mod:`anomaly_bench.run_files`): every ``_target_`` in the saved config must be one
of the package's declared detector classes, compared as a string before anything is imported
or built: a config is otherwise a way to call any function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anomaly_bench.data.checks import stored_images
from anomaly_bench.data.images import conform, to_float
from anomaly_bench.errors import ConfigError, shown
from anomaly_bench.run_files import FORMAT_VERSION, read_detector_file, read_run_metrics
from anomaly_bench.run_folder import COMPLETED, DETECTOR_FILE, METRICS_FILE

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
    """A detector restored from a run folder.

    ``prepare`` takes what ``anomaly-bench-predict`` takes from an array: N x H x W or
    N x H x W x C (C = 1, 3 or 4, alpha dropped), uint8, integers 0-255 or floats in [0, 1] or
    [0, 255], any size, and returns float32 images in the run's shape and scale. ``score`` takes
    the same (float32 [0, 1] images already in the run's shape are used as they are), so an
    unprepared uint8 array is never scored as if 255 were 1."""

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
        """Images as predict reads them -> float32 N x h x w x c of the run, scaled as in training."""
        height, width, channels = self.image_shape
        return to_float(conform(stored_images(images, "images"), (height, width), channels))

    def _ready(self, images: np.ndarray) -> bool:
        """Already prepared: floats in the run's shape, every value in [0, 1]."""
        return (
            images.dtype.kind == "f"
            and images.shape[1:] == self.image_shape
            and images.size > 0
            and bool(np.all(np.isfinite(images)))
            and float(images.min()) >= 0.0
            and float(images.max()) <= 1.0
        )

    def score(self, images: np.ndarray) -> np.ndarray:
        """Anomaly scores (higher = more anomalous); images not yet in the run's form go through prepare()."""
        images = np.asarray(images)
        ready = images.astype(np.float32, copy=False) if self._ready(images) else self.prepare(images)
        return np.asarray(self.detector.score(ready), dtype=np.float64)

    def flag(self, scores: np.ndarray) -> np.ndarray:
        """True where the run's threshold rule calls an image anomalous (score strictly above it)."""
        return np.asarray(scores) > self.threshold

    def reconstruct(self, images: np.ndarray) -> np.ndarray | None:
        """The model's normal counterpart of each image (reconstruction, nearest normal example), if it has one."""
        return self.detector.reconstruct(np.asarray(images, dtype=np.float32))


def load_detector(run_dir: str | Path) -> TrainedDetector:
    """The trained detector of a completed run folder. Raises ConfigError (one line naming the file
    and the field) for a folder that is not a completed run, a detector.json that breaks its schema
    (anomaly_bench.run_files), a ``_target_`` outside the package's detectors, or unreadable model files."""
    from anomaly_bench.config import build

    folder = Path(run_dir)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; give a run folder (one holding metrics.json)")
    if not (folder / METRICS_FILE).exists():
        raise ConfigError(f"{folder} holds no readable metrics.json; it is not a run folder")
    status = read_run_metrics(folder)["status"]
    if status != COMPLETED:
        raise ConfigError(f"{folder}: status is {status!r}, not {COMPLETED!r}; only a completed run is a detector")
    saved = read_detector_file(folder)  # every _target_ checked as a string: nothing imported yet
    try:
        detector = build("model", saved.model)
    except ConfigError as exc:
        raise ConfigError(f"{folder / DETECTOR_FILE}: {exc}") from None
    # The run's own check entry point: settings, then the image shape (builds the network); no data here.
    try:
        detector.check(saved.image_shape)
    except ConfigError as exc:
        raise ConfigError(f"{folder / DETECTOR_FILE}: {exc}") from None
    try:
        detector.load(folder)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{folder}: the saved {detector.name} model cannot be read: {model_file_problem(exc)}"
        ) from None
    return TrainedDetector(detector, folder, saved.threshold, saved.threshold_rule, saved.image_shape, saved.facts)


def model_file_problem(exc: BaseException) -> str:
    """What is wrong with a saved model file, in words: Keras reports a truncated .keras zip as
    "File not found", which would send the reader looking for a file that is there."""
    import zipfile

    text = str(exc).splitlines()[0] if str(exc) else ""
    chain = [exc, exc.__cause__, exc.__context__]
    if any(isinstance(e, (zipfile.BadZipFile, EOFError)) for e in chain) or "zip" in text.lower():
        return "the file is truncated or not a saved model (not a complete zip archive)"
    if isinstance(exc, FileNotFoundError) or (isinstance(exc, OSError) and exc.errno == 2):
        return f"a model file is missing ({getattr(exc, 'filename', None) or text})"
    return f"{type(exc).__name__}: {shown(text, 160, quote=False)}"
