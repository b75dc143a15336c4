"""Every array a reader returns is held to one standard before anything trains on it.

A benchmark is only as good as its data: 10,000 labels paired with 60,000 images, float
images in [0, 1] cast to uint8 (all zeros) or labels outside the class list all "work" and
produce a plausible AUROC. Here they are refused with one line naming the file, the array
and what is wrong (:class:`BadDataError`, exit 2), or converted when the meaning is certain:

- images: N x H x W (grey) or N x H x W x C with C = 1 or 3, at least one image;
- dtype: uint8 as is; other integers when every value is in 0-255; floats (finite) in [0, 1]
  are scaled by 255, floats in [0, 255] are taken as pixel values (both rounded to uint8);
  anything else (negative values, > 255, NaN, strings, objects, bool) is refused;
- labels: one integer class per image (N or N x 1), >= 0, below the class count when known.
"""

from __future__ import annotations

import numpy as np

from anomaly_bench.errors import BadDataError

CHUNK = 4096  # images converted per step, so a float array is never copied whole


def describe_range(array: np.ndarray) -> str:
    return f"{array.dtype} values {array.min()}-{array.max()}" if array.size else f"{array.dtype}, empty"


def _float_to_uint8(images: np.ndarray, where: str) -> tuple[np.ndarray, str]:
    low, high = float(np.min(images)), float(np.max(images))
    if not (np.isfinite(low) and np.isfinite(high)):
        raise BadDataError(f"{where}: float images hold NaN or infinite values")
    if low < 0 or high > 255:
        raise BadDataError(
            f"{where}: float images range {low:g}-{high:g}; allowed are [0, 1] (scaled by 255) "
            "or [0, 255] (pixel values)"
        )
    scale = 255.0 if high <= 1.0 else 1.0
    out = np.empty(images.shape, dtype=np.uint8)
    for start in range(0, len(images), CHUNK):
        out[start : start + CHUNK] = np.rint(images[start : start + CHUNK].astype(np.float64) * scale)
    kind = "[0, 1] scaled by 255" if scale == 255.0 else "[0, 255] pixel values"
    return out, f"{images.dtype} {kind}, rounded to uint8"


def checked_images(images: np.ndarray, where: str) -> tuple[np.ndarray, str]:
    """uint8 N x H x W x C (C = 1 or 3) and a note on the conversion done (for metrics.json)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise BadDataError(
            f"{where}: images have shape {images.shape}; expected N x H x W or N x H x W x C "
            "(flat rows of pixels have no image shape)"
        )
    if images.shape[-1] not in (1, 3):
        hint = " (channels first? use channels last: N x H x W x C)" if images.shape[1] in (1, 3) else ""
        raise BadDataError(
            f"{where}: images have shape {images.shape}; the last axis must be 1 (grey) or 3 (RGB) channels{hint}"
        )
    if len(images) == 0 or min(images.shape[1:3]) == 0:
        raise BadDataError(f"{where}: holds no images (shape {images.shape})")
    kind = images.dtype.kind
    if images.dtype == np.uint8:
        return images, "uint8 as stored"
    if kind in "iu":
        low, high = int(images.min()), int(images.max())
        if low < 0 or high > 255:
            raise BadDataError(f"{where}: {images.dtype} images range {low}-{high}; integer pixels must be 0-255")
        return images.astype(np.uint8), f"{images.dtype} pixel values 0-255, cast to uint8"
    if kind == "f":
        return _float_to_uint8(images, where)
    raise BadDataError(
        f"{where}: images of dtype {images.dtype} are not understood; use uint8, integers 0-255 or "
        "floats in [0, 1] or [0, 255]"
    )


def stored_images(array: np.ndarray, where: str) -> np.ndarray:
    """New images (to score) held to the training standard: uint8 N x H x W x C; an RGBA array loses
    its alpha channel, which carries no image content here."""
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[-1] == 4:
        array = array[..., :3]
    return checked_images(array, where)[0]


def checked_labels(labels: np.ndarray, n_images: int, where: str, n_classes: int | None = None) -> np.ndarray:
    """int64 class index per image."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise BadDataError(f"{where}: labels have shape {labels.shape}; expected one class per image (N or N x 1)")
    if labels.dtype.kind == "f" and labels.size and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    if labels.dtype.kind not in "iu":
        raise BadDataError(f"{where}: labels of dtype {labels.dtype} are not integer class indices")
    if len(labels) != n_images:
        raise BadDataError(f"{where}: {len(labels)} labels for {n_images} images; each image needs exactly one label")
    if labels.size and labels.min() < 0:
        raise BadDataError(f"{where}: labels range {labels.min()}-{labels.max()}; class indices must be >= 0")
    if n_classes is not None and labels.size and labels.max() >= n_classes:
        raise BadDataError(
            f"{where}: labels range {labels.min()}-{labels.max()}; this dataset has classes 0-{n_classes - 1}"
        )
    return labels.astype(np.int64)


def implied_class_names(labels: dict[str, np.ndarray], where: dict[str, str]) -> list[str]:
    """Class names for checked labels that come without any ("0", "1", ... up to the largest label).

    The list's length comes from a number inside the file, so it is bounded by the data: the
    largest label must be below the number of labels (a label of 2**40 in a 20-image file would
    otherwise ask for a list of 2**40 names)."""
    total = len(labels["y_train"]) + len(labels["y_test"])
    largest = max(int(labels[k].max()) if len(labels[k]) else -1 for k in ("y_train", "y_test"))
    if largest >= total:
        key = "y_train" if len(labels["y_train"]) and int(labels["y_train"].max()) == largest else "y_test"
        raise BadDataError(
            f"{where[key]}: label {largest} with {total} labels in all; without class names, labels are class "
            f"indices 0-{total - 1} at most (add a class_names array to name the classes)"
        )
    return [str(c) for c in range(largest + 1)]


def checked_dataset(
    arrays: dict[str, np.ndarray], where: dict[str, str], n_classes: int | None = None
) -> tuple[dict[str, np.ndarray], dict]:
    """The four arrays (x_train, y_train, x_test, y_test) checked and converted, plus facts for metrics.json.

    ``where`` names each array's origin ("file.npz: x_train", "…/train-images-idx3-ubyte.gz").
    """
    out, notes = {}, {}
    for part in ("train", "test"):
        x, note = checked_images(arrays[f"x_{part}"], where[f"x_{part}"])
        out[f"x_{part}"], notes[part] = x, note
        out[f"y_{part}"] = checked_labels(arrays[f"y_{part}"], len(x), where[f"y_{part}"], n_classes)
    if out["x_train"].shape[1:] != out["x_test"].shape[1:]:
        raise BadDataError(
            f"{where['x_test']}: test images are {out['x_test'].shape[1:]} but training images "
            f"{out['x_train'].shape[1:]}; both sets need one image shape"
        )
    info = {
        "stored_image_shape": list(out["x_train"].shape[1:]),
        "stored_dtype": notes["train"] if notes["train"] == notes["test"] else notes,
    }
    return out, info
