"""``dataset=cifar10``: CIFAR-10 batches folders (32 x 32 RGB, classes airplane ... truck).

Found as cifar-10-batches-py (read without unpickling code) or cifar-10-batches-bin at
dataset.path, under $ANOMALY_BENCH_DATA or in the Keras cache; there is no download.
"""

from __future__ import annotations

from anomaly_bench.data import cifar
from anomaly_bench.data.sources.search import DatasetSpec, SearchedSource

#: The searches that can find CIFAR-10: no system copy, download or sample exists for it.
CIFAR_SOURCES = ("auto", "explicit", "env", "keras_cache")


class Cifar10(SearchedSource):
    """CIFAR-10 by class index or name (dataset.normal_classes=[airplane])."""

    spec = DatasetSpec(
        "cifar10",
        (*cifar.FOLDERS, "cifar10", "cifar-10"),
        cifar.FOLDERS[0],
        None,
        (),
        False,
        "cifar",
        cifar.CLASS_NAMES,
    )
    sources = CIFAR_SOURCES

    def __init__(
        self,
        name: str = "cifar10",
        source: str = "auto",
        path: str | None = None,
        image_size: list[int] | None = None,
        channels: int | None = None,
    ) -> None:
        super().__init__(name, source, path, 0.0, image_size, channels)
