"""The package as a user installs it: a wheel built from this tree, installed into a fresh
virtual environment and run from an empty folder, outside the repository.

Building and installing the wheel takes a minute on a small machine: those tests are in the
slow tier (``pytest -m slow``); the default run checks what the build is made from (listed
packages, shipped config files).

The fresh environment gets the wheel alone (no index, no download); its dependencies are
made visible through a .pth file naming this interpreter's site-packages, which never
exposes the repository itself (PYTHONPATH is cleared and the editable install's finder is
not loaded from a .pth-added folder).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA_ROOT, REPO, TINY, needs_mnist

BIN = "Scripts" if os.name == "nt" else "bin"
MY_MODEL = """\
# A user's own model: the deep autoencoder with a smaller code, kept outside the package.
defaults:
  - deep_ae
  - _self_
name: my_ae
encoder:
  - {class_name: Dense, units: 64, activation: relu}
  - {class_name: Dense, units: 16, activation: relu}
"""


def test_listed_packages_cover_every_package_in_the_source_tree():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "anomaly_bench").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
    assert "anomaly_bench.conf" in listed


def test_package_data_ships_every_file_of_the_config_tree():
    """Fast sibling of the wheel tests: every file under conf/ matches the package-data patterns."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"]["anomaly_bench.conf"] == "conf"
    patterns = setuptools["package-data"]["anomaly_bench.conf"]
    files = [p.relative_to(REPO / "conf") for p in (REPO / "conf").rglob("*") if p.is_file()]
    assert sorted(patterns) == ["**/*.yaml", "*.yaml"]  # the top folder and every folder below it
    assert files and all(f.suffix == ".yaml" for f in files), [f for f in files if f.suffix != ".yaml"]
    assert {f.parts[0] for f in files if len(f.parts) > 1} >= {"model", "dataset", "trainer", "experiment"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """Build the wheel from a copy of the tree, install it into a fresh venv; the env to run it with."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("anomaly_bench", "conf"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    dist = root / "dist"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(dist),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("anomaly_bench-*.whl")

    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / BIN / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    # Dependencies come from this interpreter's environment, after the venv's own site-packages.
    Path(purelib, "zz_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    env.update(PATH=f"{env_dir / BIN}{os.pathsep}{env['PATH']}", ANOMALY_BENCH_DATA=str(DATA_ROOT))
    workdir = root / "empty"
    workdir.mkdir()
    return {"env": env, "python": python, "bin": env_dir / BIN, "wheel": wheel, "cwd": workdir, "site": Path(purelib)}


def cli(installed: dict, *args: str, command: str = "anomaly-bench") -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(installed["bin"] / command), *args],
        cwd=installed["cwd"],
        env=installed["env"],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_wheel_ships_the_config_tree_and_uses_it(installed):
    shipped = sorted(
        p.relative_to(installed["site"] / "anomaly_bench" / "conf").as_posix()
        for p in (installed["site"] / "anomaly_bench" / "conf").rglob("*.yaml")
    )
    in_repo = sorted(p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml"))
    assert shipped == in_repo
    where = subprocess.run(
        [
            str(installed["python"]),
            "-c",
            "import anomaly_bench.config_location as c, anomaly_bench; print(anomaly_bench.__file__); print(c.CONF_DIR)",
        ],
        cwd=installed["cwd"],
        env=installed["env"],
        capture_output=True,
        text=True,
        check=True,
    )
    module, conf = where.stdout.split()
    assert Path(module).is_relative_to(installed["site"]) and Path(conf) == installed["site"] / "anomaly_bench" / "conf"


@pytest.mark.slow
def test_installed_help_cfg_and_bad_option_work_from_an_empty_folder(installed):
    help_ = cli(installed, "--help")
    assert help_.returncode == 0, help_.stderr[-2000:]
    assert "ANOMALY_BENCH_DATA" in help_.stdout and "conv_ae" in help_.stdout and "Traceback" not in help_.stderr
    job = cli(installed, "--cfg", "job", "model=pca")
    assert job.returncode == 0 and "name: pca" in job.stdout, job.stderr[-2000:]
    module = subprocess.run(
        [str(installed["python"]), "-m", "anomaly_bench", "--cfg", "job"],
        cwd=installed["cwd"],
        env=installed["env"],
        capture_output=True,
        text=True,
    )
    assert module.returncode == 0 and "model:" in module.stdout
    bad = cli(installed, "model=foo")
    assert bad.returncode == 2 and "allowed: ae_ocsvm" in bad.stderr and "conv_ae" in bad.stderr
    compare = cli(installed, "--help", command="anomaly-bench-compare")
    assert compare.returncode == 0
    assert not any(installed["cwd"].iterdir()), "nothing may be written by --help / --cfg / bad input"


@needs_mnist
@pytest.mark.slow
def test_installed_run_sweep_and_users_own_model(installed, tmp_path):
    installed = {**installed, "cwd": tmp_path}
    (tmp_path / "my_conf" / "model").mkdir(parents=True)
    (tmp_path / "my_conf" / "model" / "my_ae.yaml").write_text(MY_MODEL)

    single = cli(installed, "--config-dir", "my_conf", "model=my_ae", *TINY)
    assert single.returncode == 0, single.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "runs").glob("*/*")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["model"] == "my_ae" and metrics["auroc"] > 0.5
    np.savez(tmp_path / "new.npz", x=np.zeros((3, 28, 28), np.uint8))
    predicted = cli(installed, str(run), "new.npz", "--out", "predictions", command="anomaly-bench-predict")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert len((tmp_path / "predictions" / "predictions.csv").read_text().splitlines()) == 1 + 3

    sweep = cli(
        installed, "-m", "hydra.searchpath=[file://my_conf]", "model=my_ae,pca", *TINY, "hydra.sweep.dir=outputs/sweep"
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    summary = (tmp_path / "outputs" / "sweep" / "summary.csv").read_text()
    assert summary.count("completed") == 2 and "my_ae" in summary and "pca" in summary

    unknown = cli(installed, "--config-dir", "my_conf", "model=my_vae")
    assert unknown.returncode == 2 and "my_ae" in unknown.stderr


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    marker = "**Install and run the tests**"
    command = readme[readme.index(marker) :].split("```bash\n", 1)[1].split("\n```", 1)[0].strip()
    assert "pytest" in command
    assert any(line.strip() == command for line in (REPO / ".ci" / "run").read_text().splitlines()), command


def source_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "anomaly_bench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_users_own_options_are_listed_and_missing_folders_are_bad_input(tmp_path):
    from anomaly_bench.config_location import group_options

    (tmp_path / "my_conf" / "experiment").mkdir(parents=True)
    (tmp_path / "my_conf" / "experiment" / "quick.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: pca\ntrainer:\n  epochs: 2\n"
    )
    user = f"file://{tmp_path / 'my_conf'}"
    assert "quick" in group_options("experiment", [user]) and "quick" not in group_options("experiment")
    assert {"conv_ae", "pca"} <= set(group_options("model", [user]))
    job = source_cli("hydra.searchpath=[file://my_conf]", "experiment=quick", "--cfg", "job", cwd=tmp_path)
    assert job.returncode == 0 and "name: pca" in job.stdout and "epochs: 2" in job.stdout, job.stderr
    for args, message in [
        (["--config-dir", "nope", "model=pca"], "--config-dir nope: folder "),
        (["hydra.searchpath=[file://nope]", "model=pca"], "hydra.searchpath: file://nope is not a folder"),
        (
            ["--config-dir", "my_conf", "experiment=slow"],
            "experiment=slow is not a known option; allowed: article000_conv_ae",
        ),
    ]:
        bad = source_cli(*args, cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr
    assert "quick" in bad.stderr and not (tmp_path / "outputs").exists()
