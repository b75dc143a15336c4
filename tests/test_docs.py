"""The docs work as written: every ```bash command of README.md and docs/**/*.md runs, the config
reference is what the generator writes, the pages build with ``mkdocs build --strict`` and the
README's links lead to files.

Fast part: every ``anomaly-bench`` command of every page composes and passes the checks that run
before training (each value of a sweep included), and the README's first command and its
own-images block run for real with tiny settings. Slow part (``-m slow``): every block of every
page runs for real.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import DATA_ROOT, needs_fashion, needs_mnist
from docs_commands import (
    MARKDOWN_FILES,
    NOT_RUN_LINES,
    REPO,
    Block,
    bash_blocks,
    run_block,
    with_tiny,
)
from image_data import fashion_folder, mvtec_tree
from omegaconf import OmegaConf

from anomaly_bench.errors import ConfigError

pytestmark = [needs_mnist, needs_fashion]

BLOCKS = bash_blocks()
# Run for real in the fast part: the README's first command and its own-images block (the
# commands a newcomer copies first, and the quoting of paths Hydra is strict about). Every other
# block runs for real in the slow part; all of them are checked in the fast part.
FAST_RUNS = (
    "anomaly-bench model=conv_ae dataset=fashion_mnist",
    "anomaly-bench dataset=folder dataset.path=$HOME/data/fashion_png",
)
SUBPROCESS_TIMEOUT_S = 900


def _fast(block: Block) -> bool:
    return block.path == REPO / "README.md" and any(block.text.startswith(start) for start in FAST_RUNS)


def _params(blocks: list[Block], slow_unless=None) -> list:
    return [
        pytest.param(b, id=b.id, marks=() if slow_unless is None or slow_unless(b) else pytest.mark.slow)
        for b in blocks
    ]


# ---------------------------------------------------------------- the sandbox a block runs in


def _idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


@pytest.fixture(scope="session")
def home_data(tmp_path_factory) -> Path:
    """$HOME/data of the docs' examples: a Fashion-MNIST class folder (PNG, train/ + test/) and an MVTec category."""
    data = tmp_path_factory.mktemp("home") / "data"
    fashion = DATA_ROOT / "fashion-mnist"
    raw = SimpleNamespace(
        x_train=_idx(fashion / "train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1),
        y_train=_idx(fashion / "train-labels-idx1-ubyte.gz", 8),
        x_test=_idx(fashion / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1),
        y_test=_idx(fashion / "t10k-labels-idx1-ubyte.gz", 8),
    )
    fashion_folder(data / "fashion_png", raw, per_class_train=60, per_class_test=10)
    mvtec_tree(data / "mvtec" / "bottle")
    return data


@pytest.fixture
def sandbox(tmp_path, home_data) -> Path:
    """A fresh folder per block: ``work/`` (where it runs), ``../shared/data`` and ``$HOME/data``."""
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "data").symlink_to(home_data)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(DATA_ROOT.resolve())
    return tmp_path


