"""Runs that share the cores: importing foads makes OpenMP's idle threads sleep rather than
spin (docs/results.md, "Runs that share a machine"), unless the environment says otherwise."""

import os
import subprocess
import sys


def _policy(env: dict) -> str:
    code = "import foads, os; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_foads_sets_a_passive_wait_policy_and_keeps_one_already_set():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert _policy(env) == "PASSIVE"
    assert _policy({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
