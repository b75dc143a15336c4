"""Bad input and faults: one line and exit 2 before any folder exists, a status in every folder
that does exist, finished folders never touched, and no TensorFlow start-up noise."""

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import compose_config, needs_mnist

from anomaly_bench import cli
from anomaly_bench.config import validate
from anomaly_bench.errors import ConfigError, one_line, shown
from anomaly_bench.native_stderr import is_native_log_line
from anomaly_bench.run_folder import ERROR_FILE, METRICS_FILE, RunFolder

TESTS = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "anomaly_bench"]


def anomaly_bench(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    for key in ("HYDRA_FULL_ERROR", "ANOMALY_BENCH_VERBOSE"):
        full_env.pop(key, None)
    full_env.update(env or {})
    return subprocess.run([*CLI, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)


def precheck_error(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        cli.precheck(list(overrides))
    return one_line(info.value)


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- values that pass types but cannot work

NOT_FINITE = [
    ["trainer.learning_rate=nan"],
    ["trainer.learning_rate=inf"],
    ["trainer.learning_rate=1e400"],
    ["threshold.k=inf"],
    ["threshold.k=-inf"],
    ["threshold=val_percentile", "threshold.q=nan"],
    ["threshold=fixed", "threshold.value=inf"],
    ["model=sparse_ae", "model.code_l1=nan"],
    ["model=knn", "model.k=nan"],
    ["trainer.early_stopping.min_delta=inf"],
    ["dataset.val_fraction=nan"],
]


@pytest.mark.parametrize("overrides", NOT_FINITE, ids=[" ".join(o) for o in NOT_FINITE])
def test_nan_and_infinity_are_refused_for_every_number(overrides):
    key = overrides[-1].split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key}=-?(nan|inf) is not allowed; settings must be finite numbers"):
        validate(compose_config(overrides))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["threshold=fixed", "threshold.value=null"], "threshold.value=null must be a number"),
        (["threshold=fixed", "threshold.value=abc"], "threshold.value='abc' must be a number"),
        (["threshold=val_mean_std", "threshold.k=true"], "threshold.k=true must be a number"),
        (["threshold=val_percentile", "threshold.q=150"], "threshold.q=150 is outside [0, 100]"),
        (["dataset.normal_classes=0"], "dataset.normal_classes=0 must be a list such as [0]"),
        (
            ["dataset.anomaly_classes=3"],
            "dataset.anomaly_classes=3 must be a non-empty list of classes 0-9, such as [3]",
        ),
        (["dataset.split_seed=-1"], "dataset.split_seed=-1 must be a whole number >= 0"),
        (["model=ensemble", "model.members={}"], "model.members={} would change nothing"),
        (["dataset.path=/tmp/données"], "quote the value for Hydra and the shell: \"dataset.path='/tmp/données'\""),
        (["paths.output_dir=/proc/x"], "paths.output_dir='/proc/x': cannot create folders in '/proc'"),
    ],
)
def test_each_family_names_the_key_and_what_is_allowed(overrides, message):
    assert message in precheck_error(*overrides)


def test_an_empty_mapping_override_on_an_empty_mapping_is_fine():
    cli.check_empty_mappings(["model.members={}"], compose_config(["model=knn", "+model.members={}"]))


def test_long_values_are_shortened_in_the_error_line():
    value = "x" * 20_000
    line = precheck_error(f"dataset.source={value}")
    assert len(line) < 600 and "… (20002 characters)" in line and "choose one of: auto" in line
    assert shown(None) == "null" and shown("a" * 201).endswith("… (203 characters)")


# ---------------------------------------------------------------- the output folder, before Hydra starts


