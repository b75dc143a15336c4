"""Image storage and shape conversion shared by training and prediction.

Images are kept as uint8 N x H x W x C (C = 1 or 3) from the moment they are read: a
10,000-image folder of 256 x 256 RGB photos is 2 GB as uint8 and 8 GB as float32. They
become float32 in [0, 1] only at the model boundary (:func:`to_float`). Resizing and
grey <-> RGB conversion go through Pillow, never hand-written pixel arithmetic, so a run
and a later prediction on new images see exactly the same preprocessing.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

CHANNELS = (1, 3)
#: Pillow's resampling filter for every resize (antialiased when shrinking).
RESAMPLE = Image.Resampling.BILINEAR


@contextmanager
def open_image(path: Path) -> Iterator[Image.Image]:
    """``Image.open`` without Pillow's raw DecompressionBombWarning: an image above Pillow's pixel
    limit is named in one log line and decoded; above twice the limit Pillow raises
    DecompressionBombError, and the file counts as unreadable like any other."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(path)
    with image:
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and image.width * image.height > limit:
            log.warning(
                "%s: %dx%d pixels is above Pillow's %d-pixel limit; decoded anyway",
                path,
                image.width,
                image.height,
                limit,
            )
        yield image


def to_float(images: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]: uint8 images divided by 255; float images are taken as already converted."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return np.asarray(images, dtype=np.float32)


def to_pil(image: np.ndarray) -> Image.Image:
    """One uint8 H x W x C image (C = 1 or 3) as a Pillow image (mode L or RGB)."""
    return Image.fromarray(
        image[..., 0] if image.shape[-1] == 1 else image, mode="L" if image.shape[-1] == 1 else "RGB"
    )


def from_pil(image: Image.Image, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    """A decoded Pillow image as uint8 H x W x C, converted to ``channels`` and resized to ``size`` (H, W).

    16-bit grey images are scaled to 8 bits (value / 257), not clipped as Pillow's own conversion does."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"{image.mode} pixel values {values.min():g}-{values.max():g} are outside 0-65535")
        image = Image.fromarray(np.rint(values / 257.0).astype(np.uint8), mode="L")
    elif image.mode == "F":
        raise ValueError("floating-point image files have no defined pixel range; save them as 8- or 16-bit")
    image = image.convert("L" if channels == 1 else "RGB")
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), RESAMPLE)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if channels == 1 else array


def conform(images: np.ndarray, image_size: Sequence[int] | None, channels: int | None) -> np.ndarray:
    """uint8 N x H x W x C -> uint8 N x H' x W' x C': resized to ``image_size`` [H', W'] and converted
    to ``channels`` (1 = grey by Pillow's luma, 3 = RGB). None keeps the data's own size / channels;
    when nothing changes the input array itself is returned (no copy)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in CHANNELS:
        raise ValueError(
            f"conform expects uint8 N x H x W x C images with C in {CHANNELS}, got {images.dtype} {images.shape}"
        )
    n, h, w, c = images.shape
    size = (h, w) if image_size is None else (int(image_size[0]), int(image_size[1]))
    target_channels = c if channels is None else int(channels)
    if target_channels not in CHANNELS:
        raise ValueError(f"channels={channels} must be one of {CHANNELS}")
    if size == (h, w) and target_channels == c:
        return images
    if size == (h, w) and c == 1:  # grey -> RGB copies the grey value into all three channels, as Pillow does
        return np.repeat(images, 3, axis=-1)
    out = np.empty((n, *size, target_channels), dtype=np.uint8)
    for i in range(n):
        out[i] = from_pil(to_pil(images[i]), size, target_channels)
    return out
