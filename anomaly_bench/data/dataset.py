"""A configured dataset: its source (where the images come from) and its split settings
(what is normal, what is held out). ``load()`` is all a run calls."""

from __future__ import annotations

from dataclasses import dataclass

from anomaly_bench.data.sources.base import DataSource, RawDataset
from anomaly_bench.data.split import SplitConfig, Splits, make_splits


@dataclass
class Dataset:
    source: DataSource
    split: SplitConfig

    @property
    def name(self) -> str:
        return self.source.name

    def load(self) -> tuple[RawDataset, Splits]:
        """Read, check and shape the images, then draw the splits (deterministic in split_seed)."""
        s = self.split
        raw = self.source.load(s.split_seed)
        splits = make_splits(
            raw,
            s.normal_classes,
            s.anomaly_classes,
            s.val_fraction,
            s.max_train,
            s.max_test,
            s.labelled_anomalies,
            s.split_seed,
        )
        return raw, splits
