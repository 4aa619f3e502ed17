"""foads: few-shot online anomaly detection and segmentation (K-NG and a streaming benchmark)."""

import os

# OpenMP threads that wait for work spin only briefly (GOMP_SPINCOUNT) before they sleep.
# Two foads runs sharing the cores (two shells, a bench beside a sweep, jobs on one node)
# otherwise spin against each other for GNU OpenMP's default 300000 rounds per wait; a run
# alone loses nothing, since the gaps between its operations are shorter than the spin.
# Measured in docs/results.md, "Runs that share a machine". Read when torch loads, so it
# applies when foads is imported first (`foads run`, `python -m foads.run`); a wait policy
# or spin count already in the environment wins.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

__version__ = "0.1.0"
