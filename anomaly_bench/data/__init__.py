"""Data layer: where images come from (sources), how they are read (readers, folders, cifar),
checked (checks) and shaped (images), and how they are split."""

from anomaly_bench.data.images import conform, to_float
from anomaly_bench.data.sources import RawDataset, load_raw
from anomaly_bench.data.split import Split, Splits, make_splits

__all__ = ["RawDataset", "Split", "Splits", "conform", "load_raw", "make_splits", "to_float"]
