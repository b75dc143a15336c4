"""Run the ```bash blocks of the markdown pages the way a reader would, with tiny settings.

Each block runs as one bash script in a fresh folder, so shell variables, heredocs, globs and
quoting behave exactly as in a terminal. ``anomaly-bench`` (and ``python -m anomaly_bench``) is
a shell function there that hands its argument list back to the test process, which either runs
it in-process (a plain run: compose + ``run``, no second TensorFlow start-up), in a subprocess
(flags such as ``-m``, ``--help`` or ``--backend``, where the command line itself is the point), or
only composes and checks it (``dry`` mode). Every ``anomaly-bench`` command gets tiny settings
appended (or replacing the ones it sets).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKDOWN_FILES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```bash[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)

# Small enough for a shared 2-core machine; every run still goes through every stage.
TINY = {"dataset.max_train": "200", "dataset.max_test": "200", "trainer.epochs": "1"}
# Extra settings for commands that contain the key: an Optuna search runs two trials.
TINY_WHEN = {"hparams_search=": {"hydra.sweeper.n_trials": "2"}}

# Lines shown in a ```bash block that the test does not run, with the reason.
NOT_RUN_LINES = {
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && anomaly-bench": (
        "installs from the package index into a new virtual environment; tests/test_packaging.py "
        "runs the installed commands"
    ),
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && "
    "ANOMALY_BENCH_DATA=../shared/data pytest": (
        ".ci/run runs it from a clean clone; tests/test_cli.py checks that it is the README's command"
    ),
}
# Commands that blocks may use but the test replaces by a line saying so, with the reason.
NOT_RUN_COMMANDS = {
    "pip": "installs packages; the test environment has every extra installed",
    "mkdocs": "tests/test_docs.py builds the pages itself (test_mkdocs_build_is_strict)",
    "mlflow": "starts a server that runs until stopped",
    "tensorboard": "starts a server that runs until stopped",
}
# Tools that dry mode does not run (their input is what the runs would have written).
TOOLS = ("anomaly-bench-compare", "anomaly-bench-predict")
BLOCK_TIMEOUT_S = {True: 300, False: 1800}  # dry mode, full runs


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    text: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def bash_blocks(files: list[Path] = MARKDOWN_FILES) -> list[Block]:
    """Every ```bash block of the given pages, with the line its first command is on."""
    blocks = []
    for path in files:
        text = path.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start(1)) + 1
            blocks.append(Block(path, line, match.group(1)))
    return blocks


def with_tiny(args: list[str]) -> list[str]:
    """The command line with tiny settings: those it sets are replaced, the rest appended."""
    extra = dict(TINY)
    for marker, more in TINY_WHEN.items():
        if any(marker in arg for arg in args):
            extra.update(more)
    result = []
    for arg in args:
        key, sep, _ = arg.partition("=")
        bare = key.lstrip("+")
        result.append(f"{key}={extra.pop(bare)}" if sep and bare in extra else arg)
    return result + [f"{key}={value}" for key, value in extra.items()]


def script(block: Block, dry: bool) -> str:
    """The block as a bash script: not-run lines replaced, command functions defined first."""
    lines = []
    for line in block.text.splitlines():
        reason = NOT_RUN_LINES.get(line.split("  #")[0].strip())
        lines.append(f"echo {_quote('not run: ' + line.strip() + ' (' + reason + ')')}" if reason else line)
    prelude = [
        "set +e" if dry else "set -eo pipefail",
        "trap 'echo \"docs command failed (exit $?): $BASH_COMMAND\" >&2' ERR",
        '_docs_request() { local req; req=$(mktemp "$DOCS_IPC/reqXXXXXX"); '
        'printf \'%s\\0\' "$#" "$@" > "$req.argv"; env -0 > "$req.env"; pwd > "$req.cwd"; '
        ': > "$req.ready"; while [ ! -e "$req.rc" ]; do kill -0 "$DOCS_PARENT" 2>/dev/null || exit 3; sleep 0.02; done; return "$(cat "$req.rc")"; }',
        'anomaly-bench() { _docs_request "$@"; }',
        'python() { if [ "${1:-}" = -m ] && [ "${2:-}" = anomaly_bench ]; then shift 2; _docs_request "$@"; '
        'else command python "$@"; fi; }',
    ]
    for name, reason in NOT_RUN_COMMANDS.items():
        prelude.append(f'{name}() {{ echo {_quote(f"not run: {name} (" + reason + ")")} "$*"; }}')
    if dry:
        for tool in TOOLS:
            prelude.append(f'{tool}() {{ echo "dry: {tool} not run"; }}')
        prelude.append(
            'python() { if [ "${1:-}" = -m ] && [ "${2:-}" = anomaly_bench ]; then shift 2; _docs_request "$@"; '
            'elif [ "${1:-}" = -m ] && [[ "${2:-}" == anomaly_bench.* ]]; then echo "dry: $2 not run"; '
            'else command python "$@"; fi; }'
        )
    return "\n".join(prelude + lines) + "\n"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@dataclass
class Outcome:
    returncode: int
    log: str
    problems: list[str] = field(default_factory=list)  # commands that failed their checks (dry mode)


def run_block(block: Block, sandbox: Path, handle) -> Outcome:
    """Run ``block`` in ``sandbox/work``; ``handle(args, env, cwd, log)`` answers each anomaly-bench call with
    an exit code (``handle.dry``: the block's mode; ``handle.problems``: what failed its checks)."""
    work, ipc = sandbox / "work", sandbox / "ipc"
    work.mkdir(exist_ok=True)
    ipc.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(sandbox / "home"),
        "DOCS_IPC": str(ipc),
        "DOCS_PARENT": str(os.getpid()),  # a block whose test process is gone stops waiting
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log_path = sandbox / "block.log"
    dry = handle.dry
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            ["bash", "-c", script(block, dry)],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout stops the commands it started too
        )
        started = time.monotonic()
        while True:
            finished = proc.poll() is not None
            for ready in sorted(ipc.glob("*.ready")):
                request = ready.with_suffix("")
                count, *args = request.with_suffix(".argv").read_bytes().decode().split("\0")[:-1]
                args = args[: int(count)]
                request_env = dict(
                    item.split("=", 1) for item in request.with_suffix(".env").read_text().split("\0") if "=" in item
                )
                cwd = Path(request.with_suffix(".cwd").read_text().strip())
                log.write(f"$ anomaly-bench {' '.join(args)}\n")
                log.flush()
                code = handle(args, request_env, cwd, log)
                tmp = request.with_suffix(".rc.tmp")
                tmp.write_text(str(code))
                tmp.rename(request.with_suffix(".rc"))
                ready.unlink()
            if finished:
                break
            if time.monotonic() - started > BLOCK_TIMEOUT_S[dry]:
                os.killpg(proc.pid, signal.SIGKILL)
                handle.problems.append(f"{block.id}: stopped after {BLOCK_TIMEOUT_S[dry]} s")
                break
            time.sleep(0.02)
    return Outcome(proc.wait(), log_path.read_text(), list(handle.problems))
