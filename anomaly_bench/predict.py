"""``anomaly-bench-predict RUN_DIR PATH... [--out DIR]``: a completed run used as a detector on new images.

PATH may be image files, folders (searched recursively), globs, a ``.npz`` or an IDX folder
or file. Every image is brought to the run's shape (Pillow resize, grey <-> RGB) and scale,
scored in batches (memory stays bounded by the batch, not the number of files) and flagged
under the run's own threshold. Results go to a new folder, never into the run folder:
``predictions.csv`` and ``most_anomalous.png`` (the top images above their reconstruction or
nearest normal example, where the model has one).

Exit codes: 0 all scored; 2 bad input (run folder not completed or unknown, a PATH that does
not exist, nothing found, nothing readable, an --out that exists or lies in a run or sweep
folder), nothing written; 1 some files unreadable (listed in ``unreadable.csv``), the rest
scored; 130 interrupted (Ctrl-C), nothing written. The --out folder is created exclusively
before any work (:mod:`anomaly_bench.claim`) and removed again when the command ends without a
result. Each file is scored once however often it is reached (links, overlapping PATHs);
non-regular files (FIFOs, devices) are skipped and counted.
"""

from __future__ import annotations

import argparse
import errno
import glob
import heapq
import os
import re
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported anywhere

import numpy as np

from anomaly_bench.claim import claim_folder
from anomaly_bench.data.checks import stored_images
from anomaly_bench.errors import BadDataError, ConfigError, one_line
from anomaly_bench.native_stderr import filter_native_logs

PROG = "anomaly-bench-predict"
EXIT_OK, EXIT_UNREADABLE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}
NPZ_KEYS = ("x_test", "x", "images")  # which array of an .npz holds the images, in this order
PREDICTIONS_FILE, FIGURE_FILE, UNREADABLE_FILE = "predictions.csv", "most_anomalous.png", "unreadable.csv"
GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class ImageFile:
    path: Path


@dataclass(frozen=True)
class ImageArray:
    """Images stored together (an .npz array, an IDX file): read once, scored slice by slice."""

    path: Path
    key: str | None  # the .npz array, None for IDX

    def read(self) -> np.ndarray:
        from anomaly_bench.data.readers import read_idx, read_npz_array

        return read_idx(self.path) if self.key is None else read_npz_array(self.path, self.key)


Source = ImageFile | ImageArray


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------- finding images
def _idx_images_in(folder: Path) -> Path | None:
    from anomaly_bench.data.readers import IDX_FILES, find_idx_file

    return find_idx_file(folder, IDX_FILES["x_test"]) or find_idx_file(folder, IDX_FILES["x_train"])


