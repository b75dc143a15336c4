"""Data layer: where images come from (sources), how they are read (readers), how they are split."""
from anomaly_bench.data.sources import RawDataset, load_raw
from anomaly_bench.data.split import Split, Splits, make_splits

__all__ = ["RawDataset", "Split", "Splits", "load_raw", "make_splits"]
