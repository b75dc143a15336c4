"""Records -> pandas tables: one row per run, grouped mean ± std, the per-class layout.

A run row shows only the config keys whose values differ between the compared runs: that is
what distinguishes them. Keys of a group that merely follow a differing ``<group>.name``
(``model.encoder`` when ``model.name`` differs) are folded into that name so a model sweep
does not drown the table in architecture lists. A setting a run's detector never reads
(``detector.unused_settings`` in its metrics.json: ``trainer.epochs`` of a PCA run) is no difference:
its cell says ``not used`` and it is compared only among the runs that use it.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from anomaly_bench.compare.load import RunRecord
from anomaly_bench.errors import ConfigError
from anomaly_bench.run_folder import DETECTOR_KEY

MAIN_METRICS = ("auroc", "auprc", "f1", "precision", "recall", "threshold_rule")
DURATION = "duration_s"
DURATION_SOURCE = "timings.total"
# Metrics living in [0, 1]: the per-class table prints them in %, like the published tables.
UNIT_METRICS = {"auroc", "val_auroc", "auprc", "f1", "precision", "recall", "accuracy"}
CLASS_KEY = "dataset.normal_classes"
ANOMALY_KEY = "dataset.anomaly_classes"
REST = "rest"
PROTOCOL_CLASSES = range(10)
_MISSING = object()
UNUSED_KEY = f"{DETECTOR_KEY}.unused_settings"
NOT_USED = "not used"
_NOT_USED = "\0not used"


def unused(record: RunRecord, key: str) -> bool:
    """Whether the run's detector declared ``key`` (or a key above it) as a setting it never reads."""
    names = record.metrics.get(UNUSED_KEY)
    return isinstance(names, list) and any(
        isinstance(name, str) and (key == name or key.startswith(f"{name}.")) for name in names
    )


def value_text(value: Any) -> str:
    """One cell for a config value, in the spelling of a Hydra override ([0], true, null)."""
    if value is _MISSING:
        return ""
    if value is None or isinstance(value, (bool, list, dict)):
        return json.dumps(value)
    return str(value)


def _canonical(value: Any) -> str:
    return "\0missing" if value is _MISSING else json.dumps(value, sort_keys=True, default=str)


def _ordered_union(dicts: list[dict]) -> list[str]:
    """Keys in first-seen order: the config's own order (dataset, model, ...) reads best."""
    return list(dict.fromkeys(k for d in dicts for k in d))


def differing_keys(records: list[RunRecord]) -> list[str]:
    """Config keys whose values are not the same in every run that has a config and uses the key."""
    having = [r for r in records if r.config]
    if len(having) < 2:
        return []
    canon = {
        k: [_NOT_USED if unused(r, k) else _canonical(r.config.get(k, _MISSING)) for r in having]
        for k in _ordered_union([r.config for r in having])
    }
    differ = [k for k, values in canon.items() if len(set(values) - {_NOT_USED}) > 1]
    return [k for k in differ if not _follows_name(k, differ, canon)]


def _follows_name(key: str, differ: list[str], canon: dict[str, list[str]]) -> bool:
    name_key = f"{key.split('.', 1)[0]}.name"
    if key == name_key or name_key not in differ:
        return False
    implied: dict[str, str] = {}
    return all(implied.setdefault(n, v) == v for n, v in zip(canon[name_key], canon[key]))


@dataclass
class Lookup:
    """Where a user-named key lives: the flattened config, the status, or metrics.json."""

    config_keys: set[str]
    metric_keys: set[str]

    @classmethod
    def of(cls, records: list[RunRecord]) -> Lookup:
        metric_keys = {k for r in records if r.ok for k in r.metrics}
        return cls({k for r in records for k in r.config}, metric_keys)

    def knows(self, key: str) -> bool:
        return key == "status" or key in self.config_keys or key in self.metric_keys

    def value(self, record: RunRecord, key: str) -> Any:
        if key == "status":
            return record.status
        if key in record.config:
            return record.config[key]
        if key in self.config_keys:
            return _MISSING
        return record.metrics.get(key, _MISSING) if record.ok else _MISSING

    def require(self, key: str, option: str) -> None:
        if not self.knows(key):
            raise ConfigError(
                f"{option}: key {key!r} is in no run's config or metrics; "
                f"config keys look like model.name, dataset.normal_classes, trainer.seed"
            )


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    """``KEY=VALUE`` strings -> {key: [values]}: values of one key are alternatives (OR)."""
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--filter {item!r} is malformed; expected KEY=VALUE, e.g. model.name=conv_ae")
        filters.setdefault(key.strip(), []).append(value.strip())
    return filters


