"""How many threads a run's torch uses: `trainer.threads` (conf/trainer/default.yaml).

Its default is the CPUs this process may use, and never more than a share it was already
given: an affinity mask (`taskset`, a container's cpuset), SLURM's `--cpus-per-task`, a
cgroup v2 CPU quota, and `OMP_NUM_THREADS`, which Hydra's joblib launcher and the test suite's
pytest-xdist workers (tests/conftest.py) set to each worker's share of the cores. torch's own
default follows the affinity mask at most: under a CPU quota (`docker --cpus=8`) or a SLURM
allocation without CPU binding it starts a thread per core of the whole machine.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import torch

# The CPU quota of this process's cgroup (v2): "<quota> <period>" in microseconds, or "max".
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cpus() -> int:
    """The CPUs this process may use: those its affinity mask allows (all of the machine's
    where there is no such mask), capped by SLURM_CPUS_PER_TASK, by the cgroup's CPU quota
    (rounded up) and by an OMP_NUM_THREADS already in the environment."""
    # macOS and Windows have no affinity mask to read: the machine's CPUs.
    has_mask = hasattr(os, "sched_getaffinity")
    cpus = len(os.sched_getaffinity(0)) if has_mask else os.cpu_count() or 1
    caps = (
        _positive_int(os.environ.get("SLURM_CPUS_PER_TASK")),
        _cgroup_cpus(CGROUP_CPU_MAX),
        # OpenMP's nested form "4,2" gives the outer level first: that is torch's.
        _positive_int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0]),
    )
    return max(1, min([cpus, *(cap for cap in caps if cap is not None)]))


def resolve_threads(value: object) -> int:
    """The thread count that `trainer.threads` asks for: null or "auto" are
    `available_cpus()`, a positive integer is itself; anything else is a ValueError that
    names the key and the value."""
    if value is None or value == "auto":
        return available_cpus()
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ValueError(
        f"trainer.threads must be a positive integer, or null or auto for the CPUs this "
        f"process may use ({available_cpus()} here); got {value!r}"
    )


def apply_threads(threads: int) -> None:
    """Make torch use `threads` threads for its operators, and as many for its inter-op pool
    where that pool has not started yet."""
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        # The inter-op pool is sized once per process, when its first parallel work starts
        # (or an earlier run in this process sized it): then it keeps its size. foads's
        # operators run on the intra-op threads set above.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(threads)


def _cgroup_cpus(path: Path) -> int | None:
    """The CPUs that the cgroup v2 quota at `path` allows, rounded up; None where there is no
    quota (no such file, "max", or a line that is not "<quota> <period>")."""
    try:
        quota, period = path.read_text().split()[:2]
        cpus = int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):  # no file, "max", or malformed
        return None
    return max(1, math.ceil(cpus))


def _positive_int(text: str | None) -> int | None:
    """`text` as a positive integer; None where it is unset, empty or anything else."""
    try:
        value = int(text or "")
    except ValueError:
        return None
    return value if value > 0 else None
