"""foads: few-shot online anomaly detection and segmentation (K-NG and a streaming benchmark)."""

import os

# OpenMP threads that wait for work sleep instead of spinning. Two foads runs sharing the
# cores (two shells, a bench beside a sweep, jobs on one node) otherwise spin against each
# other: measured with two online K-NG runs on MPDD at once on 2 cores (docs/results.md,
# "Runs that share a machine"), 1.33x the per-image time of running them one after the
# other by default, 0.74x with this; alone it costs about 7% per stream image. Read when
# torch loads, so it applies when foads is imported first (`foads run`, `python -m
# foads.run`); a value already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
