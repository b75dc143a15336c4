"""Per-image anomaly scores from reconstructions: the larger the error, the more anomalous."""

from __future__ import annotations

import numpy as np

_EPS = 1e-7


def _flat(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).reshape(len(a), -1)


def _mse(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.mean((x - r) ** 2, axis=1)


def _mae(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.mean(np.abs(x - r), axis=1)


def _sse(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.sum((x - r) ** 2, axis=1)


def _bce(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    r = np.clip(r, _EPS, 1.0 - _EPS)
    return -np.mean(x * np.log(r) + (1.0 - x) * np.log(1.0 - r), axis=1)


RECONSTRUCTION_SCORES = {"mse": _mse, "mae": _mae, "sse": _sse, "bce": _bce}


def reconstruction_error(images: np.ndarray, reconstructions: np.ndarray, kind: str = "mse") -> np.ndarray:
    """One score per image: mean squared (mse), mean absolute (mae), summed squared (sse)
    error or mean binary cross-entropy (bce) between an image and its reconstruction."""
    if kind not in RECONSTRUCTION_SCORES:
        raise ValueError(f"score {kind!r} unknown; allowed: {', '.join(RECONSTRUCTION_SCORES)}")
    return RECONSTRUCTION_SCORES[kind](_flat(images), _flat(reconstructions))
