"""The ``anomaly-bench`` command: a thin Hydra wrapper around :func:`anomaly_bench.run.run`.

Hydra owns argv. Before handing over, the command is composed and checked once here (the
settings of a single run; the output folder of runs and sweeps) so that bad input ends with
one line and exit code 2 before Hydra creates or touches a folder. TensorFlow's native
start-up lines are filtered from stderr (anomaly_bench.native_stderr). Once the run folder
exists, bad input still exits 2 and removes it; any other failure leaves ``status: failed``.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported anywhere

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from anomaly_bench.config_location import CONF_DIR, group_options, search_path_override, user_search_path
from anomaly_bench.errors import ConfigError, one_line, shown
from anomaly_bench.native_stderr import filter_native_logs
from anomaly_bench.sweep.naming import safe_dirname
from anomaly_bench.sweep.resume import untouched_job_subdir

USER_GROUPS = ("dataset", "model", "threshold", "trainer", "experiment", "paths", "hparams_search", "logger")
EXIT_BAD_INPUT = 2
EXIT_JOB_FAILED = 1
MAX_NAME_BYTES = 255  # a folder name's limit on common file systems
log = logging.getLogger("anomaly_bench")


def _classes_label(classes) -> str:
    """Folder-name form of a class list: [1] -> '1', [1, 2] -> '1-2'."""
    return (
        "-".join(str(c) for c in classes)
        if isinstance(classes, (list, tuple)) or OmegaConf.is_list(classes)
        else str(classes)
    )


if not OmegaConf.has_resolver("ab_classes"):
    OmegaConf.register_new_resolver("ab_classes", _classes_label)
if not OmegaConf.has_resolver("ab_dirname"):
    OmegaConf.register_new_resolver("ab_dirname", safe_dirname)
if not OmegaConf.has_resolver("ab_job_subdir"):
    OmegaConf.register_new_resolver("ab_job_subdir", untouched_job_subdir)


def _one_line(exc: BaseException) -> str:
    parts: list[str] = []
    link: BaseException | None = exc
    while link is not None and len(parts) < 3:
        first = one_line(link)
        if first and first != "None" and first not in parts:
            parts.append(first)
        link = link.__cause__ or link.__context__
    return "; ".join(parts) or "invalid configuration"


def parse_overrides(overrides: list[str]) -> list:
    """Hydra's parsed overrides; a syntax error names the override and, for non-ASCII text, how to quote it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    try:
        return parser.parse_overrides(overrides)
    except Exception as exc:
        for text in overrides:
            try:
                parser.parse_overrides([text])
            except Exception:
                key, _, value = text.partition("=")
                if not value.isascii() and value[:1] not in ("'", '"'):
                    raise ConfigError(
                        f"{shown(text)}: unquoted values must be plain ASCII; quote the value for "
                        f"Hydra and the shell: \"{key}='{shown(value, 160, quote=False)}'\""
                    ) from None
                hint = (
                    f"; to pass the value literally, quote it: \"{key}='{shown(value, 160, quote=False)}'\""
                    if value and value[:1] not in ("'", '"', "[", "{")
                    else ""
                )
                raise ConfigError(f"{shown(text)} is not a valid override: {_one_line(exc)}{hint}") from None
        raise ConfigError(_one_line(exc)) from None


def check_group_options(overrides: list[str], search_path: Sequence[str] = ()) -> None:
    """Unknown group options (model=foo) fail here with the list of allowed ones (the user's search path included)."""
    for override in parse_overrides(overrides):
        group = override.key_or_group.lstrip("+~")
        if group not in USER_GROUPS or override.is_delete() or override.package:
            continue
        try:
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        except Exception:
            continue
        allowed = group_options(group, search_path)
        # A list selects several options of one group at once (logger=[mlflow,tensorboard]).
        values = [item for value in values for item in (value if isinstance(value, list) else [value])]
        for value in values:
            if value is not None and str(value) not in allowed and str(value) != "null":
                raise ConfigError(
                    f"{group}={shown(value, quote=False)} is not a known option; allowed: {', '.join(allowed)}"
                )