def test_unwritable_or_used_output_folders_are_refused_before_hydra(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("not a folder")
    assert "'file' is a file, not a folder" in precheck_error("paths.output_dir=file/out")
    assert "is a file, not a folder" in precheck_error("hydra.run.dir=file")
    assert "longer than the file system's 255 bytes" in precheck_error(f"model.name={'m' * 300}")
    finished = tmp_path / "finished"
    RunFolder(finished).start({"model": "pca"})
    line = precheck_error("hydra.run.dir=finished")
    assert line.startswith("hydra.run.dir='finished' already holds a run (status 'running')")
    assert "finished', a run folder" in precheck_error("hydra.run.dir=finished/inner")
    assert "is a run folder" in precheck_error("-m", "model=pca,knn", "hydra.sweep.dir=finished")
    assert "quote it: \"hydra.run.dir='a=b'\"" in precheck_error("hydra.run.dir=a=b")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert "is not empty (it holds notes.txt)" in precheck_error("hydra.run.dir=other")
    (tmp_path / "empty").mkdir()
    cli.precheck(["hydra.run.dir=empty", "model=pca"])  # an empty folder is fine
    (tmp_path / "sweep" / "0_job").mkdir(parents=True)
    RunFolder(tmp_path / "sweep" / "0_job").start({"model": "pca"})
    (tmp_path / "sweep" / "multirun.yaml").write_text("hydra: {}\n")
    cli.precheck(["-m", "model=pca,knn", "hydra.sweep.dir=sweep"])  # sweeps resume into used sweep folders
    for inside in ("sweep/new", "sweep/new/deeper"):  # a run or another sweep never joins a sweep's jobs
        assert "lies in" in precheck_error(f"hydra.run.dir={inside}") and "a sweep folder" in precheck_error(
            f"hydra.run.dir={inside}"
        )
        assert "a sweep folder" in precheck_error("-m", "model=pca,knn", f"hydra.sweep.dir={inside}")
    with pytest.raises(ConfigError, match="cannot create folders in '/proc'"):
        cli.precheck(["-m", "model=pca,knn", "paths.output_dir=/proc/x"])


def test_cli_one_line_exit_2_fast_and_nothing_written(tmp_path):
    """Subprocesses: settings that need no TensorFlow fail before it is imported; a finished
    folder given as hydra.run.dir is not touched (Hydra would write .hydra/ and run.log first)."""
    started = time.perf_counter()
    result = anomaly_bench("threshold=val_percentile", "threshold.q=150", "paths.output_dir=out", cwd=tmp_path)
    elapsed = time.perf_counter() - started
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "anomaly-bench: error: threshold: cannot build "
        "anomaly_bench.thresholds.ValPercentile: threshold.q=150 is outside [0, 100]"
    ]
    assert not (tmp_path / "out").exists()
    assert elapsed < 20, elapsed  # generous for a loaded 2-core machine; TensorFlow's import alone takes longer there

    finished = tmp_path / "finished"
    RunFolder(finished).start({"model": "pca"})
    RunFolder(finished).path.joinpath("run.log").write_text("the first run's log\n")
    before = files_under(finished)
    result = anomaly_bench("model=knn", "hydra.run.dir=finished", cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "already holds a run" in result.stderr
    assert files_under(finished) == before and not (finished / ".hydra").exists()


@needs_mnist
def test_tensorflow_start_up_lines_are_silenced(tmp_path):
    """A bad model setting is found after TensorFlow is imported: still exactly one stderr line."""
    result = anomaly_bench("model=knn", "model.k=-1", "paths.output_dir=out", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "anomaly-bench: error: model.k=-1 must be a positive number of neighbours (at most the training images)"
    ]
    assert not (tmp_path / "out").exists()  # not even the empty date folders Hydra made


def test_the_stderr_filter_drops_native_log_lines_only(tmp_path):
    script = (
        "import os, sys\n"
        "from anomaly_bench.native_stderr import filter_native_logs\n"
        "filter_native_logs()\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
        "os.write(2, b'I0000 00:00:1795677010.310790    7971 port.cc:153] oneDNN custom operations are on.\\n')\n"
        "os.write(2, b'E0000 00:00:1795677028.059538    8443 cuda_platform.cc:52] failed call to cuInit: (303)\\n')\n"
        "os.write(2, b'a native line of another library\\n')\n"
        "print('anomaly-bench: error: the one line', file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent)}
    env.pop("ANOMALY_BENCH_VERBOSE", None)
    quiet = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert sorted(quiet.stderr.splitlines()) == [
        "a native line of another library",
        "anomaly-bench: error: the one line",
    ]
    loud = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "ANOMALY_BENCH_VERBOSE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert len(loud.stderr.splitlines()) == 5
    assert is_native_log_line(b"W0000 00:00:1795677010.3 12 cudart_stub.cc:31] x")
    assert not is_native_log_line(b"I think 00:00 is fine")


# ---------------------------------------------------------------- every started folder ends with a status


def test_a_failure_before_the_run_starts_still_marks_the_folder_failed(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.log").write_text("hydra's log\n")

    def truncated(cfg, output_dir):
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    monkeypatch.setattr("anomaly_bench.run.run", truncated)
    with pytest.raises(SystemExit) as exit_info:
        cli.run_single(compose_config(), folder)
    assert exit_info.value.code == 1
    metrics = json.loads((folder / METRICS_FILE).read_text())
    assert metrics["status"] == "failed" and metrics["error"].startswith("EOFError: Compressed file")
    assert "EOFError" in (folder / ERROR_FILE).read_text()
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("anomaly-bench: error: the run failed: EOFError: Compressed file") and "error.txt" in line


def test_bad_input_found_during_fit_leaves_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_existing_before_run", tmp_path)
    folder = tmp_path / "runs" / "day" / "run"

    def refused_mid_fit(cfg, output_dir):
        record = RunFolder(output_dir)
        record.start({"model": "knn"})
        error = ConfigError("model.k=100000 exceeds the 270 training images; choose 1-270")
        record.fail(error)
        raise error

    monkeypatch.setattr("anomaly_bench.run.run", refused_mid_fit)
    with pytest.raises(SystemExit) as exit_info:
        cli.run_single(compose_config(), folder)
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr().err
        == "anomaly-bench: error: model.k=100000 exceeds the 270 training images; choose 1-270\n"
    )
    assert list(tmp_path.iterdir()) == []  # the run folder and the folders made for it are gone


def test_a_full_disk_still_ends_with_a_clear_line_and_no_empty_error_file(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "run"
    RunFolder(folder).start({"model": "pca"})
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def disk_full(*args, **kwargs):
        raise full

    def creates_then_fails(self, *args, **kwargs):
        self.touch()  # the file is created, its content does not fit
        raise full

    def run_fills_the_disk(cfg, output_dir):
        monkeypatch.setattr("anomaly_bench.run_folder.write_json", disk_full)
        monkeypatch.setattr("anomaly_bench.run_folder.open", disk_full, raising=False)
        monkeypatch.setattr(Path, "write_text", creates_then_fails)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "scores.csv")

    monkeypatch.setattr("anomaly_bench.run.run", run_fills_the_disk)
    with pytest.raises(SystemExit) as exit_info:
        cli.run_single(compose_config(), folder)
    monkeypatch.undo()
    assert exit_info.value.code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("anomaly-bench: error: the run failed: OSError: [Errno 28] No space left on device")
    assert "could not be recorded" in line and "that folder holds no result" in line
    assert not (folder / ERROR_FILE).exists()  # an empty error.txt would explain nothing
    assert json.loads((folder / METRICS_FILE).read_text())["status"] == "running"  # never "completed"


def test_failed_status_is_written_in_place_when_there_is_no_room_for_a_temporary_file(tmp_path, monkeypatch):
    record = RunFolder(tmp_path)
    record.start({"model": "pca"})

    def no_room(path, payload):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("anomaly_bench.run_folder.write_json", no_room)
    assert record.fail(RuntimeError("boom")) is None
    metrics = json.loads((tmp_path / METRICS_FILE).read_text())
    assert metrics["status"] == "failed" and metrics["model"] == "pca"


def test_bad_data_found_after_loading_prints_the_error_line_alone(tmp_path, monkeypatch, cli_main):
    """Progress lines of the data stage are held back, so the error stands alone on the terminal."""
    import numpy as np

    path = tmp_path / "odd.npz"
    np.savez(
        path,
        x_train=np.zeros((40, 8, 8), np.uint8),
        y_train=np.full(40, 3),
        x_test=np.zeros((10, 8, 8), np.uint8),
        y_test=np.full(10, 3),
    )
    monkeypatch.chdir(tmp_path)
    code, out, err = cli_main(
        "dataset=npz", f"dataset.path={path}", "model=pca", f"paths.output_dir={tmp_path / 'out'}"
    )
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and "selects no training images" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.json"))
