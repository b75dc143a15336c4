"""``dataset=mvtec``: one MVTec AD category (train/good, test/good, test/<defect type>); every
defect type is an anomaly class, so flagged_rate_by_class is per defect type."""

from __future__ import annotations

from anomaly_bench.data.folders import Listing, list_mvtec
from anomaly_bench.data.sources.image_files import ImageFilesSource


class Mvtec(ImageFilesSource):
    """The official MVTec AD split; ground_truth/ masks are not read."""

    path_means = "an MVTec AD category folder"

    def __init__(
        self,
        name: str = "mvtec",
        path: str | None = None,
        image_size: list[int] | None = None,
        channels: int | None = None,
        skip_unreadable: bool = False,
        cache: bool | str = True,
    ) -> None:
        super().__init__(name, path, image_size, channels, skip_unreadable, cache)

    def listing(self, split_seed: int) -> Listing:
        return list_mvtec(self.path)
