"""What the sources that decode image files share (folder, mvtec): listing, decoding through the
cache of decoded images (:mod:`anomaly_bench.data.image_cache`), class names from folder names."""

from __future__ import annotations

import logging
from abc import abstractmethod
from pathlib import Path

import numpy as np

from anomaly_bench.data.folders import Listing, class_sort_key
from anomaly_bench.data.image_cache import decode_cached, default_cache_dir
from anomaly_bench.data.sources.base import DataSource, RawDataset, own_path
from anomaly_bench.errors import ConfigError, shown

log = logging.getLogger(__name__)


class ImageFilesSource(DataSource):
    """Images decoded by Pillow from files under dataset.path, resized while decoding."""

    resizes_while_reading = True
    #: What dataset.path must be, for the error when it is missing.
    path_means = "folder"

    def __init__(
        self,
        name: str,
        path: str | None,
        image_size: list[int] | None,
        channels: int | None,
        skip_unreadable: bool,
        cache: bool | str,
    ) -> None:
        super().__init__(name, image_size, channels)
        self.path = own_path(name, path, self.path_means)
        if isinstance(cache, bool):
            self.cache_dir = default_cache_dir() if cache else None
        elif isinstance(cache, str) and cache:
            self.cache_dir = Path(cache).expanduser()
        else:
            raise ConfigError(
                f"dataset.cache={shown(cache)} must be true (the user's cache folder), false (no cache) or a folder"
            )
        self.skip_unreadable = skip_unreadable

    @abstractmethod
    def listing(self, split_seed: int) -> Listing:
        """The image files of each part (train / test) and their class names."""

    def read(self, split_seed: int) -> RawDataset:
        listing = self.listing(split_seed)
        log.info(
            "data: %d training and %d test images under %s",
            len(listing.files["train"]),
            len(listing.files["test"]),
            self.path,
        )
        images, classes, facts = decode_cached(
            self.path, listing, self.image_size, self.channels, self.skip_unreadable, self.cache_dir
        )
        names = sorted(set(listing.classes["train"]) | set(listing.classes["test"]), key=class_sort_key)
        index = {n: i for i, n in enumerate(names)}
        info = {**facts, "stored_dtype": "image files decoded by Pillow to uint8", "skipped_files": listing.skipped}
        return RawDataset(
            images["train"],
            np.array([index[c] for c in classes["train"]], dtype=np.int64),
            images["test"],
            np.array([index[c] for c in classes["test"]], dtype=np.int64),
            source="explicit",
            location=str(self.path),
            test_split=listing.test_split,
            class_names=names,
            info=info,
        )
