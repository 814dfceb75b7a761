"""Which GPUs a job may use: its own, never another job's.

    ids = own_gpus(2)      # e.g. ['1', '3']; [] on a machine without GPUs

Snakemake only counts GPUs (`--resources gpu=4` runs jobs whose `gpu` resources add up to 4); it
does not say which ones a job gets. So a job claims its ids here, among the pool it can see:
CUDA_VISIBLE_DEVICES when set (a pool the user or a scheduler chose), else every GPU on the node.
A claim is an exclusive `flock` on one lock file per id under `.resume/gpus/<host>/`. The kernel
drops the lock when the last process holding it ends, so a crashed or killed job's GPUs are free
again at once, with no stale files to clean. The lock file descriptors are inheritable: a job that
replaces itself with torchrun (brandcap.running.launch) keeps its GPUs until torchrun exits.

Under SLURM the scheduler has already given the job its GPUs (CUDA_VISIBLE_DEVICES); they are used
as they are, without locks (a lock directory shared by every node would make jobs on different
nodes wait for each other's GPU 0).
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from pathlib import Path

from brandcap.running.resume_root import RESUME_ROOT

log = logging.getLogger(__name__)

GPU_LOCK_DIR = RESUME_ROOT / "gpus"


def gpu_pool() -> list[str]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES when set, else 0..count-1."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",")]
        # CUDA stops at the first invalid entry ('' or -1 hide every GPU)
        return ids[: next((i for i, v in enumerate(ids) if v in ("", "-1")), len(ids))]
    import torch

    # device_count asks NVML where it can, without initialising CUDA in this process
    return [str(i) for i in range(torch.cuda.device_count())]


def assigned_by_scheduler() -> bool:
    return "SLURM_JOB_ID" in os.environ and "CUDA_VISIBLE_DEVICES" in os.environ


def own_gpus(count: int, lock_dir: Path = GPU_LOCK_DIR, poll_s: float = 5.0) -> list[str]:
    """`count` GPU ids for this job (claimed until the process and its exec'd successors end); [] without GPUs."""
    pool = gpu_pool()
    if not pool:
        return []
    if len(pool) < count:
        raise ValueError(
            f"train.devices is {count} but only {len(pool)} GPU(s) are visible ({','.join(pool)}); "
            "lower train.devices or make more GPUs visible (CUDA_VISIBLE_DEVICES)"
        )
    if assigned_by_scheduler():
        return pool[:count]
    return claim_gpus(count, pool, lock_dir / socket.gethostname(), poll_s=poll_s)


def claim_gpus(
    count: int, pool: list[str], lock_dir: Path, poll_s: float = 5.0, timeout_s: float | None = None
) -> list[str]:
    """Lock `count` ids of `pool`, all or none; waits while other jobs hold them (TimeoutError after timeout_s)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    waiting_logged = False
    while True:
        held = _try_claim(count, pool, lock_dir)
        if held is not None:
            return held
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise TimeoutError(
                f"no {count} free GPU(s) among {pool} after {timeout_s:.0f} s ({_holders(pool, lock_dir)})"
            )
        if not waiting_logged:
            log.info("waiting for %d free GPU(s) among %s: %s", count, pool, _holders(pool, lock_dir))
            waiting_logged = True
        time.sleep(poll_s)


def _try_claim(count: int, pool: list[str], lock_dir: Path) -> list[str] | None:
    fds: list[tuple[str, int]] = []
    for gpu in pool:
        fd = os.open(_lock_path(lock_dir, gpu), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        fds.append((gpu, fd))
        if len(fds) == count:
            break
    if len(fds) < count:
        for _, fd in fds:
            os.close(fd)  # closing the only descriptor releases the lock
        return None
    for _, fd in fds:
        os.set_inheritable(fd, True)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
    return [gpu for gpu, _ in fds]


def _lock_path(lock_dir: Path, gpu: str) -> Path:
    return lock_dir / f"gpu-{gpu.replace('/', '_')}.lock"


def _holders(pool: list[str], lock_dir: Path) -> str:
    def holder(gpu: str) -> str:
        with open(_lock_path(lock_dir, gpu), "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return "free"
            except BlockingIOError:
                f.seek(0)
                return f.read().strip() or "held"

    return "; ".join(f"GPU {gpu}: {holder(gpu)}" for gpu in pool)