def check_empty_mappings(overrides: list[str], cfg: DictConfig) -> None:
    """``key={}`` on a non-empty mapping is merged into it and changes nothing: refuse instead of ignoring it."""
    for override in parse_overrides(overrides):
        if override.is_delete() or override.is_sweep_override() or override.key_or_group.startswith("hydra"):
            continue
        try:
            value = override.value()
        except Exception:
            continue
        current = OmegaConf.select(cfg, override.key_or_group, default=None, throw_on_resolution_failure=False)
        if value == {} and isinstance(value, dict) and OmegaConf.is_dict(current) and len(current):
            key = override.key_or_group
            entries = ", ".join(str(k) for k in current)
            raise ConfigError(
                f"{key}={{}} would change nothing: Hydra merges a mapping into the existing one "
                f"({entries}); remove entries one by one with ~{key}.<name>"
            )


def compose_for_check(overrides: list[str], multirun: bool, search_path: Sequence[str] = ()) -> tuple[DictConfig, bool]:
    """The config Hydra will compose, with its ``hydra`` node; sweeps: the overrides that are not swept.

    Returns (config, complete): complete is False when Hydra's own overrides did not compose
    here (Hydra will report them itself), so only the user's part was checked.
    """
    from hydra import compose, initialize_config_dir

    parsed = parse_overrides(overrides)
    kept = [
        text
        for text, o in zip(overrides, parsed)
        if not (multirun and o.is_sweep_override()) and o.key_or_group != "hydra.searchpath"
    ] + search_path_override(search_path)
    user = [o for o in kept if not o.lstrip("+~").startswith("hydra")] + search_path_override(search_path)
    for attempt, complete in ((kept, True), (user, False)):
        try:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                return compose(config_name="config", overrides=attempt, return_hydra_config=True), complete
        except Exception as exc:
            error = exc
    _explain_key_not_in_yaml(error, overrides, multirun, search_path)
    raise ConfigError(_one_line(error)) from None


def _explain_key_not_in_yaml(
    error: Exception, overrides: list[str], multirun: bool, search_path: Sequence[str]
) -> None:
    """``dataset.download_timeout=3`` where the option's YAML has no such key: Hydra only says the key
    is not in struct. Composed with ``+`` instead, the schema names what the group takes, or, for a
    key its class does take, the ``+`` the user needs."""
    match = re.search(r"Could not override '([\w.]+)'", _one_line(error))
    if match is None or "not in struct" not in _one_line(error):
        return
    key = match.group(1)
    added = [f"+{text}" if text.split("=", 1)[0] == key else text for text in overrides]
    try:
        cfg, _ = compose_for_check(added, multirun, search_path)
        if not multirun:
            from anomaly_bench.config import validate

            validate(task_config(cfg))
    except ConfigError:
        raise
    except Exception:
        return
    raise ConfigError(f"{key} is not in the YAML of this option; add it with +{key}=<value>")


def check_search_is_a_sweep(cfg: DictConfig) -> None:
    """A search sweeper (Optuna) runs only under --multirun; without it Hydra would quietly do one plain run."""
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
    search, sweeper = choices.get("hparams_search"), choices.get("hydra/sweeper")
    if search is not None:
        raise ConfigError(
            f"hparams_search={search} is a search over many runs, which Hydra's sweeper does only under "
            f"--multirun; add -m: anomaly-bench -m hparams_search={search} ..."
        )
    if sweeper not in (None, "basic"):
        raise ConfigError(
            f"hydra/sweeper={sweeper} sweeps only under --multirun; add -m: anomaly-bench -m hydra/sweeper={sweeper} ..."
        )


def task_config(cfg: DictConfig) -> DictConfig:
    """The job's config as the task function sees it: everything but the ``hydra`` node."""
    task = copy.deepcopy(cfg)
    with open_dict(task):
        task.pop("hydra", None)
    return task


