"""How long reading a folder of images takes, how much memory it needs, and what the cache of
decoded images saves.

Decoding: writes N generated 256 x 256 RGB images (smooth colour gradients with noise and a few
shapes, half PNG and half JPEG, in two class folders) once into a scratch folder, then loads them
with ``load_raw("folder", ..., cache=False)`` in a fresh process per measurement and records the
wall time and the process's peak resident memory (``ru_maxrss``), beside the memory of the same
process just before loading and the size of the uint8 array itself. Each count is loaded twice
and the second load is reported (files in the OS cache, as for repeated runs).

The cache: CIFAR-10 as a folder of 60,000 JPEGs (``--cifar``, default
``$ANOMALY_BENCH_DATA/cifar10``) loaded with an empty cache folder (the first run: decode and
store) and then again (served memory-mapped from the cache), each in a fresh process.
Writes benchmarks/results/load_speed.md.

    python benchmarks/load_speed.py [--counts 1000 10000] [--cifar PATH] [--scratch /tmp/anomaly-bench-load-speed]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIDE = 256

MEASURE = r"""
import json, resource, sys, time
from anomaly_bench.data import load_raw
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
raw = load_raw("folder", path=sys.argv[1], cache=sys.argv[2] if sys.argv[2] != "off" else False)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "rss_before_kb": before, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "array_bytes": raw.x_train.nbytes + raw.x_test.nbytes, "n": len(raw.x_train) + len(raw.x_test),
                  "shape": list(raw.image_shape), "cache": raw.info["image_cache"]["status"]}))
"""


def generate(folder: Path, count: int) -> None:
    """``count`` images in folder/{a,b}/ (half PNG, half JPEG); skipped when already complete."""
    from PIL import Image

    marker = folder / "complete"
    if marker.exists():
        return
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, SIDE)
    for i in range(count):
        colour = rng.uniform(40, 215, 3)
        image = (ramp[:, None, None] * colour + ramp[None, :, None] * (255 - colour)) / 2
        r, c = rng.integers(0, SIDE - 64, 2)
        image[r : r + 64, c : c + 64] = rng.uniform(0, 255, 3)
        image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
        target = folder / ("a" if i % 2 else "b")
        target.mkdir(parents=True, exist_ok=True)
        if i % 4 < 2:
            Image.fromarray(image).save(target / f"{i:05d}.png")
        else:
            Image.fromarray(image).save(target / f"{i:05d}.jpg", quality=90)
    marker.write_text(str(count))


def measure(folder: Path, cache: str = "off") -> dict:
    """One load in a fresh process; ``cache``: a cache folder, or "off"."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(folder), cache], env=env, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load_average"] = os.getloadavg()[0]
    print(json.dumps(result), flush=True)
    return result


def cifar_rows(folder: Path, scratch: Path) -> list[dict]:
    """CIFAR-10's JPEG folder: the first run with an empty cache (decode + store), then the cached load."""
    cache = scratch / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    first = measure(folder, str(cache))
    cached = measure(folder, str(cache))
    assert (first["cache"], cached["cache"]) == ("stored", "hit"), (first["cache"], cached["cache"])
    return [{**first, "what": "first run (decode + store)"}, {**cached, "what": "cached (memory-mapped)"}]


MIB = 1024**2
HEADER = (
    "| images | image shape | load time (s) | images / s | uint8 array (MiB) | memory before (MiB) "
    "| peak memory (MiB) | load average |"
)


def row(r: dict, label: str) -> str:
    return (
        f"| {label} | {'x'.join(map(str, r['shape']))} | {r['seconds']:.1f} | {r['n'] / r['seconds']:.0f} | "
        f"{r['array_bytes'] / MIB:.0f} | {r['rss_before_kb'] / 1024:.0f} | {r['peak_kb'] / 1024:.0f} | "
        f"{r['load_average']:.1f} |"
    )


def main() -> None:
    data = Path(os.environ.get("ANOMALY_BENCH_DATA", HERE.parent.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--counts", nargs="*", type=int, default=[1000, 10000])
    parser.add_argument("--cifar", type=Path, default=data / "cifar10", help="CIFAR-10 as a JPEG folder ('' to skip)")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/anomaly-bench-load-speed"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "load_speed.md")
    args = parser.parse_args()
    rows = []
    for count in args.counts:
        folder = args.scratch / f"n{count}"
        t0 = time.perf_counter()
        generate(folder, count)
        print(f"{count} images ready in {folder} ({time.perf_counter() - t0:.0f} s)", flush=True)
        measure(folder)  # first read: warms the OS file cache
        rows.append(measure(folder))
    cifar = cifar_rows(args.cifar, args.scratch) if str(args.cifar) and args.cifar.is_dir() else []
    lines = [
        "# Loading a folder of images (`dataset=folder`)",
        "",
        f"Measured {date.today()} with `python benchmarks/load_speed.py` on {platform.machine()}, "
        f"{os.cpu_count()} CPU cores (the 1-minute load average of each measurement is in the tables; "
        f"above {os.cpu_count()}, other jobs shared the cores and the times are upper bounds).",
        "",
        "## Decoding",
        "",
        f"Generated {SIDE} x {SIDE} RGB images (half PNG, half JPEG quality 90, two class folders, a stratified",
        '20 % test split), read by `load_raw("folder", path=..., cache=False)` in a fresh process: Pillow decodes',
        "every file straight into one preallocated uint8 array. Peak memory is the process's `ru_maxrss`;",
        "`before` is the same process just before loading. Each count is read twice and the second read is",
        "reported (files in the OS file cache, as on repeated runs).",
        "",
        HEADER,
        "|---|---|---|---|---|---|---|---|",
        *(row(r, f"{r['n']:,}") for r in rows),
    ]
    if cifar:
        lines += [
            "",
            "## The cache of decoded images",
            "",
            f"CIFAR-10 as a folder of JPEGs (`{args.cifar}`: `train/<class>/`, `test/<class>/`), read by",
            '`load_raw("folder", path=..., cache=FOLDER)` in a fresh process: first with an empty cache folder',
            "(list, decode every file, store the entry), then again (list and stat the files, check the entry,",
            "map the stored array; the official split is served as views of it, so the peak memory stays low).",
            "",
            HEADER.replace("| images |", "| CIFAR-10, 60,000 images |"),
            "|---|---|---|---|---|---|---|---|",
            *(row(r, r["what"]) for r in cifar),
            "",
            f"The cached load took {cifar[1]['seconds']:.1f} s, {cifar[0]['seconds'] / cifar[1]['seconds']:.0f} times "
            f"faster than the first run (goal: 2 s or less; measured at a load average of {cifar[1]['load_average']:.1f} "
            f"on {os.cpu_count()} cores). Most of what remains is listing the folder (``os.scandir``) and reading "
            "each file's size and modification time for the key.",
        ]
    if not rows and not cifar:
        parser.error("nothing to measure: give --counts or a --cifar folder")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"table: {args.out}")


if __name__ == "__main__":
    main()
