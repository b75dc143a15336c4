"""Dataset sources: one class per source, each in its own module of this package, built from
``dataset._target_`` with only its own keys (conf/dataset/<name>.yaml).

The package's declared sources are discovered, not listed: every module here is imported and
each :class:`~anomaly_bench.data.sources.base.DataSource` subclass whose ``name`` parameter has
a default is the source of that name. Adding a source is one module here plus one YAML.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from anomaly_bench.data.sources.base import DataSource, RawDataset
from anomaly_bench.errors import ConfigError

__all__ = ["DataSource", "RawDataset", "declared_sources", "load_raw"]


def declared_sources() -> dict[str, type[DataSource]]:
    """Dataset name -> its source class, for every module of this package (sorted by name)."""
    found: dict[str, type[DataSource]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for cls in vars(module).values():
            if not (isinstance(cls, type) and issubclass(cls, DataSource) and cls.__module__ == module.__name__):
                continue
            default = inspect.signature(cls).parameters.get("name", inspect.Parameter.empty)
            name = getattr(default, "default", inspect.Parameter.empty)
            if isinstance(name, str) and not inspect.isabstract(cls):
                found[name] = cls
    return dict(sorted(found.items()))


def load_raw(name: str, split_seed: int = 0, **settings: Any) -> RawDataset:
    """The images of the declared source ``name`` built with ``settings`` (its own keys, e.g.
    ``path=``, ``source=``, ``image_size=``), for scripts and tests; runs build sources from the config."""
    sources = declared_sources()
    if name not in sources:
        raise ConfigError(f"dataset={name!r} is not a declared source; allowed: {', '.join(sources)}")
    return sources[name](**settings).load(split_seed)