def check_output_folder(cfg: DictConfig, overrides: list[str], multirun: bool) -> Path | None:
    """The run (or sweep) folder can be created and, for a run, holds no other run.

    Hydra writes ``.hydra/`` and ``run.log`` into the folder before any of the project's code
    runs, so a finished run in ``hydra.run.dir`` must be protected here, before Hydra starts.
    Returns the deepest folder on the way that exists already (the run folder itself when it
    exists, empty), so a run refused later can leave the file system as it found it.
    """
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        folder = Path(str(OmegaConf.select(cfg, key, throw_on_resolution_failure=True)))
    except Exception:
        return None  # e.g. ${hydra:...} interpolations only Hydra can resolve; it reports them itself
    given = any(text.lstrip("+~").split("=", 1)[0] == key for text in overrides)
    named = f"{key}={shown(str(folder))}" if given else f"paths.output_dir={shown(str(cfg.paths.output_dir))}"
    for part in folder.parts:
        if len(os.fsencode(part)) > MAX_NAME_BYTES:
            raise ConfigError(
                f"{named}: the folder name {shown(part, 60)} is longer than the file system's "
                f"{MAX_NAME_BYTES} bytes; shorten the values it is built from"
            )
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{named}: {shown(str(existing))} is a file, not a folder; choose a folder you can write to")
    if existing == folder and not multirun:
        _refuse_used_run_folder(folder)
    _refuse_inside_a_run(key, folder, existing, multirun)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".anomaly-bench-write-test-", dir=existing))
    except OSError as exc:
        raise ConfigError(
            f"{named}: cannot create folders in {shown(str(existing))} "
            f"({exc.strerror or exc}); choose a folder you can write to"
        ) from None
    return existing


def _refuse_used_run_folder(folder: Path) -> None:
    from anomaly_bench.run_folder import read_metrics

    entries = sorted(os.listdir(folder))
    if not entries:
        return
    metrics = read_metrics(folder)
    if metrics is not None:
        raise ConfigError(
            f"hydra.run.dir={shown(str(folder))} already holds a run (status "
            f"{shown(metrics.get('status'), 40)}); a run never writes into another run's folder: "
            "choose a new folder"
        )
    listed = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    raise ConfigError(
        f"hydra.run.dir={shown(str(folder))} is not empty (it holds {shown(listed, 120, quote=False)}); "
        "a run goes into a new or empty folder"
    )


def _refuse_inside_a_run(key: str, folder: Path, existing: Path, multirun: bool) -> None:
    """A sweep folder that is a run folder, or any folder inside one, would change a finished run;
    a run or sweep folder inside a sweep would join that sweep's jobs (its summary, compare's
    tables, a resume). A sweep folder itself may be given again: that is how a sweep resumes."""
    from anomaly_bench.run_folder import METRICS_FILE, SWEEP_FILE

    here = Path(os.path.abspath(existing))  # a relative path's parents stop at the working directory
    target = Path(os.path.abspath(folder))
    candidates = [here, *here.parents] if (multirun or existing != folder) else list(here.parents)
    for candidate in candidates:
        if (candidate / SWEEP_FILE).is_file() and not (multirun and candidate == target):
            raise ConfigError(
                f"{key}={shown(str(folder))} lies in {shown(str(candidate))}, a sweep folder; only that "
                "sweep's own jobs write there: choose a folder outside it"
            )
        if (candidate / METRICS_FILE).is_file():
            where = (
                "is a run folder"
                if candidate == Path(os.path.abspath(folder))
                else f"lies in {shown(str(candidate))}, a run folder"
            )
            raise ConfigError(
                f"{key}={shown(str(folder))} {where}; a run never writes into another run's folder: "
                "choose a folder outside it"
            )


_existing_before_run: Path | None = None


def precheck(argv: list[str]) -> None:
    """Compose + validate a run the way Hydra will, raising ConfigError on bad input.

    Everything here happens before Hydra creates or touches a folder. Settings that need no
    TensorFlow (data, trainer, threshold rule, finite numbers) are checked before a model's
    module is imported.
    """
    global _existing_before_run
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(argv)
    if args.help or args.hydra_help or args.cfg or args.info or args.shell_completion:
        return
    search_path = user_search_path(args.config_dir, args.overrides)
    check_group_options(args.overrides, search_path)
    cfg, complete = compose_for_check(args.overrides, args.multirun, search_path)
    if not args.multirun:
        check_search_is_a_sweep(cfg)
    if complete:
        _existing_before_run = check_output_folder(cfg, args.overrides, args.multirun)
    check_empty_mappings(args.overrides, cfg)
    from anomaly_bench.config import check_logger, validate

    if args.multirun:  # jobs validate their own settings; the trackers and the search serve the whole sweep
        from anomaly_bench.sweep.optuna_checks import check_optuna_settings

        check_logger(OmegaConf.to_container(cfg.logger, resolve=True) if "logger" in cfg else None)
        check_optuna_settings(cfg, args.overrides)
        return

    validate(task_config(cfg))


