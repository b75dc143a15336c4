"""Data layer: where images come from (sources, one class each), how they are read (readers,
folders, cifar, the image cache), checked (checks) and shaped (images), and how they are split."""

from anomaly_bench.data.dataset import Dataset
from anomaly_bench.data.images import conform, to_float
from anomaly_bench.data.sources import RawDataset, declared_sources, load_raw
from anomaly_bench.data.split import Split, SplitConfig, Splits, make_splits

__all__ = [
    "Dataset",
    "RawDataset",
    "Split",
    "SplitConfig",
    "Splits",
    "conform",
    "declared_sources",
    "load_raw",
    "make_splits",
    "to_float",
]
