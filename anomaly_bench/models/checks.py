"""Settings checks shared by the detectors: one wording for "must be a whole number in a range".

Detectors check their config in ``check_settings()`` before any data is loaded; these helpers raise the
one-line :class:`ConfigError` the command line prints (``model.<key>=<value> must be ...``).
``bool`` is refused where an integer is expected: YAML's ``true`` would otherwise count as 1.
"""

from __future__ import annotations

from typing import Any

from anomaly_bench.errors import ConfigError


def is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(key: str, value: Any, low: int = 1, high: int | None = None, must: str | None = None) -> None:
    """ConfigError unless ``low <= value <= high`` (no upper bound when ``high`` is None)."""
    if is_whole(value) and value >= low and (high is None or value <= high):
        return
    if must is None:
        must = f"an integer >= {low}" if high is None else f"an integer {low}-{high}"
    raise ConfigError(f"model.{key}={value!r} must be {must}")


def integers(key: str, values: Any) -> None:
    """ConfigError unless ``values`` is a non-empty list of positive integers (layer widths, filters)."""
    if isinstance(values, (list, tuple)) and values and all(is_whole(v) and v >= 1 for v in values):
        return
    raise ConfigError(f"model.{key}={values!r} must be a non-empty list of positive integers")


def one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"model.{key}={value!r} is not allowed; choose one of: {', '.join(allowed)}")
