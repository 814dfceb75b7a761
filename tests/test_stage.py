"""The stage runner's CPU threads: the same under Snakemake (which sets OMP_NUM_THREADS) and DVC (which does not)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = "import torch; from brandcap.running.stage import pin_cpu_threads; n = pin_cpu_threads(); print(n, torch.get_num_threads())"


def threads_with(env_value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if env_value is not None:
        env["OMP_NUM_THREADS"] = env_value
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)


def test_without_omp_num_threads_torch_runs_one_thread_as_under_snakemake():
    # torch, imported before the runner pins, would otherwise use every core (DVC sets nothing)
    assert threads_with(None).stdout.split() == ["1", "1"]


def test_omp_num_threads_is_followed():
    assert threads_with("2").stdout.split() == ["2", "2"]


def test_a_bad_thread_count_is_a_clear_error():
    run = threads_with("many")
    assert run.returncode != 0 and "OMP_NUM_THREADS='many'" in run.stderr