def _bad_input(exc: ConfigError) -> None:
    print(f"anomaly-bench: error: {one_line(exc)}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def _discard_bad_input_folder(output_dir: Path) -> None:
    """Bad input found once the folder exists (while loading data or fitting): the folder holds no result
    and only this run's files (precheck refused a used folder), so it goes with the empty folders
    created for it, and bad input leaves the file system as it was."""
    shutil.rmtree(output_dir, ignore_errors=True)
    existed = _existing_before_run.resolve() if _existing_before_run is not None else None
    folder = output_dir.resolve()
    if folder == existed:
        folder.mkdir(parents=True, exist_ok=True)  # the user's own empty folder stays
        return
    for parent in folder.parents:
        if existed is None or parent == existed or existed not in parent.parents:
            break
        try:
            parent.rmdir()
        except OSError:
            break


def _run_failed(exc: BaseException, output_dir: Path, problem: str | None) -> None:
    """A failure that is not bad input: one line saying where the traceback is, exit 1."""
    from anomaly_bench.run_folder import ERROR_FILE

    what = f"{type(exc).__name__}: {one_line(exc)}".rstrip(": ")
    if problem is None:
        where = f"traceback in {output_dir / ERROR_FILE}"
    else:
        where = f"the failure could not be recorded in {output_dir} ({problem}); that folder holds no result"
    print(f"anomaly-bench: error: the run failed: {what}; {where}", file=sys.stderr)
    raise SystemExit(EXIT_JOB_FAILED)


def run_single(cfg: DictConfig, output_dir: Path) -> dict:
    """One run in its Hydra folder: bad input exits 2 and leaves no folder; any other failure
    (Ctrl-C included) leaves ``status: failed`` with ``error.txt`` and exits 1.
    ``HYDRA_FULL_ERROR=1`` re-raises the exception after the folder is dealt with."""
    from anomaly_bench.run import run
    from anomaly_bench.run_folder import record_failure

    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        return run(cfg, output_dir)
    except ConfigError as exc:
        _discard_bad_input_folder(output_dir)
        if full_error:
            raise
        _bad_input(exc)
    except BaseException as exc:
        problem = record_failure(output_dir, exc)
        if full_error or not isinstance(exc, Exception):
            raise
        _run_failed(exc, output_dir, problem)
    raise AssertionError("unreachable")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """Run one job; return the optimised metric for Hydra sweepers.

    In a sweep (-m) a failing job is recorded and the sweep goes on (anomaly_bench.sweep.job);
    a single run turns bad input into exit code 2 and removes its empty folder.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        from anomaly_bench.sweep.job import run_sweep_job

        return run_sweep_job(cfg, output_dir)
    metrics = run_single(cfg, output_dir)
    return metrics.get(cfg.get("optimized_metric", "val_auroc"))


def select_backend() -> None:
    """``--backend NAME`` (taken out of argv before Hydra sees it) or ``KERAS_BACKEND`` picks the
    Keras backend; checked here because Keras reads it once, at its first import."""
    from anomaly_bench import backend

    sys.argv[1:], name = backend.pop_switch(sys.argv[1:])
    backend.choose(name)


def main() -> None:
    filter_native_logs()
    try:
        select_backend()
        precheck(sys.argv[1:])
    except ConfigError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _bad_input(exc)
    try:
        hydra_main()
    except BrokenPipeError:  # output piped into a reader that stopped early (``--help | head``)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        raise SystemExit(EXIT_JOB_FAILED) from None
    from anomaly_bench.sweep.callback import pop_outcome

    outcome = pop_outcome()
    if outcome is not None and outcome.n_failed:
        raise SystemExit(EXIT_JOB_FAILED)


if __name__ == "__main__":
    main()