def _equals(value: Any, wanted: str) -> bool:
    """Compare a stored value with command-line text: 0.001 == 1e-3, [0] == [ 0 ], true == True."""
    if value is _MISSING:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return math.isclose(float(wanted), float(value), rel_tol=1e-12, abs_tol=0.0)
        except ValueError:
            return False
    if isinstance(value, (bool, list, dict)) or value is None:
        import yaml

        try:
            parsed = yaml.safe_load(wanted)
        except yaml.YAMLError:
            return False
        return _canonical(parsed) == _canonical(value)
    return str(value) == wanted


def apply_filters(records: list[RunRecord], filters: dict[str, list[str]], lookup: Lookup) -> list[RunRecord]:
    for key in filters:
        lookup.require(key, "--filter")
    return [
        r for r in records if all(any(_equals(lookup.value(r, k), w) for w in wanted) for k, wanted in filters.items())
    ]


def run_label(records: list[RunRecord]) -> list[str]:
    """Each folder relative to the deepest folder all of them share (the folder name if alone)."""
    paths = [os.path.abspath(r.path) for r in records]
    if len(paths) == 1:
        return [os.path.basename(paths[0])]
    root = os.path.commonpath(paths)
    return [os.path.relpath(p, root) for p in paths]


def _metric_column(values: list[Any]) -> pd.Series:
    present = [v for v in values if v is not _MISSING and v is not None]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pd.Series([float(v) if v is not _MISSING and v is not None else np.nan for v in values], dtype=float)
    return pd.Series([value_text(v) if v is not _MISSING and v is not None else "" for v in values], dtype=object)


def run_table(
    records: list[RunRecord], metrics: list[str], lookup: Lookup, extra_keys: Sequence[str] = ()
) -> pd.DataFrame:
    """Columns: run, differing config keys (+ extra_keys), status, metrics, duration."""
    keys = list(dict.fromkeys([*differing_keys(records), *(k for k in extra_keys if k in lookup.config_keys)]))
    # Text columns are object dtype: pandas' Arrow strings refuse a folder name that is not UTF-8
    # (read with surrogate escapes), and compare writes such names back byte for byte.
    data: dict[str, Any] = {"run": pd.Series(run_label(records), dtype=object)}
    for key in keys:
        data[key] = pd.Series(
            [NOT_USED if unused(r, key) else value_text(lookup.value(r, key)) for r in records], dtype=object
        )
    data["status"] = pd.Series([r.status for r in records], dtype=object)
    for name in [*metrics, *(k for k in extra_keys if k not in keys and k not in metrics and k != "status")]:
        data[name] = _metric_column([r.metrics.get(name, _MISSING) if r.ok else _MISSING for r in records])
    data[DURATION] = _metric_column([r.metrics.get(DURATION_SOURCE, _MISSING) if r.ok else _MISSING for r in records])
    return pd.DataFrame(data)


def check_metrics(metrics: list[str], lookup: Lookup) -> None:
    unknown = [m for m in metrics if lookup.metric_keys and m not in lookup.metric_keys]
    if unknown:
        raise ConfigError(
            f"--metrics: {', '.join(unknown)} not in any completed run's metrics.json; "
            f"e.g. {', '.join(MAIN_METRICS)}, accuracy, timings.fit"
        )


def _status_summary(statuses: pd.Series) -> str:
    counts = Counter(statuses)
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: (kv[0] != "completed", kv[0])))


