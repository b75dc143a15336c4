"""Decoded image files kept on disk, so the second run over a folder reads one array instead of 60,000 JPEGs.

An entry is two files named by a hash of its key: ``<hash>.npy`` (the decoded uint8 images, one
row per readable file) and ``<hash>.json`` (the key itself, which rows the files are, and what
decoding found). The key is everything the array depends on: the folder, every file's
relative path, size and modification time, ``image_size`` and ``channels``. So a changed,
added or removed file gives another key, and the entry of the old one is simply not found.

An entry is never trusted: its JSON must equal the key of the files on disk now, and the
array's header must say uint8 with exactly one row per listed readable file, the expected
image shape, and a file size that matches the header (memory is never sized by a number
inside the entry alone). Anything else is a miss and the entry is rebuilt. Entries are
written to a temporary file and renamed, so concurrent runs never see half an entry; two runs
writing the same key write the same content.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from anomaly_bench.data.folders import Listing, class_sort_key, decode_all
from anomaly_bench.data.images import CHANNELS
from anomaly_bench.errors import BadDataError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CACHE_ENV = "XDG_CACHE_HOME"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/anomaly-bench``, else ``~/.cache/anomaly-bench``."""
    base = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache")
    return Path(base).expanduser() / "anomaly-bench"


def _relative(root: Path, files: list[Path]) -> list[str]:
    """Paths relative to ``root`` as strings (listed files lie under it; string slicing is what
    keeps a 60,000-file folder's key quick to build)."""
    prefix = len(os.path.join(str(root), ""))
    return [str(f)[prefix:] for f in files]


def _canonical(root: Path, listing: Listing) -> tuple[list[Path], list[str], list[str]]:
    """Every listed file once, in an order that does not depend on the test split drawn from them
    (path components sorted like class names), with its relative path and its class."""
    classes = {f: c for part in listing.files for f, c in zip(listing.files[part], listing.classes[part])}
    files = list(classes)
    relative = _relative(root, files)
    order = sorted(range(len(files)), key=lambda i: [class_sort_key(part) for part in relative[i].split(os.sep)])
    return [files[i] for i in order], [relative[i] for i in order], [classes[files[i]] for i in order]


def _key(
    files: list[Path], relative: list[str], root: Path, image_size: list[int] | None, channels: int | None
) -> dict[str, Any]:
    stats = []
    for path, name in zip(files, relative):
        st = os.stat(path)
        stats.append([name, st.st_size, st.st_mtime_ns])
    return {
        "version": FORMAT_VERSION,
        "root": str(root.resolve()),
        "image_size": image_size,
        "channels": channels,
        "files": stats,
    }


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _valid_rows(rows: Any, n_files: int) -> bool:
    return (
        isinstance(rows, list)
        and all(isinstance(r, int) and not isinstance(r, bool) for r in rows)
        and all(0 <= a < b < n_files for a, b in itertools.pairwise(rows))
        and (not rows or 0 <= rows[0] < n_files)
    )


def _valid_facts(facts: Any) -> bool:
    sizes = facts.get("found_image_sizes") if isinstance(facts, dict) else None
    return (
        isinstance(sizes, list)
        and len(sizes) > 0
        and isinstance(sizes[0], list)
        and len(sizes[0]) == 2
        and all(isinstance(s, int) and s > 0 for s in sizes[0])
        and facts.get("found_channels") in CHANNELS
    )


