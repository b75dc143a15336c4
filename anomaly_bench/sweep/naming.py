"""Job folder names built from Hydra's ``override_dirname``, safe for shells, globs and file systems.

Hydra writes overrides verbatim (``dataset.normal_classes=[0,1]``): brackets are glob
patterns for shells and for ``glob.glob``, values may hold ``/`` or spaces, and a long
override list can exceed the 255-byte limit of a folder name. Lists become dash-joined
(``dataset.normal_classes=0-1``, as in single-run folder names) and anything unusual an
underscore; the name stays deterministic so a resumed sweep finds its folders again.
Where a job is tracked (``logger=...``, ``logger.mlflow.tracking_uri=...``) changes no result,
so those overrides are left out: a sweep resumed with another tracker finds the same folders.
"""

from __future__ import annotations

import hashlib
import re

_INNERMOST_LIST = re.compile(r"\[([^\[\]]*)\]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+-]")
_TRACKER_OVERRIDE = re.compile(r"^logger[.=]")
MAX_NAME_BYTES = 200  # leaves room for the "<job number>_" prefix under the 255-byte limit


def _join_list(match: re.Match) -> str:
    return "-".join(item.strip().strip("'\"") for item in match.group(1).split(",") if item.strip())


def _items(text: str) -> list[str]:
    """``a=[0,1],b=x`` -> ``['a=[0,1]', 'b=x']``: split at the commas outside brackets, losslessly."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    return [*items, text[start:]]


def safe_dirname(override_dirname: str) -> str:
    """``a=[0,1],b=x y`` -> ``a=0-1,b=x_y``; names longer than MAX_NAME_BYTES end in a hash."""
    original = ",".join(item for item in _items(str(override_dirname)) if not _TRACKER_OVERRIDE.match(item))
    name = original
    while _INNERMOST_LIST.search(name):
        name = _INNERMOST_LIST.sub(_join_list, name)
    name = _UNSAFE.sub("_", name)
    if len(name) > MAX_NAME_BYTES:
        digest = hashlib.sha1(original.encode()).hexdigest()[:10]
        name = f"{name[: MAX_NAME_BYTES - 11]}-{digest}"
    return name