def group_table(runs: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean ± std (sample std, ddof 1) over the completed runs of each group, with their count n."""
    rows = []
    for values, part in runs.groupby(keys, sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        done = part[part["status"] == "completed"]
        row: dict[str, Any] = dict(zip(keys, values))
        row["n"] = len(done)
        row["status"] = _status_summary(part["status"])
        for name in [*metrics, DURATION]:
            column = done[name]
            if column.dtype == object:
                row[name] = ", ".join(sorted({v for v in column if v}))
            else:
                row[f"{name}_mean"] = column.mean() if column.notna().any() else np.nan
                row[f"{name}_std"] = column.std(ddof=1) if column.notna().sum() > 1 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


MIXED_COLUMN = "mixed settings"
# Keys that may differ inside a group without mixing settings: repetitions (seeds) and keys
# that do not change a result.
REPLICATE_KEYS = ("trainer.seed", "dataset.split_seed", "resume", "optimized_metric", "n_reconstructions")


def mixed_settings(
    runs: pd.DataFrame, records: list[RunRecord], keys: list[str], also_allowed: tuple[str, ...] = ()
) -> dict[tuple, list[str]]:
    """Groups (by their key values, as in the grouped table) whose completed runs differ in
    config keys other than the grouping keys, seeds and ``also_allowed``, with those keys:
    their mean would silently average different settings."""
    allowed = {*keys, *REPLICATE_KEYS, *also_allowed}
    mixed = {}
    for values, part in runs.groupby(keys, sort=True, dropna=False):
        members = [records[i] for i in part.index if records[i].ok]
        differing = [k for k in differing_keys(members) if k not in allowed and not k.startswith("paths.")]
        if differing:
            mixed[values if isinstance(values, tuple) else (values,)] = differing
    return mixed


def add_mixed_column(table: pd.DataFrame, keys: list[str], mixed: dict[tuple, list[str]]) -> pd.DataFrame:
    """The grouped table with a column naming, per group, the keys its runs differ in."""
    if not mixed:
        return table
    column = [", ".join(mixed.get(tuple(row), [])) for row in table[keys].itertuples(index=False)]
    return table.assign(**{MIXED_COLUMN: column})


def _protocol_class(config: dict) -> int | str | None:
    """The normal class of a one-class-protocol run: one class (0-9 or a class name), every other class anomalous."""
    value = config.get(CLASS_KEY)
    if not (
        isinstance(value, list)
        and len(value) == 1
        and not isinstance(value[0], bool)
        and (value[0] in PROTOCOL_CLASSES or isinstance(value[0], str))
    ):
        return None
    cls = value[0]
    anomalies = config.get(ANOMALY_KEY, REST)
    others = [c for c in PROTOCOL_CLASSES if c != cls]
    rest = anomalies == REST or (
        isinstance(anomalies, list) and all(type(a) is int for a in anomalies) and sorted(anomalies) == others
    )
    return cls if rest else None


def class_label(record: RunRecord) -> str:
    """A run's normal class as a column header: its name from metrics.json (folder datasets name
    classes after folders), else the configured value."""
    names = record.metrics.get("data.normal_class_names")
    return str(names[0]) if isinstance(names, list) and len(names) == 1 else str(record.config[CLASS_KEY][0])


def one_class_classes(records: list[RunRecord]) -> list[int | str] | None:
    """The normal classes when every completed run follows the one-class protocol and they vary, else None."""
    classes = []
    for record in records:
        if not record.ok:
            continue
        cls = _protocol_class(record.config)
        if cls is None:
            return None
        classes.append(cls)
    distinct = sorted(set(classes), key=str)
    return distinct if len(distinct) > 1 else None


def per_class_table(runs: pd.DataFrame, records: list[RunRecord], keys: list[str], metric: str) -> pd.DataFrame:
    """Rows = groups (methods), columns = normal class, mean over classes, n runs; % for [0,1] metrics.

    A cell averages the runs of that method and class (e.g. seeds); ``mean`` averages the
    cells, as the published tables do, so a class with more seeds does not weigh more. A row
    missing a class (a failed job) gets no mean: it would not be comparable with the others.
    """
    if runs[metric].dtype == object:
        raise ConfigError(f"--per-class needs a numeric metric; {metric!r} is text")
    scale = 100.0 if metric in UNIT_METRICS else 1.0
    done = runs.assign(_cls=[class_label(r) if r.ok else "" for r in records])
    done = done[done["status"] == "completed"]
    cells = done.pivot_table(index=keys, columns="_cls", values=metric, aggfunc="mean") * scale
    cells.columns = [str(c) for c in cells.columns]
    table = cells.reset_index()
    table["mean"] = cells.mean(axis=1, skipna=False).to_numpy()
    table["n"] = done.groupby(keys).size().reindex(cells.index).to_numpy()
    return table


def sort_table(table: pd.DataFrame, key: str, metrics: list[str], reverse: bool) -> pd.DataFrame:
    """Metrics and counts sort best-first (descending), anything else ascending; NaN last.

    The index is kept: a run table's index still points into the list of records.
    """
    column = key if key in table.columns else f"{key}_mean"
    if column not in table.columns:
        raise ConfigError(
            f"--sort: {key!r} is not a column of this table; columns: "
            f"{', '.join(c for c in table.columns if not c.endswith('_std'))}"
        )
    descending = (key in metrics or key in ("n", "mean") or key.isdigit()) and table[column].dtype != object
    return table.sort_values(column, ascending=descending == reverse, na_position="last", kind="stable")
