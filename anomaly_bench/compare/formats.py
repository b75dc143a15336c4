"""Text outputs of a comparison: markdown for the terminal, CSV and JSON for other programs.

CSV and JSON keep numbers as numbers (``auroc_mean``, ``auroc_std`` in separate columns);
markdown and HTML show them through :func:`display`, which merges mean and std into one cell.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from anomaly_bench.compare.table import DURATION

DECIMALS = 4
DURATION_DECIMALS = 1


@dataclass
class Problem:
    """A folder that is not a completed result, or a path that held no run folder."""

    path: Path
    status: str
    reason: str


@dataclass
class Comparison:
    """Everything an output needs: the main table, the per-run rows behind it, the problems."""

    table: pd.DataFrame
    runs: pd.DataFrame
    title: str
    problems: list[Problem] = field(default_factory=list)
    percent: bool = False  # the per-class layout: cells already in %, one decimal
    metric: str = ""  # the metric of the per-class cells


def _number(value: float, decimals: int) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{decimals}f}"


def display(table: pd.DataFrame, percent: bool = False) -> pd.DataFrame:
    """Strings for people: ``mean ± std`` cells, fixed decimals, blanks for missing values."""
    shown: dict[str, list[str]] = {}
    for column in table.columns:
        if column.endswith("_std") and column[:-4] + "_mean" in table.columns:
            continue
        values = table[column]
        if column.endswith("_mean"):
            name = column[:-5]
            decimals = DURATION_DECIMALS if name == DURATION else DECIMALS
            stds = table[f"{name}_std"]
            shown[name] = [
                _number(m, decimals) + (f" ± {_number(s, decimals)}" if not math.isnan(s) else "")
                if not math.isnan(m)
                else ""
                for m, s in zip(values, stds)
            ]
        elif column == "n":
            shown[column] = [str(int(v)) if not pd.isna(v) else "" for v in values]
        elif values.dtype.kind == "f":
            decimals = 1 if percent else DURATION_DECIMALS if column == DURATION else DECIMALS
            shown[column] = [_number(v, decimals) for v in values]
        else:
            shown[column] = ["" if v is None else str(v) for v in values]
    return pd.DataFrame(shown, columns=list(shown), dtype=object)  # object: see table.run_table


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(_md_cell(str(c)) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def to_markdown(result: Comparison) -> str:
    parts = [result.title, "", markdown_table(display(result.table, result.percent))]
    if result.problems:
        parts += ["", f"Not counted ({len(result.problems)}):"]
        parts += [f"- {p.status}: {_md_cell(str(p.path))}: {_md_cell(p.reason)}" for p in result.problems]
    return "\n".join(parts) + "\n"


def to_csv(result: Comparison) -> str:
    return result.table.to_csv(index=False)


def _plain(table: pd.DataFrame) -> list[dict]:
    return table.astype(object).where(table.notna(), None).to_dict(orient="records")


def to_json(result: Comparison) -> str:
    payload = {
        "title": result.title,
        "table": _plain(result.table),
        "problems": [{"path": str(p.path), "status": p.status, "reason": p.reason} for p in result.problems],
    }
    return json.dumps(payload, indent=2) + "\n"
