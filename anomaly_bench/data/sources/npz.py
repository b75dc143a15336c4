"""``dataset=npz``: a Keras-style .npz of the user's own (x_train, y_train, x_test, y_test[, class_names])."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anomaly_bench.data.checks import checked_dataset, implied_class_names
from anomaly_bench.data.readers import CLASS_NAMES_KEY, read_npz
from anomaly_bench.data.sources.base import DataSource, RawDataset, own_path
from anomaly_bench.errors import BadDataError


def _class_names(arrays: dict[str, np.ndarray], path: Path) -> list[str] | None:
    names = arrays.pop(CLASS_NAMES_KEY, None)
    if names is None:
        return None
    if names.ndim != 1 or names.dtype.kind not in "US" or len(names) == 0:
        raise BadDataError(f"{path}: class_names must be a 1-D array of strings (label i is class_names[i])")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]


class Npz(DataSource):
    """Arrays saved with numpy.savez (no pickled objects); classes 0..max label unless class_names names them."""

    def __init__(
        self,
        name: str = "npz",
        path: str | None = None,
        image_size: list[int] | None = None,
        channels: int | None = None,
    ) -> None:
        super().__init__(name, image_size, channels)
        self.path = own_path(name, path, "file.npz")

    def read(self, split_seed: int) -> RawDataset:
        location = self.path
        if not location.is_file():
            raise BadDataError(
                f"dataset.path={location} "
                + ("not found" if not location.exists() else "is a folder")
                + f"; dataset={self.name} needs an .npz file"
            )
        arrays, where = read_npz(location)
        names = _class_names(arrays, location)
        checked, info = checked_dataset(arrays, where, len(names) if names else None)
        if names is None:
            names = implied_class_names(checked, where)
        return RawDataset(
            checked["x_train"],
            checked["y_train"],
            checked["x_test"],
            checked["y_test"],
            source="explicit",
            location=str(location),
            class_names=names,
            info=info,
        )
