"""Shared fixtures: the shipped offline data, Hydra's compose API, tiny real runs."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
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


@contextlib.contextmanager
def _exclusive(lock_file: Path):
    """Held by one test process at a time (the workers of ``pytest -n`` share the lock file)."""
    with open(lock_file, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory):
    """A completed tiny run per list of overrides, trained once per test session.

    Tests that only read a run folder (load it, predict with it, check its files) share it
    instead of each training the same config; a test that changes the folder copies it first.
    The parallel workers of one ``pytest -n`` session share the runs too: each config has a
    folder named by its overrides in the session's common temporary folder, trained by the
    first worker that asks (the others wait on its lock) and read back from its metrics.json.
    """
    from anomaly_bench.run import run

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared_runs"
    root.mkdir(exist_ok=True)

    def get(overrides: list[str]) -> tuple[Path, dict]:
        name = hashlib.sha256(json.dumps(list(overrides)).encode()).hexdigest()[:16]
        folder = root / name
        with _exclusive(root / f"{name}.lock"):
            if not (folder / "metrics.json").is_file():
                run(compose_config(list(overrides)), folder)
        metrics = json.loads((folder / "metrics.json").read_text())
        if metrics.get("status") != "completed":
            pytest.fail(f"the shared run {folder} of {list(overrides)} did not complete: {metrics.get('status')}")
        return folder, metrics

    return get


def _loggers() -> list[logging.Logger]:
    found = logging.Logger.manager.loggerDict.values()
    return [logging.root, *(lg for lg in found if isinstance(lg, logging.Logger))]


@contextlib.contextmanager
def _logging_restored():
    """Every logger's handlers, level and flags as before the block. A Hydra job configures
    logging for its run (handlers on the captured stderr and the run's log file, other loggers
    possibly disabled); left in place, that would break the capture of later tests."""
    saved = {id(lg): (lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in _loggers()}
    try:
        yield
    finally:
        for lg in _loggers():
            handlers, level, propagate, disabled = saved.get(id(lg), ([], logging.NOTSET, True, False))
            for handler in lg.handlers:
                if handler not in handlers:
                    handler.close()
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate, lg.disabled = propagate, disabled


@pytest.fixture
def cli_main(monkeypatch, capsys):
    """``anomaly-bench ARGS`` through ``cli.main`` in this process: (exit code, stdout, stderr).

    Bad input, whether the checks before Hydra's job find it (``cli.precheck``) or the job
    itself (a model setting, the data), with no process start-up per call: the job's logging
    set-up and Hydra's global state are undone after each call. What only a process of its own
    shows (the stderr filter for TensorFlow's native lines, which would take over pytest's
    descriptor 2; concurrent runs; a fresh interpreter loading a model) needs a subprocess.
    """
    from hydra.core.global_hydra import GlobalHydra

    from anomaly_bench import cli

    monkeypatch.setattr(cli, "filter_native_logs", lambda: None)
    for key in ("HYDRA_FULL_ERROR", "ANOMALY_BENCH_VERBOSE"):
        monkeypatch.delenv(key, raising=False)
    if "absl.logging" in sys.modules:
        # Hydra's logging set-up closes every existing handler; absl's (installed when TensorFlow
        # was imported) then closes its stream unless it is one of sys.std*/sys.__std*__, and the
        # stream it holds is pytest's capture of the whole session.
        absl_handler = sys.modules["absl.logging"].get_absl_handler().python_handler
        monkeypatch.setattr(absl_handler, "stream", sys.__stderr__)

    def call(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["anomaly-bench", *args])
        capsys.readouterr()
        with _logging_restored():
            try:
                cli.main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            finally:
                GlobalHydra.instance().clear()
        out, err = capsys.readouterr()
        return code, out, err

    return call


# Files whose tests take longest in all (load_detector trains most of the shared runs): run first,
# so that with parallel workers the short files fill the end of the run instead of one long file.
FIRST_FILES = ("test_load_detector.py",)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.path.name not in FIRST_FILES)  # stable: the rest keep their order