@contextlib.contextmanager
def in_folder(cwd: Path, env: dict):
    """The command's working folder, home (``~`` in a path) and ``PYTHONPATH`` (modules of the
    user's own, as a command's ``PYTHONPATH=.`` prefix makes importable) for an in-process command."""
    old_cwd, old_home, old_path = os.getcwd(), os.environ.get("HOME"), list(sys.path)
    os.chdir(cwd)
    os.environ["HOME"] = env["HOME"]
    extra = [str((cwd / entry).resolve()) for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
    sys.path[:0] = [entry for entry in extra if entry not in sys.path]
    try:
        yield
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path
        if old_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old_home


# ---------------------------------------------------------------- what an anomaly-bench call does


def _is_group(key: str) -> bool:
    from anomaly_bench.cli import USER_GROUPS

    name = key.lstrip("+~").split("@")[0]
    return "/" in name or name in USER_GROUPS


def sweep_configs(overrides: list[str], search_path: list[str]) -> Iterator:
    """The configs a sweep's jobs run: every value of every swept key (the command's and its
    preset's ``hydra.sweeper.params``), the other keys at their first value. A group's options are
    composed; other values are set on the composed first job (composing costs far more). Interval
    sweeps are Optuna's to sample and stay out."""
    from anomaly_bench.cli import compose_for_check, parse_overrides

    def values(override) -> list[str]:
        try:
            return list(override.sweep_string_iterator())
        except Exception:
            return []

    parsed = parse_overrides(overrides)
    fixed = [text for text, o in zip(overrides, parsed) if not o.is_sweep_override()]
    axes = [(text.split("=", 1)[0], values(o)) for text, o in zip(overrides, parsed) if o.is_sweep_override()]
    axes = [(key, vals) for key, vals in axes if vals]
    base = fixed + [f"{key}={vals[0]}" for key, vals in axes]
    first, _ = compose_for_check(base, False, search_path)
    yield first
    todo = [(key, vals[1:]) for key, vals in axes]
    given = {key.lstrip("+~") for key, _ in axes}
    preset = OmegaConf.to_container(OmegaConf.select(first, "hydra.sweeper.params") or OmegaConf.create({}))
    todo += [(key, values(parse_overrides([f"{key}={value}"])[0])) for key, value in preset.items() if key not in given]
    for key, vals in todo:
        for value in vals:
            if _is_group(key):
                job = [text for text in base if text.split("=", 1)[0] != key] + [f"{key}={value}"]
                yield compose_for_check(job, False, search_path)[0]
            else:
                job = copy.deepcopy(first)
                OmegaConf.update(job, key.lstrip("+~"), parse_overrides([f"{key}={value}"])[0].value(), merge=False)
                yield job


class Checks:
    """Dry mode: compose each command and run the checks ``anomaly-bench`` runs before training."""

    dry = True

    def __init__(self) -> None:
        self.problems: list[str] = []

    def __call__(self, args: list[str], env: dict, cwd: Path, log) -> int:
        from hydra._internal.utils import get_args_parser

        from anomaly_bench import backend
        from anomaly_bench.cli import compose_for_check, task_config
        from anomaly_bench.config import validate
        from anomaly_bench.config_location import user_search_path

        with in_folder(cwd, env):
            try:
                rest, _ = backend.pop_switch(args)
                ns, unknown = get_args_parser().parse_known_args(rest)
                if unknown:  # Hydra's own parser stops there: options must come before the overrides
                    raise ConfigError(f"unrecognized arguments: {' '.join(unknown)}")
                search_path = user_search_path(ns.config_dir, ns.overrides)
                if ns.multirun:
                    configs = sweep_configs(ns.overrides, search_path)
                else:
                    configs = iter([compose_for_check(ns.overrides, False, search_path)[0]])
                for cfg in configs:
                    validate(task_config(cfg))
            except ConfigError as exc:
                self.problems.append(f"anomaly-bench {' '.join(args)}: {exc}")
                log.write(f"anomaly-bench: error: {exc}\n")
                return 2
        return 0


class Runner:
    """Full mode: a plain run in-process; anything with flags or another backend as a subprocess."""

    dry = False

    def __init__(self) -> None:
        self.problems: list[str] = []  # a failing run stops its block: the exit code tells

    def __call__(self, args: list[str], env: dict, cwd: Path, log) -> int:
        tiny = with_tiny(args)
        log.write(f"  (run as: anomaly-bench {' '.join(tiny)})\n")
        log.flush()
        plain = all(not arg.startswith("-") for arg in args)
        same_backend = env.get("KERAS_BACKEND") == os.environ.get("KERAS_BACKEND")
        if plain and same_backend:
            return self.in_process(tiny, env, cwd, log)
        return subprocess.run(
            [sys.executable, "-m", "anomaly_bench", *tiny],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=SUBPROCESS_TIMEOUT_S,
        ).returncode

    @staticmethod
    def in_process(args: list[str], env: dict, cwd: Path, log) -> int:
        from anomaly_bench.cli import compose_for_check, run_single, task_config

        with in_folder(cwd, env):
            try:
                cfg, _ = compose_for_check(args, False)
                folder = Path(str(OmegaConf.select(cfg, "hydra.run.dir")))
                metrics = run_single(task_config(cfg), folder)
            except ConfigError as exc:
                log.write(f"anomaly-bench: error: {exc}\n")
                return 2
            except SystemExit as exc:
                log.write(f"anomaly-bench exited with {exc.code} (its error line is in the captured stderr)\n")
                return int(exc.code or 0)
        log.write(f"done: auroc {metrics.get('auroc')} -> {folder}\n")
        return 0


# ---------------------------------------------------------------- the tests


def test_every_page_is_scanned_and_the_readme_shows_its_commands_in_bash_blocks():
    pages = {block.path for block in BLOCKS}
    assert REPO / "README.md" in pages and len(MARKDOWN_FILES) > 1
    readme = (REPO / "README.md").read_text()
    for line in NOT_RUN_LINES:  # the lines the test skips are the README's own, word for word
        assert f"\n{line}\n" in readme, line


# The blocks the fast part runs for real are checked on the way; the slow part checks them too.
@pytest.mark.parametrize("block", _params(BLOCKS, slow_unless=lambda b: not _fast(b)))
def test_commands_pass_the_checks_before_training(block, tmp_path):
    outcome = run_block(block, tmp_path, Checks())
    assert not outcome.problems, "\n".join(outcome.problems) + "\n--- log ---\n" + outcome.log[-4000:]


@pytest.mark.parametrize("block", _params(BLOCKS, slow_unless=_fast))
def test_commands_run(block, sandbox):
    outcome = run_block(block, sandbox, Runner())
    assert outcome.returncode == 0, f"{block.id} failed (exit {outcome.returncode}):\n{outcome.log[-6000:]}"


def test_tiny_settings_replace_the_ones_a_command_sets():
    assert with_tiny(["model=deep_ae", "trainer.epochs=30"]) == [
        "model=deep_ae",
        "trainer.epochs=1",
        "dataset.max_train=200",
        "dataset.max_test=200",
    ]
    assert with_tiny(["-m", "hparams_search=pca_optuna", "hydra.sweeper.n_trials=30"])[:3] == [
        "-m",
        "hparams_search=pca_optuna",
        "hydra.sweeper.n_trials=2",
    ]


def test_reference_reads_the_comment_above_or_beside_a_key():
    from anomaly_bench.docs_reference import key_comments

    text = (
        "# @package _global_\n# What the file is for.\n#   anomaly-bench -m x=1,2\n\n"
        "# Caps: how many.\nmax_train: null\nmax_test: null\nsplit_seed: 0  # the seed\n"
        "encoder:\n  # first layer\n  - {a: 1}\ntrainer:\n  # epochs to run\n  epochs: 3\n"
    )
    description, comments = key_comments(text)
    assert description == "What the file is for.\n\n```text\nanomaly-bench -m x=1,2\n```"
    assert comments == {
        "max_train": "Caps: how many.",
        "max_test": "Caps: how many.",
        "split_seed": "the seed",
        "encoder": "first layer",
        "trainer": "",
        "trainer.epochs": "epochs to run",
    }


def test_config_reference_is_current():
    from anomaly_bench.docs_reference import COMMAND, DEFAULT_OUT, render

    page = REPO / DEFAULT_OUT
    assert page.is_file() and page.read_text() == render(), (
        f"{DEFAULT_OUT} differs from conf/ and the schema; regenerate it from the repository root with: {COMMAND}"
    )


def test_mkdocs_build_is_strict(tmp_path):
    pytest.importorskip("mkdocs")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_links_lead_to_files():
    readme = (REPO / "README.md").read_text()
    targets = {link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", readme)}
    missing = [target for target in sorted(targets) if target and "://" not in target and not (REPO / target).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
