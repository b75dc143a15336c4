""".ci/run fails the build on any failing step, including a pytest run that collects nothing.

The script runs in a copy of the repository layout with stand-ins for python3, pip, ruff, mypy
and pytest on PATH, each exiting with the code a test chooses, so its logic is checked in
milliseconds without installing anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

TOOLS = ("pip", "ruff", "mypy", "pytest")
STAND_IN = """#!/usr/bin/env bash
echo "{name} $*" >> "$CI_CALLS"
exit "${{{variable}:-0}}"
"""
# python3 -m venv .venv: a venv whose activate script keeps the stand-ins first on PATH.
PYTHON3 = """#!/usr/bin/env bash
echo "python3 $*" >> "$CI_CALLS"
mkdir -p .venv/bin && echo 'export PATH="$CI_STANDINS:$PATH"' > .venv/bin/activate
"""


def run_ci(tmp_path: Path, **codes: int) -> tuple[int, list[str], str]:
    """Exit code, the commands it ran (in order) and stderr of .ci/run with these tools' exit codes."""
    repo, bin_dir, calls = tmp_path / "repo", tmp_path / "bin", tmp_path / "calls.txt"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "run", repo / ".ci" / "run")
    bin_dir.mkdir()
    scripts = {name: STAND_IN.format(name=name, variable=f"{name.upper()}_RC") for name in TOOLS}
    for name, text in {**scripts, "python3": PYTHON3}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CI_STANDINS": str(bin_dir),
        "CI_CALLS": str(calls),
        **{f"{name.upper()}_RC": str(code) for name, code in codes.items()},
    }
    result = subprocess.run(["bash", str(repo / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)
    ran = [line.strip() for line in calls.read_text().splitlines()] if calls.exists() else []
    return result.returncode, ran, result.stderr


@pytest.mark.skipif(shutil.which("bash") is None or os.name != "posix", reason="needs bash")
def test_every_check_then_the_readme_test_command_and_its_exit_code(tmp_path):
    code, ran, _ = run_ci(tmp_path)
    assert code == 0
    assert ran == [
        "python3 -m venv .venv",
        "pip install -e .[test]",
        "ruff check .",
        "ruff format --check .",
        "mypy",
        "python3 -m venv .venv",
        "pip install -e .[test]",
        "pytest",
    ]
    readme = (REPO / "README.md").read_text()
    command = "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && ANOMALY_BENCH_DATA=../shared/data pytest"
    assert command in readme and command in (REPO / ".ci" / "run").read_text()


@pytest.mark.skipif(shutil.which("bash") is None or os.name != "posix", reason="needs bash")
@pytest.mark.parametrize(
    "codes, expected, ran_pytest, message",
    [
        ({"pytest": 5}, 1, True, "pytest collected no tests"),
        ({"pytest": 1}, 1, True, ""),
        ({"pytest": 2}, 2, True, ""),
        ({"mypy": 1}, 1, False, "mypy reported problems"),
        ({"ruff": 1}, 1, False, "ruff check ., ruff format --check . reported problems"),
        ({"pip": 1}, 1, False, "installing the test extra failed"),
    ],
)
def test_any_failing_step_fails_the_build(tmp_path, codes, expected, ran_pytest, message):
    code, ran, stderr = run_ci(tmp_path, **codes)
    assert code == expected
    assert ("pytest" in ran) == ran_pytest
    assert message in stderr
