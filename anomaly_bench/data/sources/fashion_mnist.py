"""``dataset=fashion_mnist``: Fashion-MNIST clothing images (classes 0-9), found by the search of :mod:`.search`."""

from __future__ import annotations

from anomaly_bench.data.readers import IDX_FILES
from anomaly_bench.data.sources.search import DatasetSpec, SearchedSource


class FashionMnist(SearchedSource):
    """Fashion-MNIST as IDX files; also Debian's dataset-fashion-mnist copy and the Keras download."""

    spec = DatasetSpec(
        "fashion_mnist",
        ("fashion-mnist", "fashion_mnist"),
        "fashion-mnist",
        "/usr/share/datasets/fashion-mnist",
        tuple(stem + ".gz" for stem in IDX_FILES.values()),
        False,
    )

    def __init__(
        self,
        name: str = "fashion_mnist",
        source: str = "auto",
        path: str | None = None,
        download_timeout: float = 10.0,
        image_size: list[int] | None = None,
        channels: int | None = None,
    ) -> None:
        super().__init__(name, source, path, download_timeout, image_size, channels)
