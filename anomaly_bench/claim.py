"""Output locations are claimed, not checked: created exclusively before any work, never inside a result.

``anomaly-bench-predict --out`` and ``anomaly-bench-compare --out`` take a path from the user,
who may point it at a finished run or a sweep by mistake, or start two commands with the same
path. Checking "does it exist?" and writing later loses to both: the folder or file is therefore
created here with an exclusive create (``os.mkdir``, ``O_EXCL``) before the command does any
work, so of two commands one gets it and the other stops with one line; and no location that
is, holds or lies inside a run or sweep folder is ever claimed. What a failed or interrupted
command claimed is released (removed) by :meth:`Claim.release`, so it leaves nothing that
looks like a result.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from anomaly_bench.errors import ConfigError, shown
from anomaly_bench.run_folder import METRICS_FILE, SWEEP_FILE

#: What marks a folder as a run (metrics.json, .hydra/) or a sweep (multirun.yaml).
RESULT_MARKERS = (METRICS_FILE, ".hydra", SWEEP_FILE)


def result_folder_at_or_above(path: Path) -> Path | None:
    """The nearest folder, ``path`` itself or one of its ancestors, that holds a run or sweep marker."""
    here = Path(os.path.realpath(path))  # links resolved: a link into a run folder is that folder
    for folder in (here, *here.parents):
        if any(os.path.lexists(folder / marker) for marker in RESULT_MARKERS):
            return folder
    return None


@dataclass
class Claim:
    """A path this process created exclusively, and the empty parent folders it created on the way."""

    path: Path
    is_folder: bool
    parents: list[Path] = field(default_factory=list)

    def release(self) -> None:
        """Remove what was claimed (and the parents made for it): the command produced no result."""
        try:
            if self.is_folder:
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                self.path.unlink(missing_ok=True)
        except OSError:
            pass
        _remove_empty(self.parents)


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders made for a claim, deepest first, stopping at one that is not empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def _refuse_results(option: str, path: Path) -> None:
    found = result_folder_at_or_above(path)
    if found is not None:
        kind = "sweep" if (found / SWEEP_FILE).exists() else "run"
        raise ConfigError(
            f"{option} {shown(str(path), quote=False)} lies in {shown(str(found), quote=False)}, a {kind} "
            "folder; a finished result is never written into: choose a location outside run and sweep folders"
        )


def _make_parents(option: str, path: Path) -> list[Path]:
    """Create the missing parent folders of ``path``; returns those created, deepest first."""
    missing = []
    parent = path.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    _refuse_results(option, parent)
    created: list[Path] = []
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            _remove_empty(list(reversed(created)))
            raise ConfigError(
                f"{option} {shown(str(path), quote=False)}: cannot create {folder} ({exc.strerror or exc}); "
                "choose a folder you can write to"
            ) from None
        created.append(folder)
    return list(reversed(created))


def claim_folder(option: str, path: Path) -> Claim:
    """Create ``path`` as a new folder (exclusively); ConfigError when it exists, lies in a result or cannot be made."""
    path = Path(path)
    _refuse_results(option, path if os.path.lexists(path) else path.parent)
    parents = _make_parents(option, path)
    try:
        os.mkdir(path)
    except FileExistsError:
        _remove_empty(parents)
        raise ConfigError(
            f"{option} {shown(str(path), quote=False)} exists; results go into a new folder this command creates "
            "(two commands never share one): choose a new path"
        ) from None
    except OSError as exc:
        _remove_empty(parents)
        raise ConfigError(
            f"{option} {shown(str(path), quote=False)}: cannot create it ({exc.strerror or exc}); "
            "choose a folder you can write to"
        ) from None
    return Claim(path, True, parents)


def claim_file(option: str, path: Path) -> Claim:
    """Create ``path`` as a new empty file (``O_EXCL``); ConfigError when it exists, lies in a result or cannot be made."""
    path = Path(path)
    _refuse_results(option, path.parent if not os.path.isdir(path) else path)
    parents = _make_parents(option, path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        _remove_empty(parents)
        raise ConfigError(
            f"{option} {shown(str(path), quote=False)} exists; a file is never overwritten: remove it or choose a new name"
        ) from None
    except OSError as exc:
        _remove_empty(parents)
        raise ConfigError(
            f"{option} {shown(str(path), quote=False)}: cannot create it ({exc.strerror or exc}); "
            "choose a location you can write to"
        ) from None
    return Claim(path, False, parents)
