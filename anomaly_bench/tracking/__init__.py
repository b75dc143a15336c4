"""Experiment trackers (MLflow, TensorBoard) as observers of a run's events.

The pipeline announces what happens to a run (started, epoch ended, artifacts written,
completed, failed) to the trackers chosen in the ``logger`` config group; the run folder is
always written first, and a tracker that fails is dropped with one warning line, so a tracker
never costs a result. A tracker is one module (a subclass of
:class:`anomaly_bench.tracking.observer.Observer`) plus one YAML in ``conf/logger/``.
"""
