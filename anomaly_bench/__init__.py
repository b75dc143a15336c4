"""anomaly-bench: config-driven experiment runner for image anomaly detection."""

__version__ = "0.1.0"
__all__ = ["load_detector"]


def __getattr__(name: str):
    # Imported on first use: ``import anomaly_bench`` stays cheap for the command-line entry points.
    if name == "load_detector":
        from anomaly_bench.trained import load_detector

        return load_detector
    raise AttributeError(f"module 'anomaly_bench' has no attribute {name!r}")
