"""One record per job while a sweep runs, one ``summary.csv`` when it ends.

Jobs may run in other processes or on other machines (joblib, SLURM), so each job writes
its own record file into the sweep folder and the process that started the sweep gathers
them at the end. Only jobs of the current invocation are listed: the records are reset
when a sweep starts, and removed once the summary is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from anomaly_bench.run_folder import write_json

RECORDS_DIR = ".jobs"
SUMMARY_FILE = "summary.csv"
METRICS = ("val_auroc", "auroc", "auprc", "f1")
COLUMNS = ["job", "status", "resumed", *METRICS, "duration_s", "overrides", "folder", "error"]


def reset_records(sweep_dir: Path) -> None:
    shutil.rmtree(sweep_dir / RECORDS_DIR, ignore_errors=True)
    (sweep_dir / RECORDS_DIR).mkdir(parents=True)


def write_record(sweep_dir: Path, record: dict) -> None:
    folder = sweep_dir / RECORDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / f"{record['job']}.json", record)


def read_records(sweep_dir: Path) -> list[dict]:
    records = []
    for path in sorted((sweep_dir / RECORDS_DIR).glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return records


def summary_table(records: list[dict]) -> pd.DataFrame:
    """Failures first, then by job number."""
    table = pd.DataFrame(records, columns=COLUMNS)
    table["failed_first"] = table["status"] != "failed"
    return table.sort_values(["failed_first", "job"]).drop(columns="failed_first").reset_index(drop=True)


def write_summary(sweep_dir: Path, records: list[dict]) -> tuple[Path, pd.DataFrame]:
    table = summary_table(records)
    path = sweep_dir / SUMMARY_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(path)
    shutil.rmtree(sweep_dir / RECORDS_DIR, ignore_errors=True)
    return path, table


def describe(table: pd.DataFrame, path: Path) -> str:
    """The text printed at the end of a sweep: counts, failures with their reason, the table."""
    failed = table[table["status"] == "failed"]
    n_resumed = int(table["resumed"].sum())
    lines = [
        f"sweep: {len(table)} jobs, {len(table) - len(failed)} completed ({n_resumed} resumed), {len(failed)} failed"
    ]
    for row in failed.itertuples():
        lines.append(f"  FAILED job {row.job} ({row.folder}): {row.error}")
    shown = table[["job", "status", "resumed", *METRICS, "duration_s", "overrides"]]
    lines.append(
        shown.to_string(
            index=False, float_format=lambda v: f"{v:.4f}", na_rep="-", formatters={"duration_s": lambda v: f"{v:.1f}"}
        )
    )
    lines.append(f"summary: {path}")
    return "\n".join(lines)
