"""anomaly-bench: config-driven experiment runner for image anomaly detection."""
__version__ = "0.1.0"
