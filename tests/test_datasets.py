"""Datasets built from ``_target_``: one source class per module with only its own keys, the
split settings in their own schema, sources discovered from the package, and the cache of
decoded image folders (hit, miss on any file change, corrupt entries rebuilt, off)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import CONF_DIR, compose_config
from hydra import compose, initialize_config_dir
from image_data import write_pngs
from omegaconf import OmegaConf

import anomaly_bench.data.sources as sources_package
from anomaly_bench import cli
from anomaly_bench.config import validate
from anomaly_bench.config_location import group_options
from anomaly_bench.data import declared_sources, load_raw
from anomaly_bench.data.image_cache import default_cache_dir
from anomaly_bench.errors import ConfigError, one_line
from anomaly_bench.sweep.resume import config_differences

# ---------------------------------------------------------------- sources from _target_


@pytest.mark.parametrize("option", group_options("dataset"))
def test_every_dataset_yaml_builds_the_declared_source_of_its_name(option):
    settings = validate(compose_config([f"dataset={option}", "dataset.path=data"]))
    assert type(settings.dataset.source) is declared_sources()[option]
    assert settings.dataset.name == option


def test_split_keys_and_source_keys_share_the_users_vocabulary():
    settings = validate(
        compose_config(["dataset=folder", "dataset.path=/data/cifar", "dataset.normal_classes=[airplane]"])
    )
    assert settings.dataset.split.normal_classes == ["airplane"] and settings.dataset.split.val_anomalies == 200
    assert settings.dataset.source.path == Path("/data/cifar") and settings.dataset.source.test_fraction == 0.2
    fashion = validate(compose_config(["dataset=fashion_mnist", "dataset.normal_classes=[5]"]))
    assert fashion.dataset.split.normal_classes == [5] and fashion.dataset.source.source == "auto"


UNKNOWN = [
    (["dataset=npz", "dataset.path=d.npz", "+dataset.download_timeout=3"], "dataset.download_timeout", "Npz"),
    (["dataset=mnist", "+dataset.test_fraction=0.3"], "dataset.test_fraction", "Mnist"),
    (["dataset=cifar10", "+dataset.skip_unreadable=true"], "dataset.skip_unreadable", "Cifar10"),
    (["dataset=folder", "dataset.path=x", "+dataset.source=explicit"], "dataset.source", "Folder"),
]


@pytest.mark.parametrize("overrides, key, source", UNKNOWN, ids=[o[0] for o, _, _ in UNKNOWN])
def test_a_key_the_source_does_not_take_is_refused_naming_what_it_takes(overrides, key, source):
    with pytest.raises(ConfigError) as info:
        validate(compose_config(overrides))
    line = str(info.value)
    assert line.startswith(f"{key} is not a setting of anomaly_bench.data.sources.") and source in line
    assert "allowed: name, " in line and "normal_classes" in line and "\n" not in line


def test_cli_refuses_download_timeout_for_npz_with_exit_2(tmp_path):
    from test_bad_input import anomaly_bench

    result = anomaly_bench("dataset=npz", "dataset.path=d.npz", "dataset.download_timeout=3", cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "dataset.download_timeout" in line and "allowed: name, path, image_size, channels" in line
    assert not any(tmp_path.iterdir())


BAD = [
    (["dataset=cifar10", "dataset.normal_classes=[plane]"], "dataset.normal_classes=['plane'] contains ['plane']"),
    (["dataset=cifar10", "dataset.normal_classes=[10]"], "allowed classes are 0-9 or their names (airplane,"),
    (["dataset=fashion_mnist", "dataset.anomaly_classes=[12]"], "dataset.anomaly_classes=[12] contains [12]"),
    (["dataset=folder"], "dataset=folder needs dataset.path=<folder of class subfolders>"),
    (["dataset=npz"], "dataset=npz needs dataset.path=<file.npz>"),
    (["dataset=cifar10", "dataset.source=download"], "choose one of: auto, explicit, env, keras_cache"),
    (["dataset=mnist", "dataset.image_size=[0,4]"], "dataset.image_size=[0, 4] must be [H, W]"),
    (["dataset=folder", "dataset.path=x", "dataset.test_fraction=1.0"], "dataset.test_fraction=1.0 must be in (0, 1)"),
    (["dataset=folder", "dataset.path=x", "dataset.cache=''"], "dataset.cache='' must be true"),
    (["dataset=mnist", "dataset.download_timeout=soon"], "dataset.download_timeout='soon' must be a number"),
    (
        ["dataset._target_=anomaly_bench.thresholds.TrainMean"],
        "is not a dataset class (a subclass of anomaly_bench.data.sources.base.DataSource)",
    ),
    (["~dataset._target_"], "dataset._target_ is missing; it must name a class, e.g. anomaly_bench.data.sources"),
]


@pytest.mark.parametrize("overrides, message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_dataset_settings_are_checked_before_loading(overrides, message):
    with pytest.raises(ConfigError) as info:
        cli.precheck(overrides)
    assert message in one_line(info.value) and "\n" not in str(info.value)


TOY_MODULE = '''
"""A dataset source added as one module: sixteen 4 x 4 grey images per class, classes a and b."""

from __future__ import annotations

import numpy as np

from anomaly_bench.data.sources.base import DataSource, RawDataset


class Toy(DataSource):
    known_classes = ("a", "b")

    def __init__(self, name: str = "toy", brightness: int = 200, image_size=None, channels=None) -> None:
        super().__init__(name, image_size, channels)
        self.brightness = brightness

    def read(self, split_seed: int) -> RawDataset:
        y = np.repeat([0, 1], 16)
        x = np.zeros((32, 4, 4, 1), np.uint8)
        x[y == 1] = self.brightness
        return RawDataset(x, y, x.copy(), y.copy(), source="generated", location="toy", class_names=["a", "b"])
'''
TOY_YAML = """_target_: anomaly_bench.data.sources.toy.Toy
name: toy
normal_classes: [a]
anomaly_classes: rest
val_fraction: 0.25
val_anomalies: 4
brightness: 200
"""


def test_a_new_source_is_one_module_plus_one_yaml(tmp_path, monkeypatch):
    """The module joins the package (here through its search path), the YAML a user config folder:
    nothing else is edited, and the source is declared, composed, validated and loaded."""
    (tmp_path / "package").mkdir()
    (tmp_path / "package" / "toy.py").write_text(textwrap.dedent(TOY_MODULE))
    (tmp_path / "conf" / "dataset").mkdir(parents=True)
    (tmp_path / "conf" / "dataset" / "toy.yaml").write_text(TOY_YAML)
    monkeypatch.setattr(sources_package, "__path__", [*sources_package.__path__, str(tmp_path / "package")])
    monkeypatch.delitem(sys.modules, "anomaly_bench.data.sources.toy", raising=False)
    assert "toy" in declared_sources() and load_raw("toy", brightness=9).x_train.max() == 9
    user = f"file://{tmp_path / 'conf'}"
    assert "toy" in group_options("dataset", [user])
    settings = validate(_compose_with(user, ["dataset=toy"]))
    raw, splits = settings.dataset.load()
    assert raw.source == "generated" and splits.class_names == ["a", "b"] and splits.normal_classes == [0]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 4, 32)
    with pytest.raises(ConfigError, match=r"dataset.normal_classes=\['c'\] contains \['c'\]"):
        validate(_compose_with(user, ["dataset=toy", "dataset.normal_classes=[c]"]))


def _compose_with(search_path: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*overrides, f"hydra.searchpath=[{search_path}]"])
    return OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])


# ---------------------------------------------------------------- resume across the config change

OLD_FOLDER_RECORD = {
    "dataset": {
        "name": "folder",
        "path": "/data/parts",
        "normal_classes": [0],
        "anomaly_classes": "rest",
        "labelled_anomalies": 0,
        "val_fraction": 0.1,
        "max_train": None,
        "max_test": None,
        "split_seed": 0,
        "test_fraction": 0.2,
        "image_size": None,
        "channels": None,
        "skip_unreadable": False,
        "source": "explicit",
        "download_timeout": 10.0,
    },
    "trainer": {"epochs": 1},
}


def test_resume_recognises_runs_recorded_before_datasets_had_a_target():
    current = OmegaConf.to_container(compose_config(["dataset=folder", "dataset.path=/data/parts"]), resolve=True)
    current = {"dataset": current["dataset"], "trainer": {"epochs": 1}}
    assert current["dataset"]["_target_"].endswith("Folder") and "cache" in current["dataset"]
    assert config_differences(OLD_FOLDER_RECORD, current) == []
    assert config_differences(OLD_FOLDER_RECORD, {**current, "dataset": {**current["dataset"], "cache": False}}) == []
    changed = {**current, "dataset": {**current["dataset"], "split_seed": 1}}
    assert config_differences(OLD_FOLDER_RECORD, changed) == ["dataset.split_seed: 0 -> 1"]


# ---------------------------------------------------------------- the cache of decoded images


def _pngs(root: Path, n: int = 8) -> Path:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 6, 5, 3), dtype=np.uint8)
    write_pngs(root, images, np.arange(n) % 2, ["left", "right"])
    return root


def _load(root: Path, cache: Path | bool, **settings):
    return load_raw("folder", path=str(root), cache=cache if isinstance(cache, bool) else str(cache), **settings)


def _same(a, b) -> None:
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


def test_a_second_load_is_served_memory_mapped_from_the_cache(tmp_path):
    root, cache = _pngs(tmp_path / "d"), tmp_path / "cache"
    first = _load(root, cache, test_fraction=0.5)
    assert first.info["image_cache"]["status"] == "stored" and "decode_seconds" in first.info
    second = _load(root, cache, test_fraction=0.5)
    assert second.info["image_cache"] == {"status": "hit", "entry": first.info["image_cache"]["entry"]}
    _same(first, second)
    other_split = _load(root, cache, test_fraction=0.5, split_seed=3)  # the entry does not depend on the split
    assert other_split.info["image_cache"]["status"] == "hit"
    _same(other_split, _load(root, False, test_fraction=0.5, split_seed=3))
    assert second.info["found_channels"] == 3 and second.info["found_image_sizes"] == [[6, 5]]


def test_the_official_split_is_served_as_views_of_the_entry(tmp_path):
    rng = np.random.default_rng(1)
    for part in ("train", "test"):
        write_pngs(tmp_path / "d" / part, rng.integers(0, 256, (4, 3, 3, 1), np.uint8), np.arange(4) % 2, ["2", "10"])
    _load(tmp_path / "d", tmp_path / "cache")
    served = _load(tmp_path / "d", tmp_path / "cache")
    assert served.info["image_cache"]["status"] == "hit" and served.class_names == ["2", "10"]
    assert all(isinstance(x, np.memmap) for x in (served.x_train, served.x_test))
    _same(served, _load(tmp_path / "d", False))


@pytest.mark.parametrize("change", ["changed", "added", "removed"])
def test_a_changed_added_or_removed_file_is_a_miss(tmp_path, change):
    root, cache = _pngs(tmp_path / "d"), tmp_path / "cache"
    _load(root, cache)
    target = root / "left" / "00000.png"
    if change == "changed":
        from PIL import Image

        Image.fromarray(np.full((6, 5, 3), 7, np.uint8)).save(target)
        os.utime(target, ns=(1, 1))  # another size and time, whatever the clock's resolution
    elif change == "added":
        (root / "left" / "00000.png").rename(root / "left" / "extra.png")
        _pngs(tmp_path / "d")
    else:
        target.unlink()
    again = _load(root, cache)
    assert again.info["image_cache"]["status"] == "stored"
    _same(again, _load(root, False))
    assert len(list((cache / "decoded").rglob("*.npy"))) == 1  # the old entry is gone


CORRUPTIONS = {
    "truncated array": lambda npy, meta: npy.write_bytes(npy.read_bytes()[:-7]),
    "wrong shape": lambda npy, meta: np.save(npy, np.zeros((8, 5, 6, 3), np.uint8)),
    "too many rows": lambda npy, meta: np.save(npy, np.zeros((9, 6, 5, 3), np.uint8)),
    "wrong dtype": lambda npy, meta: np.save(npy, np.zeros((8, 6, 5, 3), np.float32)),
    "bad key json": lambda npy, meta: meta.write_text("{not json"),
    "rows out of range": lambda npy, meta: meta.write_text(
        json.dumps({**json.loads(meta.read_text()), "rows": [0, 1, 2, 3, 4, 5, 6, 99]})
    ),
    "size claimed beyond the file": lambda npy, meta: (
        npy.write_bytes(npy.read_bytes().replace(b"(8, 6, 5, 3)", b"(8, 9, 9, 3)")),
        meta.write_text(
            json.dumps({**json.loads(meta.read_text()), "facts": {"found_image_sizes": [[9, 9]], "found_channels": 3}})
        ),
    ),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupt_entry_is_rebuilt_never_trusted(tmp_path, corruption):
    root, cache = _pngs(tmp_path / "d"), tmp_path / "cache"
    first = _load(root, cache)
    (npy,) = (cache / "decoded").rglob("*.npy")
    CORRUPTIONS[corruption](npy, npy.with_suffix(".json"))
    rebuilt = _load(root, cache)
    assert rebuilt.info["image_cache"]["status"] == "stored"
    _same(rebuilt, first)
    assert _load(root, cache).info["image_cache"]["status"] == "hit"


def test_cache_false_writes_nothing_and_the_default_is_the_users_cache_folder(tmp_path, monkeypatch):
    root = _pngs(tmp_path / "d")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    off = _load(root, False)
    assert off.info["image_cache"] == {"status": "off"} and not (tmp_path / "xdg").exists()
    assert default_cache_dir() == tmp_path / "xdg" / "anomaly-bench"
    stored = _load(root, True)
    assert Path(stored.info["image_cache"]["entry"]).is_relative_to(tmp_path / "xdg" / "anomaly-bench")


def test_unreadable_files_are_not_hidden_by_the_cache(tmp_path):
    root, cache = _pngs(tmp_path / "d"), tmp_path / "cache"
    (root / "left" / "broken.png").write_bytes(b"not a png")
    skipped = _load(root, cache, skip_unreadable=True)
    assert skipped.info["skipped_files"] == [str(root / "left" / "broken.png")]
    again = _load(root, cache, skip_unreadable=True)
    assert again.info["image_cache"]["status"] == "hit" and again.info["skipped_files"] == skipped.info["skipped_files"]
    with pytest.raises(Exception, match="broken.png: unreadable image"):
        _load(root, cache)


def test_an_unwritable_cache_folder_costs_no_run(tmp_path):
    root = _pngs(tmp_path / "d")
    (tmp_path / "file").write_text("in the way")
    raw = _load(root, tmp_path / "file" / "cache")
    assert raw.info["image_cache"]["status"].startswith("not stored (")
    _same(raw, _load(root, False))


def test_a_users_dataset_yaml_on_the_search_path_starts_from_a_shipped_one(tmp_path):
    """As for models (my_conf/model/my_ae.yaml): a user's option reuses a shipped source with presets."""
    (tmp_path / "conf" / "dataset").mkdir(parents=True)
    (tmp_path / "conf" / "dataset" / "my_parts.yaml").write_text(
        "defaults: [folder, _self_]\nname: my_parts\npath: /data/parts\nnormal_classes: [ok]\ncache: false\n"
    )
    settings = validate(_compose_with(f"file://{tmp_path / 'conf'}", ["dataset=my_parts"]))
    assert type(settings.dataset.source) is declared_sources()["folder"] and settings.dataset.name == "my_parts"
    assert settings.dataset.source.cache_dir is None and settings.dataset.split.normal_classes == ["ok"]
