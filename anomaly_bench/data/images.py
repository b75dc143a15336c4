"""Images as the models see them: uint8 N x H x W x C brought to one shape, then scaled to [0, 1].

Every consumer of images (training data of any source, new images given to a trained
detector) goes through these two steps, so a detector sees new images exactly as it saw
its training images.
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def conform(images: np.ndarray, image_size: tuple[int, int] | None, channels: int | None) -> np.ndarray:
    """uint8 N x H x W x C (C = 1 or 3) to N x H' x W' x C': resized with Pillow (bilinear), grey <-> RGB.

    ``None`` keeps the size or the channel count as it is; images already in shape come back unchanged.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be uint8 N x H x W x C with C = 1 or 3, got {images.dtype} {images.shape}")
    size = tuple(int(s) for s in image_size) if image_size is not None else images.shape[1:3]
    target_channels = int(channels) if channels is not None else images.shape[-1]
    if target_channels not in (1, 3):
        raise ValueError(f"channels={channels} is not allowed; choose 1 (grey) or 3 (RGB)")
    if size == images.shape[1:3] and target_channels == images.shape[-1]:
        return images
    mode = "L" if target_channels == 1 else "RGB"
    out = np.empty((len(images), *size, target_channels), dtype=np.uint8)
    for i, image in enumerate(images):
        picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).convert(mode)
        if picture.size != (size[1], size[0]):
            picture = picture.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        out[i] = np.asarray(picture).reshape(*size, target_channels)
    return out


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images to float32 in [0, 1] (x / 255), the scale every model trains on."""
    return np.asarray(images).astype(np.float32) / 255.0
