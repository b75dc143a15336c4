"""``anomaly-bench-predict RUN_DIR PATH... [--out DIR]``: a completed run used as a detector on new images.

PATH may be image files, folders (searched recursively), globs, a ``.npz`` or an IDX folder
or file. Every image is brought to the run's shape (Pillow resize, grey <-> RGB) and scale,
scored in batches (memory stays bounded by the batch, not the number of files) and flagged
under the run's own threshold. Results go to a new folder, never into the run folder:
``predictions.csv`` and ``most_anomalous.png`` (the top images above their reconstruction or
nearest normal example, where the model has one).

Exit codes: 0 all scored; 2 bad input (run folder not completed or unknown, a PATH that does
not exist, nothing found), nothing written; 1 some files unreadable (listed in
``unreadable.csv``), the rest scored.
"""

from __future__ import annotations

import argparse
import glob
import heapq
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported anywhere

import numpy as np

from anomaly_bench.data.checks import checked_images
from anomaly_bench.errors import ConfigError
from anomaly_bench.native_stderr import filter_native_logs

PROG = "anomaly-bench-predict"
EXIT_OK, EXIT_UNREADABLE, EXIT_BAD_INPUT = 0, 1, 2
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
        if self.key is None:
            from anomaly_bench.data.readers import read_idx

            return read_idx(self.path)
        with np.load(self.path, allow_pickle=False) as npz:
            return npz[self.key]


Source = ImageFile | ImageArray


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------- finding images
def _idx_images_in(folder: Path) -> Path | None:
    from anomaly_bench.data.readers import IDX_FILES, find_idx_file

    return find_idx_file(folder, IDX_FILES["x_test"]) or find_idx_file(folder, IDX_FILES["x_train"])


def _npz_source(path: Path) -> ImageArray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
    except Exception as exc:
        raise ConfigError(f"{path} is not a readable .npz: {exc}") from None
    key = next((k for k in NPZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
    if key is None:
        raise ConfigError(f"{path} holds arrays {keys}; expected one of {', '.join(NPZ_KEYS)} or a single array")
    return ImageArray(path, key)


def _sources_at(path: Path) -> list[Source]:
    if path.is_dir():
        idx = _idx_images_in(path)
        if idx is not None:
            return [ImageArray(idx, None)]
        return [ImageFile(p) for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if path.suffix.lower() == ".npz":
        return [_npz_source(path)]
    if "idx3-ubyte" in path.name:
        return [ImageArray(path, None)]
    return [ImageFile(path)]  # any other file is tried as an image; an unreadable one is reported


def find_sources(paths: list[str]) -> list[Source]:
    """Every image source the command line names, in order; ConfigError for a PATH that names nothing."""
    sources: list[Source] = []
    for arg in paths:
        path = Path(arg)
        if path.exists():
            sources += _sources_at(path)
        elif GLOB_CHARS & set(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                raise ConfigError(f"{arg} matches no file")
            for match in matches:
                sources += _sources_at(Path(match))
        else:
            raise ConfigError(f"{arg} does not exist")
    if not sources:
        raise ConfigError(
            f"no images found in {' '.join(paths)} (image files: {', '.join(sorted(IMAGE_SUFFIXES))}; "
            "also .npz and IDX folders)"
        )
    return sources


# ----------------------------------------------------------------------------- reading images
def stored_images(array: np.ndarray, where: str) -> np.ndarray:
    """An array of images held to the same standard as the data a run trains on (uint8 N x H x W x C);
    an RGBA array loses its alpha channel, which carries no image content here."""
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[-1] == 4:
        array = array[..., :3]
    return checked_images(array, where)[0]


def batches(
    sources: list[Source], trained, batch_size: int, unreadable: list[tuple[str, str]]
) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
    """(source names, indices, uint8 images in the run's shape) of at most ``batch_size`` images at a time."""
    from PIL import Image

    from anomaly_bench.data.folders import UNREADABLE
    from anomaly_bench.data.images import conform, from_pil

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
                with Image.open(source.path) as picture:
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
        array = stored_images(source.read(), where)  # the whole array: one value range decides the scaling
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
def default_out_dir(run_dir: Path) -> Path:
    stamp = datetime.now()
    return (
        Path("outputs")
        / "predictions"
        / stamp.strftime("%Y-%m-%d")
        / (f"{stamp.strftime('%H-%M-%S-%f')}_{run_dir.resolve().name}")
    )


def check_out_dir(out: Path, run_dir: Path) -> None:
    resolved, run = out.resolve(), run_dir.resolve()
    if resolved == run or run in resolved.parents:
        raise ConfigError(
            f"--out {out} is inside the run folder {run_dir}; a finished run is never modified, "
            "choose a folder elsewhere"
        )
    if (out / PREDICTIONS_FILE).exists():
        raise ConfigError(f"--out {out} already holds {PREDICTIONS_FILE}; choose a new folder")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")


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
    """Score every image PATHS name with the run's detector; return the exit code (see module docstring)."""
    import pandas as pd

    from anomaly_bench.trained import load_detector

    if batch_size < 1 or top < 0:
        raise ConfigError(f"--batch-size={batch_size} must be >= 1 and --top={top} >= 0")
    sources = find_sources(paths)  # cheap: a bad PATH fails before the model loads
    out = out if out is not None else default_out_dir(run_dir)
    check_out_dir(out, run_dir)
    trained = load_detector(run_dir)
    _log(
        f"detector: {trained.name} from {run_dir}, images {'x'.join(map(str, trained.image_shape))}, "
        f"threshold {trained.threshold:.6g} ({trained.threshold_rule})"
    )
    n_files = sum(isinstance(s, ImageFile) for s in sources)
    _log(f"found {n_files} image files and {len(sources) - n_files} image arrays in {len(paths)} path(s)")

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
    out.mkdir(parents=True, exist_ok=True)
    table = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["source", "index", "score", "flagged"])
    )
    table["threshold"], table["rule"] = trained.threshold, trained.threshold_rule
    table.to_csv(out / PREDICTIONS_FILE, index=False)
    if best:
        ranked = sorted(best, key=lambda item: -item[0])
        most_anomalous_figure([(score, name, image) for score, _, name, image in ranked], trained, out / FIGURE_FILE)
    if unreadable:
        pd.DataFrame(unreadable, columns=["source", "error"]).to_csv(out / UNREADABLE_FILE, index=False)
        for name, error in unreadable:
            print(f"{PROG}: unreadable: {name}: {error}", file=sys.stderr)
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
        print(f"{PROG}: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
