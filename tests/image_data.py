"""Small datasets written in the formats users bring: PNG class folders, an MVTec AD tree,
CIFAR-10's two official formats and .npz files (no downloads; everything generated here)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

FASHION_NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
# A mild colour per class: every class stays recognisable by shape, not by colour alone.
TINTS = np.array(
    [
        [1.0, 0.9, 0.8],
        [0.8, 0.9, 1.0],
        [0.9, 1.0, 0.8],
        [1.0, 0.8, 0.9],
        [0.85, 0.85, 1.0],
        [1.0, 1.0, 0.8],
        [0.8, 1.0, 1.0],
        [1.0, 0.85, 0.85],
        [0.9, 0.9, 0.9],
        [0.95, 0.8, 1.0],
    ]
)


def tinted_32(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """28 x 28 grey -> 32 x 32 RGB: a 2-pixel black border and the class's tint."""
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    return np.rint(padded[..., None] * TINTS[labels][:, None, None, :]).astype(np.uint8)


def write_pngs(folder: Path, images: np.ndarray, labels: np.ndarray, names: list[str]) -> None:
    for i, (image, label) in enumerate(zip(images, labels)):
        target = folder / names[label]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(target / f"{i:05d}.png")


def fashion_folder(root: Path, raw, per_class_train: int, per_class_test: int, split: bool = True) -> np.ndarray:
    """Fashion-MNIST as 32 x 32 tinted RGB PNGs in ROOT/{train,test}/<name>/ (or ROOT/<name>/ when
    ``split`` is false); returns the source indices of the training images written, in order."""
    rng = np.random.default_rng(0)
    picked = {}
    for part, x, y, n in (
        ("train", raw.x_train, raw.y_train, per_class_train),
        ("test", raw.x_test, raw.y_test, per_class_test),
    ):
        idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False) for c in range(10)]))
        picked[part] = idx
        folder = root / part if split else root
        write_pngs(folder, tinted_32(x[idx, ..., 0], y[idx]), y[idx], FASHION_NAMES)
    return picked


def mvtec_tree(root: Path, n_train: int = 24, n_test: int = 6, side: int = 32) -> Path:
    """An MVTec-like category: smooth gradients are good, scratches and holes are defects."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(60, 200, side)

    def good():
        base = ramp[None, :, None] * np.array([1.0, 0.8, 0.6]) + rng.normal(0, 4, (side, side, 3))
        return np.clip(base, 0, 255).astype(np.uint8)

    def scratch():
        image = good()
        row = rng.integers(4, side - 4)
        image[row : row + 2, 4 : side - 4] = 255
        return image

    def hole():
        image = good()
        r, c = rng.integers(4, side - 12, size=2)
        image[r : r + 8, c : c + 8] = 0
        return image

    parts = {
        "train/good": [good() for _ in range(n_train)],
        "test/good": [good() for _ in range(n_test)],
        "test/scratch": [scratch() for _ in range(n_test)],
        "test/hole": [hole() for _ in range(n_test)],
    }
    for folder, images in parts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            Image.fromarray(image).save(root / folder / f"{i:03d}.png")
    (root / "ground_truth" / "scratch").mkdir(parents=True)
    Image.fromarray(np.zeros((side, side), np.uint8)).save(root / "ground_truth" / "scratch" / "000_mask.png")
    return root


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_arrays(per_batch: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """Six batches' worth of random 32 x 32 RGB images (as the official N x 3,072 planar rows) and labels."""
    rng = np.random.default_rng(seed)
    return {
        name: (rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), rng.integers(0, 10, per_batch))
        for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    }


def write_cifar_python(folder: Path, batches: dict) -> Path:
    """The official Python format: pickled dicts with bytes keys, data a uint8 ndarray, labels a list."""
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        with open(folder / name, "wb") as fh:
            pickle.dump(
                {
                    b"batch_label": name.encode(),
                    b"labels": [int(v) for v in labels],
                    b"data": data,
                    b"filenames": [f"{i}.png".encode() for i in range(len(labels))],
                },
                fh,
                protocol=4,
            )
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}, fh, protocol=4)
    return folder


def write_cifar_binary(folder: Path, batches: dict) -> Path:
    """The official binary format: records of one label byte then 3,072 pixel bytes."""
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        records = np.concatenate([np.asarray(labels, np.uint8)[:, None], data], axis=1)
        records.tofile(folder / f"{name}.bin")
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR_NAMES) + "\n")
    return folder


def digits_npz(path: Path, dtype: str = "uint8") -> Path:
    """scikit-learn's 8 x 8 digits (values 0-16) as a Keras-style .npz; uint8 0-255 or float in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images / 16.0
    x = np.rint(x * 255).astype(np.uint8) if dtype == "uint8" else x.astype(dtype)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.3, stratify=digits.target, random_state=0
    )
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path
