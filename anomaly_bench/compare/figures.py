"""Figures of the HTML report, returned as PNG bytes (matplotlib Agg, headless).

ROC curves are recomputed from each run's ``scores.csv`` (label, score): the report draws
the compared runs on one set of axes, which the per-run ``roc_curve.png`` files cannot do.
The curve is computed with numpy (:func:`roc_points`, checked against scikit-learn in the
tests): a report over a thousand runs would otherwise spend seconds in argument validation.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

DPI = 100
SCORES_FILE = "scores.csv"
HISTOGRAM_FILE = "score_histogram.png"
# Vertical averaging of ROC curves happens on this false-positive-rate grid.
FPR_GRID = np.linspace(0.0, 1.0, 201)
THUMBNAIL_REDUCTION = 2


@dataclass
class Curve:
    label: str
    group: str
    fpr: np.ndarray
    tpr: np.ndarray
    auroc: float


def plain(text: str) -> str:
    """Matplotlib would read '$...$' in a folder name or config value as mathtext, and cannot draw
    the bytes of a folder name that is not UTF-8 (shown as \ufffd)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("$", r"\$")


def _png(fig: plt.Figure) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """False/true positive rates at every distinct threshold (higher score = anomaly) and the AUROC.

    Tied scores form one step, so the trapezoid area equals the Mann-Whitney AUROC.
    """
    order = np.argsort(-scores, kind="mergesort")
    ranked, positives = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tp = np.cumsum(positives)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    tpr = np.r_[0.0, tp / tp[-1]]
    fpr = np.r_[0.0, fp / fp[-1]]
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def read_curve(folder: Path, label: str, group: str) -> Curve | None:
    """ROC of one run from its scores.csv; None when missing, unreadable or one-sided."""
    try:
        scores = pd.read_csv(folder / SCORES_FILE, usecols=["label", "score"])
        labels = scores["label"].to_numpy(dtype=int)
        values = scores["score"].to_numpy(dtype=float)
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return None
    finite = np.isfinite(values)
    labels, values = labels[finite], values[finite]
    if len(labels) == 0 or labels.min() == labels.max() or not np.isin(labels, (0, 1)).all():
        return None
    return Curve(label, group, *roc_points(labels, values))


def mean_curves(curves: list[Curve]) -> list[Curve]:
    """One curve per group: TPR averaged over its runs at fixed false-positive rates."""
    merged = []
    for group in dict.fromkeys(c.group for c in curves):
        members = [c for c in curves if c.group == group]
        tpr = np.mean([np.interp(FPR_GRID, c.fpr, c.tpr) for c in members], axis=0)
        tpr[0] = 0.0
        auroc = float(np.mean([c.auroc for c in members]))
        merged.append(Curve(f"{group} (mean of {len(members)})", group, FPR_GRID, tpr, auroc))
    return merged


def roc_overlay(curves: list[Curve], title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 6.5 + 0.18 * len(curves)))
    groups = list(dict.fromkeys(c.group for c in curves))
    colours = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    for curve in curves:
        colour = colours(groups.index(curve.group) % colours.N)
        ax.plot(curve.fpr, curve.tpr, color=colour, linewidth=1.2, alpha=0.85,
                label=plain(f"{curve.label}  AUROC {curve.auroc:.4f}"))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=plain(title), xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize="x-small")
    ax.grid(alpha=0.3)
    return _png(fig)


def metric_bars(labels: list[str], means: list[float], stds: list[float], metric: str) -> bytes:
    """Horizontal bars (long labels stay readable), std as error bars."""
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.35 * len(labels)))
    y = np.arange(len(labels))
    errors = np.nan_to_num(np.asarray(stds, dtype=float))
    ax.barh(y, means, xerr=errors, color="tab:blue", alpha=0.8, capsize=3)
    for i, (value, error) in enumerate(zip(means, errors)):
        if np.isfinite(value):
            ax.text(value + error, i, f"  {value:.4f}", va="center", fontsize="small")
    ax.set_yticks(y, [plain(label) for label in labels], fontsize="small")
    ax.invert_yaxis()
    ax.set(xlabel=metric, xlim=(0, 1.15) if np.nanmax(np.asarray(means, dtype=float), initial=0) <= 1 else None)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def per_class_bars(table: pd.DataFrame, row_labels: list[str], classes: list[str], metric: str) -> bytes:
    """One bar per method for each normal class, as in the per-class AUROC tables."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(len(row_labels), 1)
    x = np.arange(len(classes) + 1)
    for i, label in enumerate(row_labels):
        values = [*table.iloc[i][classes].to_numpy(dtype=float), float(table.iloc[i]["mean"])]
        ax.bar(x + (i - (len(row_labels) - 1) / 2) * width, values, width, label=plain(label))
    ax.set_xticks(x, [*classes, "mean"])
    ax.set(xlabel="normal class", ylabel=f"{metric} (%)")
    low = np.nanmin(table[classes + ["mean"]].to_numpy(dtype=float), initial=100.0)
    ax.set_ylim(max(0.0, np.floor(low / 10) * 10 - 10), 100)
    ax.legend(fontsize="small", ncol=min(len(row_labels), 4))
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def thumbnail(folder: Path) -> bytes | None:
    """A smaller copy of the run's score histogram; None when the run has none (or it is broken)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(folder / HISTOGRAM_FILE) as image:
            small = image.convert("RGB").reduce(THUMBNAIL_REDUCTION)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