def _npz_source(path: Path) -> ImageArray:
    from anomaly_bench.data.readers import npz_keys

    keys = npz_keys(path)
    key = next((k for k in NPZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
    if key is None:
        raise ConfigError(f"{path} holds arrays {keys}; expected one of {', '.join(NPZ_KEYS)} or a single array")
    return ImageArray(path, key)


@dataclass
class Found:
    """What the command line names: image sources in order, each file once, and what was passed over."""

    sources: list[Source] = field(default_factory=list)
    not_regular: list[str] = field(default_factory=list)  # FIFOs, devices, sockets, broken links
    repeated: int = 0  # files reached a second time (through links, overlapping PATHs)
    seen: set[tuple[int, int]] = field(default_factory=set)  # (device, inode) of every file met

    def add(self, path: Path, make) -> None:
        """Add ``make(path)`` once per file (device, inode); a non-regular file is never opened."""
        try:
            info = os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a path around a link loop: what it leads to is reached more directly
                self.repeated += 1
                return
            info = os.lstat(path)  # a broken link
        key = (info.st_dev, info.st_ino)
        if key in self.seen:
            self.repeated += stat.S_ISREG(info.st_mode)
            return
        self.seen.add(key)
        if stat.S_ISREG(info.st_mode):
            self.sources.append(make(path))
        else:
            self.not_regular.append(str(path))


def _walk(folder: Path) -> Iterator[Path]:
    """Files under ``folder``, links to folders not followed (a folder linking to itself ends nowhere)."""
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            yield Path(root) / name


def _add_sources_at(path: Path, found: Found) -> None:
    if path.is_dir():
        idx = _idx_images_in(path)
        if idx is not None:
            found.add(idx, lambda p: ImageArray(p, None))
            return
        for file in _walk(path):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                found.add(file, ImageFile)
        return
    if path.suffix.lower() == ".npz":
        found.add(path, _npz_source)
    elif "idx3-ubyte" in path.name:
        found.add(path, lambda p: ImageArray(p, None))
    else:
        found.add(path, ImageFile)  # any other file is tried as an image; an unreadable one is reported


def find_sources(paths: list[str]) -> Found:
    """Every image source the command line names, in order, each file once; ConfigError for a PATH
    that names nothing. Non-regular files (a FIFO named x.png would block the reader) are skipped."""
    found = Found()
    for arg in paths:
        path = Path(arg)
        if os.path.lexists(path):
            _add_sources_at(path, found)
        elif GLOB_CHARS & set(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                raise ConfigError(f"{arg} matches no file")
            for match in matches:
                _add_sources_at(Path(match), found)
        else:
            raise ConfigError(f"{arg} does not exist")
    if not found.sources:
        skipped = f" ({len(found.not_regular)} non-regular files skipped)" if found.not_regular else ""
        raise ConfigError(
            f"no images found in {' '.join(paths)}{skipped} (image files: {', '.join(sorted(IMAGE_SUFFIXES))}; "
            "also .npz and IDX folders)"
        )
    return found


# ----------------------------------------------------------------------------- reading images
def batches(
    sources: list[Source], trained, batch_size: int, unreadable: list[tuple[str, str]]
) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
    """(source names, indices, uint8 images in the run's shape) of at most ``batch_size`` images at a time."""
    from anomaly_bench.data.folders import UNREADABLE
    from anomaly_bench.data.images import conform, from_pil, open_image

    height, width, channels = trained.image_shape
    names: list[str] = []
    indices: list[str] = []
    images: list[np.ndarray] = []

    def flush():
        batch = (list(names), list(indices), np.stack(images))
        for pending in (names, indices, images):
            pending.clear()
        return batch

    for source in sources:
        if isinstance(source, ImageFile):
            try:  # decoded, converted and resized exactly as a folder dataset's files are for training
                with open_image(source.path) as picture:
                    image = from_pil(picture, (height, width), channels)
            except UNREADABLE as exc:
                unreadable.append((str(source.path), str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
                continue
            names.append(str(source.path))
            indices.append("")
            images.append(image)
            if len(images) >= batch_size:
                yield flush()
            continue
        where = f"{source.path}" + (f" [{source.key}]" if source.key else "")
        try:  # the whole array: one value range decides the scaling
            array = stored_images(source.read(), where)
        except BadDataError as exc:
            unreadable.append((where, one_line(exc)))
            continue
        for start in range(0, len(array), batch_size):
            chunk = conform(array[start : start + batch_size], (height, width), channels)
            for i, image in enumerate(chunk):
                names.append(str(source.path) + (f":{source.key}" if source.key else ""))
                indices.append(str(start + i))
                images.append(image)
                if len(images) >= batch_size:
                    yield flush()
    if images:
        yield flush()


# ----------------------------------------------------------------------------- outputs
#: A run folder's name starts with its own time stamp (``15-04-17-784340_mnist-conv_ae-n0``).
RUN_STAMP = re.compile(r"^\d{2}-\d{2}-\d{2}(-\d+)?_")


def default_out_dir(run_dir: Path) -> Path:
    """``outputs/predictions/<date>/<time>_<run label>``: one time stamp, this prediction's (the run's own is dropped)."""
    stamp = datetime.now()
    label = RUN_STAMP.sub("", run_dir.resolve().name) or "run"
    return Path("outputs") / "predictions" / stamp.strftime("%Y-%m-%d") / f"{stamp.strftime('%H-%M-%S-%f')}_{label}"


def most_anomalous_figure(top: list[tuple[float, str, np.ndarray]], trained, path: Path) -> None:
    """The top images by score (highest first), above the model's normal counterpart if it has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from anomaly_bench.data.images import to_float

    images = to_float(np.stack([image for _, _, image in top]))
    counterpart = trained.reconstruct(images)
    rows = [("image", images)] + (
        [(trained.detector.reconstruction_label, counterpart)] if counterpart is not None else []
    )
    fig, axes = plt.subplots(len(rows), len(top), figsize=(1.6 * len(top), 1.9 * len(rows) + 0.6), squeeze=False)
    for r, (label, row) in enumerate(rows):
        for c, (score, name, _) in enumerate(top):
            ax = axes[r][c]
            ax.set_xticks([]), ax.set_yticks([])
            image = np.clip(np.asarray(row[c], dtype=np.float32), 0.0, 1.0)
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            if r == 0:
                mark = "FLAGGED" if score > trained.threshold else "normal"
                short = Path(name).name if len(Path(name).name) <= 18 else "..." + Path(name).name[-15:]
                ax.set_title(
                    f"#{c + 1} {score:.4g}\n{mark}\n{short}",
                    fontsize=7,
                    color="red" if score > trained.threshold else "black",
                )
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(
        f"{trained.name}: most anomalous of the scored images "
        f"(threshold {trained.threshold:.4g}, {trained.threshold_rule})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- the command
def predict(run_dir: Path, paths: list[str], out: Path | None, batch_size: int = 256, top: int = 8) -> int:
    """Score every image PATHS name with the run's detector; return the exit code (see module docstring).
    Whatever stops it (bad input, an error, Ctrl-C) removes the --out folder it claimed."""
    if batch_size < 1 or top < 0:
        raise ConfigError(f"--batch-size={batch_size} must be >= 1 and --top={top} >= 0")
    found = find_sources(paths)  # cheap: a bad PATH fails before the model loads
    # Claimed before any work: a second predict with the same --out stops here, and no run or
    # sweep folder (nor anything inside one) is ever written into.
    claim = claim_folder("--out", out if out is not None else default_out_dir(run_dir))
    try:
        code = _score_into(claim.path, run_dir, found, batch_size, top)
    except BaseException:
        claim.release()
        raise
    return code


def _score_into(out: Path, run_dir: Path, found: Found, batch_size: int, top: int) -> int:
    import pandas as pd

    from anomaly_bench.trained import load_detector

    trained = load_detector(run_dir)
    _log(
        f"detector: {trained.name} from {run_dir}, images {'x'.join(map(str, trained.image_shape))}, "
        f"threshold {trained.threshold:.6g} ({trained.threshold_rule})"
    )
    sources = found.sources
    n_files = sum(isinstance(s, ImageFile) for s in sources)
    passed_over = [
        f"{len(found.not_regular)} non-regular files skipped" if found.not_regular else "",
        f"{found.repeated} files reached twice scored once" if found.repeated else "",
    ]
    extra = "; ".join(p for p in passed_over if p)
    _log(f"found {n_files} image files and {len(sources) - n_files} image arrays" + (f" ({extra})" if extra else ""))

    unreadable: list[tuple[str, str]] = []
    started = time.perf_counter()
    frames: list[pd.DataFrame] = []
    # A min-heap of (score, order, name, uint8 image) holding the top images.
    best: list[tuple[float, int, str, np.ndarray]] = []
    done = flagged_so_far = 0
    for names, indices, images in batches(sources, trained, batch_size, unreadable):
        scores = trained.score(trained.prepare(images))
        flagged = trained.flag(scores)
        frames.append(
            pd.DataFrame({"source": names, "index": indices, "score": scores, "flagged": flagged.astype(int)})
        )
        for i in np.argsort(-scores)[:top]:
            item = (float(scores[i]), done + int(i), names[i] + (f"[{indices[i]}]" if indices[i] else ""), images[i])
            if len(best) < top:
                heapq.heappush(best, item)
            else:
                heapq.heappushpop(best, item)
        done += len(scores)
        flagged_so_far += int(flagged.sum())
        _log(f"scored {done} images, {flagged_so_far} flagged")

    seconds = time.perf_counter() - started
    for name, error in unreadable:
        print(f"{PROG}: unreadable: {name}: {error}", file=sys.stderr)
    if not done:
        raise ConfigError(f"none of the {len(sources)} image sources could be read (each is listed above)")
    table = pd.concat(frames, ignore_index=True)
    table["threshold"], table["rule"] = trained.threshold, trained.threshold_rule
    table.to_csv(out / PREDICTIONS_FILE, index=False)
    if best:
        ranked = sorted(best, key=lambda item: -item[0])
        most_anomalous_figure([(score, name, image) for score, _, name, image in ranked], trained, out / FIGURE_FILE)
    if unreadable:
        pd.DataFrame(unreadable, columns=["source", "error"]).to_csv(out / UNREADABLE_FILE, index=False)
    rate = f", {done / seconds:.1f} images/s" if done and seconds > 0 else ""
    _log(
        f"done: {done} images scored in {seconds:.2f} s{rate}, {flagged_so_far} flagged, "
        f"{len(unreadable)} unreadable -> {out}"
    )
    return EXIT_UNREADABLE if unreadable else EXIT_OK


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Score new images with the detector of a completed anomaly-bench run.",
        epilog="Example: anomaly-bench-predict outputs/runs/2026-11-25/15-04-17-784340_mnist-conv_ae-n0 my_images/ "
        "--out predictions/. --backend NAME (tensorflow, jax, torch) picks the Keras backend, as for "
        "anomaly-bench.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a completed run folder")
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="image files, folders (recursive), globs, an .npz or an IDX folder"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="result folder (default: a new folder under outputs/predictions/)"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="images scored at a time (memory bound)")
    parser.add_argument("--top", type=int, default=8, help="images shown in most_anomalous.png")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """The command (``argv`` None: the process's own command line, with TensorFlow's native
    start-up lines filtered from stderr as for ``anomaly-bench``); ``--backend NAME`` picks the
    Keras backend that loads the run's model."""
    from anomaly_bench import backend

    if argv is None:
        filter_native_logs()
        argv = sys.argv[1:]
    argv, backend_name = backend.pop_switch(list(argv))
    args = parse_args(argv)
    try:
        backend.choose(backend_name)
        return predict(args.run_dir, args.paths, args.out, args.batch_size, args.top)
    except ConfigError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing written (the --out folder was removed)", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
