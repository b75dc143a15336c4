"""The Optuna sweeper's settings, checked before Hydra creates a sweep folder; its result, corrected after.

The plugin reads ``hydra.sweeper.n_trials`` and the search space only once the sweep has
started: ``n_trials=0`` ended in a traceback from ``study.best_trial`` and ``interval(0.1,
0.01)`` in one from Optuna's distribution, each leaving an empty sweep folder. Here both are
checked while the command line is composed (one line, exit 2, no folder). And since a failed
trial reports the worst value to keep the study going (anomaly_bench.sweep.job), a study whose
trials all failed still names a "best" trial: :func:`correct_results` rewrites
``optimization_results.yaml`` from the jobs that completed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf

from anomaly_bench.errors import ConfigError, one_line, shown

OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
RESULTS_FILE = "optimization_results.yaml"


def is_optuna(cfg: DictConfig) -> bool:
    return OmegaConf.select(cfg, "hydra.sweeper._target_", default=None) == OPTUNA_SWEEPER


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_optuna_settings(cfg: DictConfig, overrides: list[str]) -> None:
    """n_trials and n_jobs positive, every search-space entry a valid Optuna distribution."""
    if not is_optuna(cfg):
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override

    for key in ("n_trials", "n_jobs"):
        value = OmegaConf.select(cfg, f"hydra.sweeper.{key}", default=None)
        if not (_whole(value) and value >= 1):
            raise ConfigError(f"hydra.sweeper.{key}={shown(value)} must be a whole number >= 1")
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    entries = [(f"hydra.sweeper.params.{k}", f"{k}={v}") for k, v in params.items()]
    parser = OverridesParser.create()
    for text in overrides:
        parsed = parser.parse_override(text)
        if parsed.is_sweep_override() and not parsed.key_or_group.startswith("hydra"):
            entries.append((parsed.key_or_group, text))
    for where, text in entries:
        try:
            create_optuna_distribution_from_override(parser.parse_override(text))
        except Exception as exc:
            value = text.split("=", 1)[1]
            raise ConfigError(
                f"{where}={shown(value, quote=False)} is not a valid search space: {one_line(exc)}"
            ) from None


def _value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def correct_results(sweep_dir: Path, table: pd.DataFrame, cfg: DictConfig) -> str | None:
    """Make optimization_results.yaml name the best *completed* job, or none when every trial failed;
    returns the line to print when the plugin's own "Best parameters" line was wrong."""
    path = Path(sweep_dir) / RESULTS_FILE
    if not is_optuna(cfg) or not path.is_file():
        return None
    written = yaml.safe_load(path.read_text()) or {}
    if "best_params" not in written:
        return None  # several objectives: the plugin writes a Pareto front, left as it is
    metric = str(OmegaConf.select(cfg, "optimized_metric", default="val_auroc"))
    done = table[table["status"] == "completed"]
    if metric in done.columns:
        done = done[done[metric].map(lambda v: isinstance(v, (int, float)) and math.isfinite(v))]
    else:
        return None  # no column to rank by: the plugin's own choice stands
    corrected: dict[str, Any]
    if done.empty:
        corrected = {
            "name": "optuna",
            "best_params": None,
            "best_value": None,
            "note": "every trial failed (see summary.csv); there is no best setting",
        }
    else:
        direction = str(OmegaConf.select(cfg, "hydra.sweeper.direction", default="maximize")).lower()
        best = done.loc[done[metric].idxmin() if "minimize" in direction else done[metric].idxmax()]
        chosen = dict(item.split("=", 1) for item in str(best["overrides"]).split() if "=" in item)
        params = {k: _value(chosen[k]) for k in written["best_params"] or {} if k in chosen}
        corrected = {"name": "optuna", "best_params": params, "best_value": float(best[metric])}
    path.write_text(yaml.safe_dump(corrected, sort_keys=False))
    if corrected["best_params"] == written.get("best_params") and corrected["best_value"] == written.get("best_value"):
        return None
    if corrected["best_params"] is None:
        return f"optuna: every trial failed; no best setting ({path} says so)"
    return f"optuna: best completed trial {corrected['best_params']} ({metric} {corrected['best_value']:.4f}), written to {path}"
