"""One self-contained HTML report: tables, AUROC bars, overlaid ROC curves, histogram thumbnails.

Every image is embedded as base64 PNG so the file can be mailed or archived alone. Every
text that comes from a config or a folder name goes through :func:`html.escape`: a config
value is user input, and a report is opened in a browser.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass

import pandas as pd

from anomaly_bench.compare import figures
from anomaly_bench.compare.formats import Comparison, display
from anomaly_bench.compare.load import RunRecord

BAR_METRIC = "auroc"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; width: 300px; font-size: 0.75em; overflow-wrap: anywhere; }
figure img { width: 300px; border: 1px solid #ddd; }
.note { color: #666; font-size: 0.9em; }
"""


@dataclass
class ReportOptions:
    group_keys: list[str]
    max_curves: int
    max_thumbnails: int


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def html_table(table: pd.DataFrame, percent: bool = False) -> str:
    shown = display(table, percent)
    numeric = {c for c in table.columns if table[c].dtype.kind in "fi"}
    numeric |= {c[:-5] for c in table.columns if c.endswith("_mean")}
    head = "".join(f"<th>{_e(c)}</th>" for c in shown.columns)
    rows = []
    for row in shown.itertuples(index=False):
        cells = "".join(f'<td class="num">{_e(v)}</td>' if c in numeric else f"<td>{_e(v)}</td>"
                        for c, v in zip(shown.columns, row))
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _labels(runs: pd.DataFrame, keys: list[str]) -> pd.Series:
    """'key=value ...' of the given columns; the run folder when there are none."""
    if not keys:
        return runs["run"]
    return runs[keys].apply(lambda row: " ".join(f"{k}={v}" for k, v in row.items()), axis=1)


def _differing(runs: pd.DataFrame) -> list[str]:
    columns = list(runs.columns)
    return columns[columns.index("run") + 1:columns.index("status")]


def _bars(result: Comparison, done: pd.DataFrame, options: ReportOptions) -> tuple[bytes, str]:
    if result.percent:
        table = result.table
        classes = [c for c in table.columns if c.isdigit()]
        labels = list(_labels(table, options.group_keys))
        return figures.per_class_bars(table, labels, classes, BAR_METRIC), f"{BAR_METRIC} per normal class and method"
    if options.group_keys:
        stats = done.groupby(options.group_keys)[BAR_METRIC].agg(["mean", "std"]).sort_values("mean", ascending=False)
        stats = stats.head(options.max_curves)
        labels = [" ".join(f"{k}={v}" for k, v in zip(options.group_keys, idx if isinstance(idx, tuple) else (idx,)))
                  for idx in stats.index]
        return (figures.metric_bars(labels, list(stats["mean"]), list(stats["std"]), BAR_METRIC),
                f"{BAR_METRIC} per group: mean ± std over the completed runs of the group")
    top = done.sort_values(BAR_METRIC, ascending=False).head(options.max_curves)
    labels = list(_labels(top, _differing(done)))
    shown = f"the best {len(top)} of {len(done)} runs" if len(top) < len(done) else "every completed run"
    return figures.metric_bars(labels, list(top[BAR_METRIC]), [float("nan")] * len(top), BAR_METRIC), \
        f"{BAR_METRIC} per run ({shown})"


def _roc(done: pd.DataFrame, records: list[RunRecord], options: ReportOptions) -> tuple[bytes | None, str]:
    keys = options.group_keys
    labels = _labels(done, _differing(done))
    groups = _labels(done, keys) if keys else pd.Series(done.index.astype(str), index=done.index)
    candidates = done if keys or len(done) <= options.max_curves else \
        done.sort_values(BAR_METRIC, ascending=False).head(options.max_curves)
    curves = [c for c in (figures.read_curve(records[i].path, labels[i], groups[i]) for i in candidates.index)
              if c is not None]
    if not curves:
        return None, "no run has a readable scores.csv with both normal and anomalous test images"
    note = f"{len(curves)} runs, recomputed from each run's scores.csv"
    if len(curves) > options.max_curves:
        curves = sorted(figures.mean_curves(curves), key=lambda c: -c.auroc)[:options.max_curves]
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
        caption = f"{_e(labels[i])}<br><span class=\"note\">{_e(done.at[i, 'run'])}</span>"
        image = _img(png, f"score histogram of {labels[i]}")
        cards.append(f"<figure>{image}<figcaption>{caption}</figcaption></figure>")
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
    parts = [f"<h1>anomaly-bench comparison</h1><p>{_e(result.title)}</p>",
             "<h2>Table</h2>", html_table(result.table, result.percent)]
    if not done.empty:
        bars, caption = _bars(result, done, options)
        parts += [f"<h2>{_e(BAR_METRIC.upper())}</h2>", _img(bars, caption), f'<p class="note">{_e(caption)}</p>']
        roc, caption = _roc(done, records, options)
        parts += ["<h2>ROC curves</h2>", _img(roc, caption) if roc else "", f'<p class="note">{_e(caption)}</p>']
    if result.table is not result.runs:
        parts += ["<h2>Runs</h2>", html_table(result.runs)]
    if not done.empty:
        parts += ["<h2>Score histograms</h2>", _thumbnails(done, records, options)]
    if result.problems:
        items = "".join(f"<li><b>{_e(p.status)}</b> <code>{_e(p.path)}</code>: {_e(p.reason)}</li>"
                        for p in result.problems)
        parts += [f"<h2>Not counted ({len(result.problems)})</h2><ul>{items}</ul>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>anomaly-bench comparison</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
