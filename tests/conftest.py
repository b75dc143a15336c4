"""Shared fixtures: the shipped offline data, Hydra's compose API, tiny real runs."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "conf"
# Tests read the datasets shipped beside the repository unless the caller points elsewhere.
os.environ.setdefault("ANOMALY_BENCH_DATA", str((REPO / ".." / "shared" / "data").resolve()))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
DATA_ROOT = Path(os.environ["ANOMALY_BENCH_DATA"])
# Decoded-image caches of test runs go to a folder of this session, never the user's ~/.cache;
# matplotlib's font cache, which lives there too, stays the user's (a fresh one is slow and logs).
USER_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
TEST_CACHE = Path(tempfile.mkdtemp(prefix="anomaly-bench-test-cache-"))
(USER_CACHE / "matplotlib").mkdir(parents=True, exist_ok=True)
(TEST_CACHE / "matplotlib").symlink_to(USER_CACHE / "matplotlib", target_is_directory=True)
os.environ["XDG_CACHE_HOME"] = str(TEST_CACHE)
atexit.register(shutil.rmtree, TEST_CACHE, ignore_errors=True)

# Small enough for a 2-core CI machine, large enough that a model visibly learns.
TINY = ["dataset.max_train=300", "dataset.max_test=300", "trainer.epochs=1", "trainer.batch_size=64"]


def has_dataset(folder: str) -> bool:
    return (DATA_ROOT / folder / "train-images-idx3-ubyte.gz").is_file()


needs_mnist = pytest.mark.skipif(not has_dataset("mnist"), reason=f"full MNIST IDX files not found under {DATA_ROOT}")
needs_fashion = pytest.mark.skipif(
    not has_dataset("fashion-mnist"), reason=f"Fashion-MNIST IDX files not found under {DATA_ROOT}"
)


def compose_config(overrides: list[str] | None = None):
    """The config a command line with these overrides would run (Hydra's compose API)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides or []))
