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
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import MaxNLocator

from anomaly_bench.compare.table import UNIT_METRICS
from anomaly_bench.run_folder import SCORES_FILE

DPI = 100
# Figures span the report's width: 1,400 px windows less the page margins, at DPI pixels per inch.
PAGE_WIDTH = 13.0
LABEL_WIDTH = 80  # characters per line of a dot-plot label (wrapped at spaces)
LEGEND_COLUMN = 70  # ROC legend labels longer than this get one column, shorter ones two
# The zoomed ROC panel shows false positive rates up to this.
ZOOM_FPR = 0.1
# The dot plot's axis breaks where an empty gap takes more than this share of the values' span.
BREAK_SHARE = 0.6
HISTOGRAM_FILE = "score_histogram.png"
# Vertical averaging of ROC curves happens on this false-positive-rate grid.
FPR_GRID = np.linspace(0.0, 1.0, 201)
# Curves are told apart by colour (qualitative maps: neighbours never look alike) and, when
# they belong to different groups, by line style.
LINE_STYLES = ("-", "--", ":", "-.")
# Chance level of the metrics that have one; per-class bar axes start there when no value is below it.
CHANCE = 0.5
CHANCE_METRICS = {"auroc", "val_auroc"}


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
    if fig.get_layout_engine() is None:
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
    """The whole ROC beside its low-false-positive corner: curves of good detectors hug the corner
    of the full plot, and the zoom is where they part. The legend spans both panels below them."""
    fig, (full, zoom) = plt.subplots(1, 2, figsize=(PAGE_WIDTH, PAGE_WIDTH / 2))
    curves = sorted(curves, key=lambda c: -c.auroc)  # the legend reads best first
    groups = list(dict.fromkeys(c.group for c in curves))
    styles = {g: LINE_STYLES[i % len(LINE_STYLES)] if len(groups) < len(curves) else "-" for i, g in enumerate(groups)}
    for ax in (full, zoom):
        for curve, colour in zip(curves, curve_colours(len(curves))):
            ax.plot(
                curve.fpr,
                curve.tpr,
                color=colour,
                linestyle=styles[curve.group],
                linewidth=1.4,
                alpha=0.9,
                label=plain(f"{curve.label}  AUROC {curve.auroc:.4f}"),
            )
        ax.plot([0, 1], [0, 1], color="grey", linestyle=(0, (1, 3)), label="chance")
        ax.set(xlabel="false positive rate", ylabel="true positive rate")
        ax.grid(alpha=0.3)
    full.set(title=plain(title), xlim=(0, 1), ylim=(0, 1.01))
    low, high = zoom_window(curves)
    zoom.set(
        title=f"zoom: false positive rate ≤ {ZOOM_FPR:g}, true positive rate {low:g}-{high:g}",
        xlim=(0, ZOOM_FPR),
        ylim=(low, high + (high - low) * 0.01),
    )
    full.indicate_inset((0, low, ZOOM_FPR, high - low), edgecolor="black", alpha=0.6)
    handles, labels = full.get_legend_handles_labels()
    wide = max((len(label) for label in labels), default=0) > LEGEND_COLUMN
    fig.tight_layout()
    fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=1 if wide else 2,
        fontsize="small",
        frameon=False,
    )
    return _png(fig)


def zoom_window(curves: list[Curve]) -> tuple[float, float]:
    """The true positive rates the zoomed ROC shows: from below the lowest to above the highest
    rate that the curves above chance there reach at the zoom's right edge, in steps of 0.05.
    Curves below chance at that false positive rate are left to the full plot: drawn in, they
    would undo the zoom."""
    reached = [float(np.interp(ZOOM_FPR, c.fpr, c.tpr)) for c in curves]
    good = [r for r in reached if r >= CHANCE]
    if not good:
        return 0.0, 1.0
    return max(np.floor(min(good) * 20 - 1) / 20, 0.0), min(np.ceil(max(good) * 20) / 20, 1.0)


def axis_parts(means: np.ndarray, errors: np.ndarray) -> list[tuple[float, float]]:
    """The value ranges the dot plot's axis shows: the values' span (± std), or two ranges when
    a gap wider than BREAK_SHARE of the span separates them and at least one side holds several
    values that the gap would squeeze together (a broken axis), each with a margin; metrics in
    [0, 1] start at 0 at the lowest, and end past 1 only by the margin that keeps a dot at 1 whole."""
    finite = np.isfinite(means)
    low, high = means[finite] - errors[finite], means[finite] + errors[finite]
    if not len(low):
        return [(0.0, 1.0)]
    order = np.argsort(means[finite])
    reach = np.maximum.accumulate(high[order])  # how far the values up to each one extend
    gaps = low[order][1:] - reach[:-1]
    spans = [(float(low.min()), float(high.max()))]
    cut = int(np.argmax(gaps)) if len(gaps) else 0
    if len(gaps) > 1 and gaps[cut] > BREAK_SHARE * (high.max() - low.min()):
        spans = [(float(low.min()), float(reach[cut])), (float(low[order][cut + 1]), float(high.max()))]
    unit = low.min() >= 0.0 and high.max() <= 1.0
    parts = []
    for start, end in spans:
        pad = max((end - start) * 0.08, 0.002)
        start, end = start - pad, end + pad
        parts.append((max(start, 0.0), end) if unit else (start, end))
    return parts


