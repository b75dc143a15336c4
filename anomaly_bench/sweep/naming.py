"""Job folder names built from Hydra's ``override_dirname``, safe for shells, globs and file systems.

Hydra writes overrides verbatim (``dataset.normal_classes=[0,1]``): brackets are glob
patterns for shells and for ``glob.glob``, values may hold ``/`` or spaces, and a long
override list can exceed the 255-byte limit of a folder name. Lists become dash-joined
(``dataset.normal_classes=0-1``, as in single-run folder names) and anything unusual an
underscore; the name stays deterministic so a resumed sweep finds its folders again.
"""

from __future__ import annotations

import hashlib
import re

_INNERMOST_LIST = re.compile(r"\[([^\[\]]*)\]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+-]")
MAX_NAME_BYTES = 200  # leaves room for the "<job number>_" prefix under the 255-byte limit


def _join_list(match: re.Match) -> str:
    return "-".join(item.strip().strip("'\"") for item in match.group(1).split(",") if item.strip())


def safe_dirname(override_dirname: str) -> str:
    """``a=[0,1],b=x y`` -> ``a=0-1,b=x_y``; names longer than MAX_NAME_BYTES end in a hash."""
    original = str(override_dirname)
    name = original
    while _INNERMOST_LIST.search(name):
        name = _INNERMOST_LIST.sub(_join_list, name)
    name = _UNSAFE.sub("_", name)
    if len(name) > MAX_NAME_BYTES:
        digest = hashlib.sha1(original.encode()).hexdigest()[:10]
        name = f"{name[: MAX_NAME_BYTES - 11]}-{digest}"
    return name
