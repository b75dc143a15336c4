"""The ``anomaly-bench`` command: a thin Hydra wrapper around :func:`anomaly_bench.run.run`.

Hydra owns argv. Before handing over, single runs are composed and validated once here so
that bad input ends with one line and exit code 2 before Hydra creates a run folder.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported anywhere

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from anomaly_bench.errors import ConfigError  # noqa: E402
from anomaly_bench.sweep.naming import safe_dirname  # noqa: E402

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
USER_GROUPS = ("dataset", "model", "threshold", "trainer", "experiment", "paths")
EXIT_BAD_INPUT = 2
EXIT_JOB_FAILED = 1
log = logging.getLogger("anomaly_bench")


def _classes_label(classes) -> str:
    """Folder-name form of a class list: [1] -> '1', [1, 2] -> '1-2'."""
    return "-".join(str(c) for c in classes) if isinstance(classes, (list, tuple)) or OmegaConf.is_list(classes) else str(classes)


if not OmegaConf.has_resolver("ab_classes"):
    OmegaConf.register_new_resolver("ab_classes", _classes_label)
if not OmegaConf.has_resolver("ab_dirname"):
    OmegaConf.register_new_resolver("ab_dirname", safe_dirname)


def _one_line(exc: BaseException) -> str:
    parts = []
    while exc is not None and len(parts) < 3:
        first = str(exc).strip().splitlines()
        if first and first[0] not in parts:
            parts.append(first[0])
        exc = exc.__cause__ or exc.__context__
    return "; ".join(parts) or "invalid configuration"


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def check_group_options(overrides: list[str]) -> None:
    """Unknown group options (model=foo) fail here with the list of allowed ones."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise ConfigError(_one_line(exc)) from None
    for override in parsed:
        group = override.key_or_group.lstrip("+~")
        if group not in USER_GROUPS or override.is_delete() or override.package:
            continue
        try:
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        except Exception:
            continue
        allowed = group_options(group)
        for value in values:
            if value is not None and str(value) not in allowed and str(value) != "null":
                raise ConfigError(f"{group}={value} is not a known option; allowed: {', '.join(allowed)}")


def precheck(argv: list[str]) -> None:
    """Compose + validate a single run the way Hydra will, raising ConfigError on bad input."""
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(argv)
    if args.help or args.hydra_help or args.cfg or args.info or args.shell_completion:
        return
    check_group_options(args.overrides)
    if args.multirun:
        return
    from hydra import compose, initialize_config_dir

    from anomaly_bench.config import validate

    user_overrides = [o for o in args.overrides if not o.lstrip("+~").startswith("hydra")]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=user_overrides)
    except Exception as exc:
        raise ConfigError(_one_line(exc)) from None
    validate(cfg)


def _bad_input(exc: ConfigError) -> None:
    print(f"anomaly-bench: error: {exc}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """Run one job; return the optimised metric for Hydra sweepers.

    In a sweep (-m) a failing job is recorded and the sweep goes on (anomaly_bench.sweep.job);
    a single run turns bad input into exit code 2 and removes its empty folder.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from anomaly_bench.run import run

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        from anomaly_bench.sweep.job import run_sweep_job

        return run_sweep_job(cfg, output_dir)
    try:
        metrics = run(cfg, output_dir)
    except ConfigError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        from anomaly_bench.run_folder import looks_like_only_hydra_bookkeeping

        if looks_like_only_hydra_bookkeeping(output_dir):
            shutil.rmtree(output_dir, ignore_errors=True)
        _bad_input(exc)
    return metrics.get(cfg.get("optimized_metric", "auroc"))


def select_backend() -> None:
    """``--backend NAME`` (taken out of argv before Hydra sees it) or ``KERAS_BACKEND`` picks the
    Keras backend; checked here because Keras reads it once, at its first import."""
    from anomaly_bench import backend

    sys.argv[1:], name = backend.pop_switch(sys.argv[1:])
    backend.choose(name)


def main() -> None:
    try:
        select_backend()
        precheck(sys.argv[1:])
    except ConfigError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _bad_input(exc)
    hydra_main()
    from anomaly_bench.sweep.callback import pop_outcome

    outcome = pop_outcome()
    if outcome is not None and outcome.n_failed:
        raise SystemExit(EXIT_JOB_FAILED)


if __name__ == "__main__":
    main()
