"""How long reading a folder of images takes, and how much memory it needs.

Writes N generated 256 x 256 RGB images (smooth colour gradients with noise and a few shapes,
half PNG and half JPEG, in two class folders) once into a cache folder, then loads them with
``load_raw("folder", ...)`` in a fresh process per measurement and records the wall time and
the process's peak resident memory (``ru_maxrss``), beside the memory of the same process
just before loading (Python, numpy, Pillow, scikit-learn imported) and the size of the uint8
array itself. Each count is loaded twice and the second load is reported (files in the OS cache,
as for repeated runs). Writes benchmarks/results/load_speed.md.

    python benchmarks/load_speed.py [--counts 1000 10000] [--cache /tmp/anomaly-bench-load-speed]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
raw = load_raw("folder", path=sys.argv[1])
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "rss_before_kb": before, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "array_bytes": raw.x_train.nbytes + raw.x_test.nbytes, "n": len(raw.x_train) + len(raw.x_test),
                  "shape": list(raw.image_shape)}))
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


def measure(folder: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(folder)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", nargs="+", type=int, default=[1000, 10000])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/anomaly-bench-load-speed"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "load_speed.md")
    args = parser.parse_args()
    rows = []
    for count in args.counts:
        folder = args.cache / f"n{count}"
        t0 = time.perf_counter()
        generate(folder, count)
        print(f"{count} images ready in {folder} ({time.perf_counter() - t0:.0f} s)", flush=True)
        measure(folder)  # first read: warms the OS file cache
        load = os.getloadavg()[0]
        result = measure(folder)
        result["load_average"] = load
        print(json.dumps(result), flush=True)
        rows.append(result)
    mib = 1024**2
    lines = [
        "# Loading a folder of images (`dataset=folder`)",
        "",
        f"Generated {SIDE} x {SIDE} RGB images (half PNG, half JPEG quality 90, two class folders, a stratified",
        '20 % test split), read by `load_raw("folder", path=...)` in a fresh process: Pillow decodes every file',
        "straight into one preallocated uint8 array. Peak memory is the process's `ru_maxrss`; `before` is",
        "the same process just before loading (anomaly_bench.data, numpy and Pillow imported; scikit-learn,",
        "which draws the test split, is imported during loading). Each count is read twice and the second",
        "read is reported (files in the OS file cache, as on repeated runs).",
        f"Measured {date.today()} with `python benchmarks/load_speed.py` on {platform.machine()}, "
        f"{os.cpu_count()} CPU cores **shared with other jobs** (1-minute load average in the table): "
        "treat times as upper bounds.",
        "",
        "| images | image shape | load time (s) | images / s | uint8 array (MiB) | memory before (MiB) | peak memory (MiB) | load average |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {'x'.join(map(str, r['shape']))} | {r['seconds']:.1f} | {r['n'] / r['seconds']:.0f} | "
            f"{r['array_bytes'] / mib:.0f} | {r['rss_before_kb'] / 1024:.0f} | {r['peak_kb'] / 1024:.0f} | "
            f"{r['load_average']:.1f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"table: {args.out}")


if __name__ == "__main__":
    main()
