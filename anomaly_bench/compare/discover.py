"""Find run folders under the paths a user names: run folders, sweep folders, globs.

A run folder is a directory holding ``metrics.json`` or ``.hydra/config.yaml``. Discovery
recurses into everything else and stops at run folders (their ``samples/`` etc. are theirs).
A directory that is neither a run folder nor leads to one is reported as foreign, so a stray
folder inside a sweep is listed instead of silently ignored.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from anomaly_bench.run_folder import HYDRA_CONFIG_FILE as HYDRA_CONFIG
from anomaly_bench.run_folder import METRICS_FILE

GLOB_CHARS = set("*?[")
#: MLflow's local artifact stores (beside a SQLite store in outputs/): copies of run folders' files,
#: never run folders of their own; skipped on the way down, read only when named.
TRACKER_STORES = ("mlartifacts", "mlruns")
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> list:
    """Sweep jobs 0..N in numeric order: '2_x' before '10_x'."""
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(name)]


@dataclass
class Discovery:
    """Run folders in the order found, and every other path with why it is not one."""

    runs: list[Path] = field(default_factory=list)
    foreign: list[tuple[Path, str]] = field(default_factory=list)


def is_run_folder(folder: str, names: set[str]) -> bool:
    """``names``: the folder's entries as os.walk lists them (saves a stat per folder)."""
    return METRICS_FILE in names or (".hydra" in names and os.path.isfile(os.path.join(folder, HYDRA_CONFIG)))


def _expand(pattern: str) -> list[str]:
    """A path that exists is taken literally (Hydra folder names contain '[' and ']')."""
    if os.path.exists(pattern) or not GLOB_CHARS & set(pattern):
        return [pattern]
    return sorted(glob.glob(pattern, recursive=True), key=natural_key)


def _walk(root: str, found: Discovery, seen: set[str]) -> int:
    """Add what lies under ``root``; return how many entries (run or foreign) it held."""
    hits = 0
    for current, dirs, files in os.walk(root):
        names = set(dirs) | set(files)
        if is_run_folder(current, names):
            dirs.clear()
            hits += 1
            key = os.path.realpath(current)
            if key not in seen:
                seen.add(key)
                found.runs.append(Path(current))
            continue
        dirs[:] = sorted((d for d in dirs if not d.startswith(".") and d not in TRACKER_STORES), key=natural_key)
        if not dirs and current != root:
            found.foreign.append((Path(current), "not a run folder (no metrics.json or .hydra/config.yaml)"))
            hits += 1
    return hits


def discover(paths: list[str]) -> Discovery:
    """Every run folder under ``paths`` (deduplicated), plus what was given but holds none."""
    found = Discovery()
    seen: set[str] = set()
    for pattern in paths:
        matches = _expand(pattern)
        if not matches:
            found.foreign.append((Path(pattern), "no such file or folder"))
        for match in matches:
            if os.path.isfile(match) and os.path.basename(match) == METRICS_FILE:
                match = os.path.dirname(match) or "."
            if not os.path.isdir(match):
                reason = "not a folder" if os.path.exists(match) else "no such file or folder"
                found.foreign.append((Path(match), reason))
                continue
            if not _walk(match, found, seen):
                found.foreign.append((Path(match), "holds no run folder"))
    return found
