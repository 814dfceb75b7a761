"""Launching a stage on its own devices: here in one process, or again through torchrun.

    python workflow/scripts/train.py --params params.yaml --experiment freeze_llm ...   # whatever train.devices is

The orchestrators always run the same command line; the entry script calls `launch_stage` once the
params are valid, and it decides:
- it claims the job's GPUs (brandcap.running.gpus) and passes them on as CUDA_VISIBLE_DEVICES;
- with more than one process (train.devices > 1), or with DeepSpeed (which needs the distributed
  environment even on one device), it replaces this process with
  `python -m torch.distributed.run --standalone --nproc-per-node N <the same command line>`.
  `--standalone` binds the rendezvous store to a port the OS picks (localhost:0) and the workers
  share it, so two jobs on one node never collide. Without CUDA the Trainer's processes use gloo;
- with GPUs and one process, it replaces this process with the same command line, so CUDA starts
  in a fresh process that sees only the claimed GPU;
- on a CPU with one process it returns and the stage runs here, as before.
The replacing process carries LAUNCHED_ENV, so it runs the stage instead of launching again (as
does a process started by a hand-typed torchrun).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from brandcap.running.gpus import own_gpus

log = logging.getLogger(__name__)

LAUNCHED_ENV = "BRANDCAP_LAUNCHED"


def already_launched() -> bool:
    return LAUNCHED_ENV in os.environ or "LOCAL_RANK" in os.environ


def process_count() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def launch_command(
    devices: int, distributed: bool, gpus: Sequence[str], argv: Sequence[str], log_dir: str | Path
) -> list[str] | None:
    """The command that runs the stage in its own processes, or None to run it in this one. torchrun keeps its
    per-rank error files under `log_dir` (without --log-dir it makes a torchelastic_* folder in the system's
    temporary directory for every run and leaves it there)."""
    if devices > 1 or distributed:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={devices}",
            f"--log-dir={log_dir}",
            "--",
            *argv,
        ]
    if gpus:
        return [sys.executable, *argv]
    return None


def threads_per_process(devices: int) -> int:
    """CPU threads of each of a job's `devices` processes: the job's own (OMP_NUM_THREADS: Snakemake sets it to
    the job's `threads`, which is train.devices for a train job; 1 when unset, as under DVC) shared among
    them, at least one. So N processes use the cores the job was given, not N times as many, and each runs
    one thread as the same study does under DVC (other thread counts would round sums differently)."""
    return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")) // devices)


def launch_stage(devices: int, distributed: bool, resume_dir: str | Path, argv: Sequence[str] | None = None) -> None:
    """Return in the process that runs the stage; otherwise replace this process with the launch (see above).
    torchrun's own files go beside the stage's resume folder, in <resume_dir>.torchrun: under the resume root,
    and not inside the folder, which the stage clears when its state is stale."""
    if already_launched():
        return
    gpus = own_gpus(devices)
    command = launch_command(
        devices, distributed, gpus, list(argv if argv is not None else sys.argv), f"{resume_dir}.torchrun"
    )
    if command is None:
        return
    env = {**os.environ, LAUNCHED_ENV: "1", "OMP_NUM_THREADS": str(threads_per_process(devices))}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    log.info(
        "launching %d process(es) on %s: %s",
        devices,
        f"GPU(s) {','.join(gpus)}" if gpus else "the CPU (gloo)",
        shlex.join(command),
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.execve(command[0], command, env)


def check_process_count(devices: int) -> None:
    """The run has train.devices processes (a stage started without its launcher, or by torchrun with another count, has not)."""
    if process_count() != devices:
        raise RuntimeError(
            f"train.devices is {devices} but this run has {process_count()} process(es); run the stage through "
            f"its entry script (workflow/scripts/train.py launches torchrun itself) or set train.devices to {process_count()}"
        )
