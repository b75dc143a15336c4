"""``dataset=folder``: the user's own images, one subfolder per class (optionally under train/ and test/)."""

from __future__ import annotations

from anomaly_bench.data.folders import Listing, list_folder
from anomaly_bench.data.sources.image_files import ImageFilesSource
from anomaly_bench.errors import ConfigError


class Folder(ImageFilesSource):
    """ROOT/<class>/*.png (a stratified ``test_fraction`` is held out, fixed by split_seed) or
    ROOT/train/<class>/ + ROOT/test/<class>/ (the folder's own split)."""

    path_means = "folder of class subfolders"

    def __init__(
        self,
        name: str = "folder",
        path: str | None = None,
        image_size: list[int] | None = None,
        channels: int | None = None,
        test_fraction: float = 0.2,
        skip_unreadable: bool = False,
        cache: bool | str = True,
    ) -> None:
        super().__init__(name, path, image_size, channels, skip_unreadable, cache)
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError(f"dataset.test_fraction={test_fraction} must be in (0, 1)")
        self.test_fraction = test_fraction

    def listing(self, split_seed: int) -> Listing:
        return list_folder(self.path, self.test_fraction, split_seed)