def _open_array(path: Path, n_rows: int, shape: tuple[int, int, int] | None) -> np.ndarray | None:
    """The entry's images memory-mapped, or None unless the header and the file size say exactly
    uint8 n_rows x H x W x C with the expected (H, W, C) (C in 1, 3 when ``shape`` leaves it open)."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            header_shape, fortran, dtype = reader(handle)
            offset = handle.tell()
            size = os.fstat(handle.fileno()).st_size
    except (OSError, ValueError):
        return None
    if dtype != np.uint8 or fortran or len(header_shape) != 4 or header_shape[0] != n_rows:
        return None
    if (shape is not None and tuple(header_shape[1:]) != shape) or header_shape[3] not in CHANNELS:
        return None
    if size != offset + int(np.prod(header_shape)):
        return None
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    return images if images.shape == tuple(header_shape) and images.dtype == np.uint8 else None


def _read_entry(
    folder: Path, stem: str, key: dict, image_size: list[int] | None, channels: int | None
) -> tuple[np.ndarray, list[int], dict] | None:
    try:
        meta = json.loads((folder / f"{stem}.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("key") != key:
        return None
    rows, facts = meta.get("rows"), meta.get("facts")
    if not isinstance(rows, list) or not isinstance(facts, dict):
        return None
    if not _valid_rows(rows, len(key["files"])) or not _valid_facts(facts):
        return None
    height, width = image_size if image_size is not None else facts["found_image_sizes"][0]
    n_channels = channels if channels is not None else facts["found_channels"]
    images = _open_array(folder / f"{stem}.npy", len(rows), (int(height), int(width), int(n_channels)))
    return None if images is None else (images, rows, facts)


def _replace(target: Path, write) -> None:
    """Write through a temporary file in the same folder and rename it over ``target`` (atomic)."""
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_entry(folder: Path, stem: str, meta: dict, images: np.ndarray) -> None:
    """The array first, the JSON that makes it an entry last; then older entries of this folder go."""
    folder.mkdir(parents=True, exist_ok=True)
    _replace(folder / f"{stem}.npy", lambda out: np.save(out, images, allow_pickle=False))
    _replace(folder / f"{stem}.json", lambda out: out.write(json.dumps(meta).encode()))
    for old in folder.iterdir():
        if not old.name.startswith((".", stem)) and old.suffix in (".npy", ".json"):
            old.unlink(missing_ok=True)


def _parts(
    listing: Listing, order: list[Path], rows: list[int], images: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Each part's images out of the entry's rows: a view where the part's rows are consecutive."""
    position = {str(order[r]): i for i, r in enumerate(rows)}
    out, classes = {}, {}
    for part, files in listing.files.items():
        found = [position.get(str(f)) for f in files]
        listing.skipped.extend(str(f) for f, i in zip(files, found) if i is None and str(f) not in listing.skipped)
        index = np.array([i for i in found if i is not None], dtype=np.int64)
        if len(index) == 0:
            raise BadDataError(f"no readable {part} images")
        consecutive = bool(np.all(np.diff(index) == 1))
        out[part] = images[index[0] : index[-1] + 1] if consecutive else images[index]
        classes[part] = [c for c, i in zip(listing.classes[part], found) if i is not None]
    return out, classes


def decode_cached(
    root: Path,
    listing: Listing,
    image_size: list[int] | None,
    channels: int | None,
    skip_unreadable: bool,
    cache_dir: Path | None,
) -> tuple[dict[str, np.ndarray], dict[str, list[str]], dict]:
    """:func:`~anomaly_bench.data.folders.decode_all` through the cache in ``cache_dir`` (None: off).

    Returns (images per part, classes per part, facts); ``facts["image_cache"]`` says whether
    the cache served (``hit``), was filled (``stored``), could not be written, or is ``off``.
    """
    size = (image_size[0], image_size[1]) if image_size is not None else None
    if cache_dir is None:
        images, classes, facts = decode_all(listing, size, channels, skip_unreadable)
        return images, classes, {**facts, "image_cache": {"status": "off"}}
    order, relative, order_classes = _canonical(root, listing)
    key = _key(order, relative, root, image_size, channels)
    folder = cache_dir / "decoded" / _digest([key["root"], image_size, channels])[:16]
    stem = _digest(key)[:32]
    entry = _read_entry(folder, stem, key, image_size, channels)
    if entry is not None and (skip_unreadable or len(entry[1]) == len(order)):
        cached, rows, cached_facts = entry
        log.info("data: %d decoded images from the cache (%s)", len(rows), folder / f"{stem}.npy")
        parts, classes = _parts(listing, order, rows, cached)
        kept = {k: cached_facts[k] for k in ("found_image_sizes", "found_channels")}
        return parts, classes, {**kept, "image_cache": {"status": "hit", "entry": str(folder / f"{stem}.npy")}}
    whole = Listing({"all": order}, {"all": order_classes}, listing.test_split)
    decoded, _, facts = decode_all(whole, size, channels, skip_unreadable)
    skipped = set(whole.skipped)
    rows = [i for i, f in enumerate(order) if str(f) not in skipped]
    parts, classes = _parts(listing, order, rows, decoded["all"])
    meta = {"key": key, "rows": rows, "facts": {k: facts[k] for k in ("found_image_sizes", "found_channels")}}
    try:
        _write_entry(folder, stem, meta, decoded["all"])
        status = {"status": "stored", "entry": str(folder / f"{stem}.npy")}
    except OSError as exc:
        log.warning("data: decoded images not cached (%s); set dataset.cache=false to skip the cache", exc)
        status = {"status": f"not stored ({exc.strerror or exc})"}
    return parts, classes, {**facts, "image_cache": status}
