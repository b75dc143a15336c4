"""TensorBoard event files per run, written with tensorboardX (NumPy + protobuf, no TensorFlow),
so runs on the JAX and PyTorch backends get them too.

Per run: every logged value per epoch as a scalar, the final metrics as scalars under
``final/`` and as the metrics of one hparams session whose parameters are the composed config,
and the main figures as images. Event files go into the run folder (``tensorboard/``) unless
``log_dir`` names a folder, so ``tensorboard --logdir outputs/`` lists every run of a sweep.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anomaly_bench.errors import ConfigError
from anomaly_bench.run_folder import flatten
from anomaly_bench.tracking.observer import Observer, RunStarted, result_numbers

if TYPE_CHECKING:
    from tensorboardX import SummaryWriter

MISSING = "logger=tensorboard needs the tensorboardX package: pip install 'anomaly-bench[tensorboard]'"
EVENTS_DIR = "tensorboard"
FINAL = "final/"


def events_dir(folder: Path, log_dir: str | None, output_dir: str | Path) -> Path:
    """``<run folder>/tensorboard``, or ``<log_dir>/<the run folder's path below the outputs>``."""
    if log_dir is None:
        return Path(folder) / EVENTS_DIR
    folder, outputs = Path(folder).resolve(), Path(output_dir).resolve()
    below = folder.relative_to(outputs) if outputs in folder.parents else Path(folder.name)
    return Path(log_dir) / below


def hparams_of(config: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """The composed config as hparams: numbers, booleans and text as they are, anything else as text."""
    return {
        key: value if isinstance(value, (bool, int, float, str)) else str(value)
        for key, value in flatten(config).items()
    }


class TensorBoardTracker(Observer):
    """Settings from conf/logger/tensorboard.yaml; see there for what each one means."""

    def __init__(self, log_dir: str | None = None, images: Sequence[str] = ()) -> None:
        self.log_dir, self.images = log_dir, list(images)
        self.writer: SummaryWriter | None = None
        self.config: dict[str, Any] = {}

    def check_settings(self) -> None:
        if importlib.util.find_spec("tensorboardX") is None:
            raise ConfigError(MISSING)
        for name in self.images:
            if not name or os.path.isabs(name) or ".." in Path(name).parts:
                raise ConfigError(
                    f"logger.tensorboard.images: {name!r} must be a file name inside the run folder, e.g. roc_curve.png"
                )

    def run_started(self, run: RunStarted) -> None:
        from tensorboardX import SummaryWriter

        target = events_dir(run.folder, self.log_dir, run.config.get("paths", {}).get("output_dir", "outputs"))
        self.writer = SummaryWriter(logdir=str(target))
        self.config = run.config

    def epoch_ended(self, epoch: int, logs: dict[str, float]) -> None:
        if self.writer is not None:
            for key, value in logs.items():
                self.writer.add_scalar(key, float(value), epoch)

    def artifacts_written(self, folder: Path, names: list[str]) -> None:
        if self.writer is None:
            return
        import numpy as np
        from PIL import Image

        for name in self.images:
            path = Path(folder) / name
            if name in names and path.is_file():
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))
                self.writer.add_image(Path(name).stem, pixels, 0, dataformats="HWC")

    def run_completed(self, metrics: dict[str, Any]) -> None:
        if self.writer is None:
            return
        from tensorboardX.summary import hparams

        final = {FINAL + key: value for key, value in result_numbers(metrics).items()}
        for key, value in final.items():
            self.writer.add_scalar(key, value, 0)
        for summary in hparams(hparams_of(self.config), final):
            self.writer.file_writer.add_summary(summary)
        self.close()

    def run_failed(self, metrics: dict[str, Any], error: BaseException) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