def _break_marks(left: plt.Axes, right: plt.Axes) -> None:
    """Slanted marks where the axis is cut, hiding the spines that meet there."""
    left.spines["right"].set_visible(False)
    right.spines["left"].set_visible(False)
    right.tick_params(axis="y", left=False)
    slant = [(-0.5, -1.0), (0.5, 1.0)]
    for ax, x in ((left, 1), (right, 0)):
        ax.plot(
            [x, x],
            [0, 1],
            transform=ax.transAxes,
            marker=slant,
            markersize=12,
            linestyle="none",
            color="k",
            clip_on=False,
        )


def metric_dots(labels: list[str], means: list[float], stds: list[float], metric: str) -> bytes:
    """One dot per run or group, std as error bars, the value printed beside each row.

    The axis spans the values, not 0-1: two AUROCs of 0.9967 and 0.9948 look equal on bars
    from 0, and dots (unlike bars) do not claim that their length means anything. A wide empty
    gap between the values (one failed run among good ones) breaks the axis, marked as broken,
    so the close values still spread out. The axis label says where the axis starts and where
    it is broken; a dotted line marks chance when it is in view.
    """
    wrapped = [textwrap.fill(plain(label), LABEL_WIDTH) for label in labels]
    lines = max((label.count("\n") + 1 for label in wrapped), default=1)
    values = np.asarray(means, dtype=float)
    spread = np.asarray(stds, dtype=float)
    errors = np.nan_to_num(spread)
    parts = axis_parts(values, errors)
    counts = [int(np.sum((values >= a) & (values <= b))) for a, b in parts]
    widths = [max(n, max(counts) / 3, 1) for n in counts]
    fig, axes = plt.subplots(
        1,
        len(parts),
        sharey=True,
        squeeze=False,
        figsize=(PAGE_WIDTH, 1.5 + 0.32 * len(labels) * lines),
        width_ratios=widths,
        layout=ConstrainedLayoutEngine(wspace=0.0, w_pad=0.02),
    )
    y = np.arange(len(labels))
    top = 1.0 if metric in UNIT_METRICS else np.inf  # no tick promises a value a metric cannot have
    chance = False
    for ax, (start, end), width in zip(axes[0], parts, widths):
        ax.hlines(y, start, values, color="#bbbbbb", linewidth=0.8, linestyle=":")
        ax.errorbar(values, y, xerr=errors, fmt="o", color="tab:blue", markersize=7, capsize=4, elinewidth=1.2)
        if start < CHANCE < end and metric in CHANCE_METRICS:
            ax.axvline(CHANCE, color="grey", linestyle=(0, (1, 3)))
            chance = True
        ticks = MaxNLocator(nbins=max(2, round(10 * width / sum(widths)))).tick_values(start, end)
        ax.set_xticks([t for t in ticks if start <= t <= min(end, top)])
        ax.set_xlim(start, end)
        ax.grid(axis="x", alpha=0.3)
    if len(parts) == 2:
        _break_marks(*axes[0])
    last = axes[0][-1]
    for i, (value, error, std) in enumerate(zip(values, errors, spread)):
        if np.isfinite(value):
            text = f"{value:.4f} ± {error:.4f}" if np.isfinite(std) else f"{value:.4f}"
            last.text(1.01, i, text, transform=last.get_yaxis_transform(), va="center", fontsize="medium")
    first = axes[0][0]
    first.set_yticks(y, wrapped, fontsize="medium")
    first.set_ylim(len(labels) - 0.5, -0.7)
    where = "0" if parts[0][0] == 0.0 else f"{parts[0][0]:.4g}, not 0"
    broken = f", broken between {parts[0][1]:.4g} and {parts[1][0]:.4g}" if len(parts) == 2 else ""
    dotted = "; dotted line: chance" if chance else ""
    fig.supxlabel(f"{metric} (axis starts at {where}{broken}; values at the right{dotted})", fontsize="medium")
    return _png(fig)


def per_class_bars(table: pd.DataFrame, row_labels: list[str], classes: list[str], metric: str) -> bytes:
    """One bar per method for each normal class, as in the per-class AUROC tables (values as
    fractions). The axis starts at chance (0.5) when no value is below it, else at 0, and says so."""
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 5))
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
