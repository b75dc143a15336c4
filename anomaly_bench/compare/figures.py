"""Figures of the HTML report, returned as PNG bytes (matplotlib Agg, headless).

ROC curves are recomputed from each run's ``scores.csv`` (label, score): the report draws
the compared runs on one set of axes, which the per-run ``roc_curve.png`` files cannot do.
The curve is computed with numpy (:func:`roc_points`, checked against scikit-learn in the
tests): a report over a thousand runs would otherwise spend seconds in argument validation.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from anomaly_bench.run_folder import SCORES_FILE

DPI = 100
LABEL_WIDTH = 48  # characters per line of a bar label (wrapped at spaces)
HISTOGRAM_FILE = "score_histogram.png"
# Vertical averaging of ROC curves happens on this false-positive-rate grid.
FPR_GRID = np.linspace(0.0, 1.0, 201)
# Curves are told apart by colour (qualitative maps: neighbours never look alike) and, when
# they belong to different groups, by line style.
LINE_STYLES = ("-", "--", ":", "-.")
# Where AUROC bar axes start when every value is at least chance level.
CHANCE = 0.5


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
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")  # long labels are never cut off
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


def curve_colours(n: int) -> list[tuple]:
    """n colours that can be told apart: tab10 up to 10, tab20 up to 20, then a hue circle."""
    if n <= 20:
        cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
        return [cmap(i) for i in range(n)]
    return [plt.get_cmap("hsv")(i / n) for i in range(n)]


def roc_overlay(curves: list[Curve], title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 6.5 + 0.18 * len(curves)))
    groups = list(dict.fromkeys(c.group for c in curves))
    styles = {g: LINE_STYLES[i % len(LINE_STYLES)] if len(groups) < len(curves) else "-" for i, g in enumerate(groups)}
    for curve, colour in zip(curves, curve_colours(len(curves))):
        ax.plot(
            curve.fpr,
            curve.tpr,
            color=colour,
            linestyle=styles[curve.group],
            linewidth=1.3,
            alpha=0.9,
            label=plain(f"{curve.label}  AUROC {curve.auroc:.4f}"),
        )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=(0, (1, 3)), label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=plain(title), xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize="small" if len(curves) <= 12 else "x-small")
    ax.grid(alpha=0.3)
    return _png(fig)


def metric_bars(labels: list[str], means: list[float], stds: list[float], metric: str) -> bytes:
    """Horizontal bars (long labels stay readable), std as error bars."""
    wrapped = [textwrap.fill(plain(label), LABEL_WIDTH) for label in labels]
    lines = max((label.count("\n") + 1 for label in wrapped), default=1)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.3 * len(labels) * lines))
    y = np.arange(len(labels))
    errors = np.nan_to_num(np.asarray(stds, dtype=float))
    ax.barh(y, means, xerr=errors, color="tab:blue", alpha=0.8, capsize=3)
    for i, (value, error) in enumerate(zip(means, errors)):
        if np.isfinite(value):
            ax.text(value + error, i, f"  {value:.4f}", va="center", fontsize="small")
    ax.set_yticks(y, wrapped, fontsize="small")
    ax.invert_yaxis()
    ax.set(
        xlabel=f"{metric} (axis starts at 0)",
        xlim=(0, 1.2) if np.nanmax(np.asarray(means, dtype=float), initial=0) <= 1 else None,
    )
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def per_class_bars(table: pd.DataFrame, row_labels: list[str], classes: list[str], metric: str) -> bytes:
    """One bar per method for each normal class, as in the per-class AUROC tables (values as
    fractions). The axis starts at chance (0.5) when no value is below it, else at 0, and says so."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(len(row_labels), 1)
    x = np.arange(len(classes) + 1)
    for i, (label, colour) in enumerate(zip(row_labels, curve_colours(len(row_labels)))):
        values = [*table.iloc[i][classes].to_numpy(dtype=float), float(table.iloc[i]["mean"])]
        ax.bar(x + (i - (len(row_labels) - 1) / 2) * width, values, width, label=plain(label), color=colour)
    ax.set_xticks(x, [*classes, "mean"])
    low = np.nanmin(table[classes + ["mean"]].to_numpy(dtype=float), initial=1.0)
    bottom = CHANCE if low >= CHANCE else 0.0
    ax.set_ylim(bottom, 1.0)
    ax.set(xlabel="normal class", ylabel=f"{metric} (axis starts at {bottom:g}{' = chance' if bottom else ''})")
    ax.legend(
        fontsize="small", ncol=min(len(row_labels), 4), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False
    )
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def thumbnail(folder: Path) -> bytes | None:
    """The run's score histogram re-encoded at full resolution (only pixels reach the report,
    and its text stays readable); None when the run has none (or it is broken)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(folder / HISTOGRAM_FILE) as image:
            pixels = image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    buffer = io.BytesIO()
    pixels.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
