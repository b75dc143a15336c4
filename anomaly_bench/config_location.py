"""Where the Hydra config tree is, and which options a config group offers.

The tree lives in ``conf/`` at the top of the repository. A wheel ships the same files
inside the package (``anomaly_bench/conf``, mapped in pyproject.toml), so an installed
package finds them beside its modules, while a source checkout or an editable install
reads the repository's ``conf/``. Users add their own group options without touching
either: Hydra's ``--config-dir DIR`` or ``hydra.searchpath=[file://DIR]`` puts DIR on the
search path, and the option lists used for error messages include those folders too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from anomaly_bench.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
PRIMARY_CONFIG = "config"


def find_config_dir() -> Path:
    """The packaged tree when installed from a wheel, else the repository's conf/."""
    candidates = (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf")
    for candidate in candidates:
        if (candidate / f"{PRIMARY_CONFIG}.yaml").is_file():
            return candidate
    return candidates[0]  # Hydra then reports the missing primary config with this path


CONF_DIR = find_config_dir()


def user_search_path(config_dir: str | None, overrides: Iterable[str]) -> list[str]:
    """The folders a command line adds to Hydra's search path, as Hydra itself reads them:
    ``--config-dir DIR`` (made absolute) first, then the entries of ``hydra.searchpath=[...]``.
    A folder that does not exist is bad input (Hydra would skip a searchpath entry silently)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if config_dir and not Path(config_dir).is_dir():
        raise ConfigError(f"--config-dir {config_dir}: folder {Path(config_dir).resolve()} not found")
    entries = [f"file://{Path(config_dir).resolve()}"] if config_dir else []
    searchpath = [o for o in overrides if o.split("=", 1)[0].lstrip("+") == "hydra.searchpath"]
    if searchpath:
        try:
            value = OverridesParser.create().parse_override(searchpath[-1]).value()
        except Exception:
            return entries  # the override check reports the syntax error in one line
        for entry in value if isinstance(value, list) else [value]:
            entry = str(entry)
            folder = entry[len("file://") :] if entry.startswith("file://") else None if "://" in entry else entry
            if folder is not None and not Path(folder).is_dir():
                raise ConfigError(f"hydra.searchpath: {entry} is not a folder ({Path(folder).resolve()} not found)")
            entries.append(entry)
    return entries


def search_path_override(entries: Sequence[str]) -> list[str]:
    """The compose-API override that puts ``entries`` on the search path ([] when none)."""
    return [f"hydra.searchpath=[{','.join(entries)}]"] if entries else []


def group_options(group: str, extra_search_path: Iterable[str] = ()) -> list[str]:
    """Option names of a config group (``model`` -> conv_ae, pca, ...) on the whole search path:
    the shipped tree, Hydra plugins' folders and the user's own folders."""
    from hydra._internal.config_repository import ConfigRepository
    from hydra._internal.utils import create_config_search_path
    from hydra.core.object_type import ObjectType

    search_path = create_config_search_path(str(CONF_DIR))
    for entry in extra_search_path:
        search_path.append(provider="command-line", path=entry)
    repository = ConfigRepository(config_search_path=search_path)
    return sorted(set(repository.get_group_options(group, results_filter=ObjectType.CONFIG)))
