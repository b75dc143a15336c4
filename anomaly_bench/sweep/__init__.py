"""Sweeps (``anomaly-bench -m``) on top of Hydra's own sweepers and launchers.

Hydra composes and launches the jobs; this package adds what a grid of experiments needs:
a failed job is recorded and the others keep running (job.py), finished jobs are skipped on
``resume=true`` (resume.py), progress lines and a ``summary.csv`` per sweep (callback.py,
summary.py), and file-system friendly job folder names (naming.py).
"""
