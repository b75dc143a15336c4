"""What every dataset source is: a class built from ``dataset._target_`` with only its own keys.

A source knows where its images are and how to read them; it knows nothing of normal and
anomaly classes, validation shares or caps (the split settings, :class:`~anomaly_bench.data.split.SplitConfig`).
:meth:`DataSource.load` gives every source the same finish: images conformed to
``image_size`` / ``channels``, the image shape recorded for metrics.json, one progress line.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anomaly_bench.data.images import CHANNELS, conform
from anomaly_bench.errors import ConfigError, shown

log = logging.getLogger(__name__)


@dataclass
class RawDataset:
    """Images as uint8 N x H x W x C (C = 1 or 3), integer class indices into ``class_names``,
    where they came from, and what the data layer did to them (``info``, for metrics.json)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    location: str
    test_split: str = "official test set"
    class_names: list[str] = field(default_factory=lambda: [str(c) for c in range(10)])
    info: dict = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        _, h, w, c = self.x_train.shape
        return int(h), int(w), int(c)


class DataSource(ABC):
    """One kind of dataset (MNIST, a folder of images, ...). Subclasses declare their own keys as
    constructor parameters, ``name`` first with the dataset's name as its default: that default
    is how the package's declared sources are named (``load_raw("mnist")``)."""

    #: Class names known before anything is read, so class lists are checked before loading;
    #: None where only the data knows them (a user's own images).
    known_classes: tuple[str, ...] | None = None
    #: Sources that decode image files resize while decoding; the others are conformed after reading.
    resizes_while_reading: bool = False

    def __init__(self, name: str, image_size: list[int] | None = None, channels: int | None = None) -> None:
        if image_size is not None and (
            len(image_size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in image_size)
        ):
            raise ConfigError(
                f"dataset.image_size={shown(list(image_size))} must be [H, W] with two positive sizes, or null "
                "(the data's own size)"
            )
        if channels is not None and channels not in CHANNELS:
            raise ConfigError(f"dataset.channels={shown(channels)} must be 1 (grey), 3 (RGB) or null (the data's own)")
        self.name = name
        self.image_size = None if image_size is None else [int(s) for s in image_size]
        self.channels = channels

    @abstractmethod
    def read(self, split_seed: int) -> RawDataset:
        """Find, read and check the images (``split_seed`` fixes a test split a source draws itself)."""

    def load(self, split_seed: int = 0) -> RawDataset:
        """:meth:`read`, then images in the configured shape and one line saying what was loaded."""
        raw = self.read(split_seed)
        if not self.resizes_while_reading:
            raw.x_train = conform(raw.x_train, self.image_size, self.channels)
            raw.x_test = conform(raw.x_test, self.image_size, self.channels)
        raw.info["image_shape"] = list(raw.image_shape)
        log.info(
            "data: %s from %s (%s): %d training and %d test images of %s",
            self.name,
            raw.source,
            raw.location,
            len(raw.x_train),
            len(raw.x_test),
            "x".join(map(str, raw.image_shape)),
        )
        return raw


def own_path(name: str, path: str | None, what: str) -> Path:
    """dataset.path of a source that reads the user's own files: required, ``~`` expanded."""
    if not path:
        raise ConfigError(f"dataset={name} needs dataset.path=<{what}>")
    return Path(path).expanduser()
