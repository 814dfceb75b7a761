"""Launching a stage on its own devices: the GPU claims (a fake pool of ids, real locks and real
processes), the launch decision, exec with the claimed GPUs, torchrun jobs side by side, rank-0 logs.

    .venv/bin/python -m pytest tests/test_launch.py -q
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from brandcap.running.gpus import claim_gpus, gpu_pool, own_gpus
from brandcap.running.launch import LAUNCHED_ENV, check_process_count, launch_command, threads_per_process
from brandcap.running.stage import setup_logging

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
HOLD = "import sys; sys.stdin.read()"  # a holder keeps its claim until the test closes its stdin


def _env(**extra):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", LAUNCHED_ENV, "LOCAL_RANK", "RANK", "WORLD_SIZE")
    }
    return {**env, "PYTHONPATH": f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}", **extra}


def _start(code: str, cwd: Path, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=_env(**env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _holder(lock_dir: Path, count: int, pool: list[str]) -> tuple[subprocess.Popen, list[str]]:
    """A process that claims `count` of `pool` and holds them; (process, its ids)."""
    claim = f"claim_gpus({count}, {pool!r}, Path({str(lock_dir)!r}), poll_s=0.05, timeout_s=20)"
    proc = _start(
        f"from pathlib import Path; from brandcap.running.gpus import claim_gpus; print(','.join({claim}), flush=True); {HOLD}",
        lock_dir.parent,
    )
    return proc, proc.stdout.readline().strip().split(",")


def _release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=20)


# --------------------------------------------------------------------------- the pool and the claims
def test_pool_is_cuda_visible_devices_when_set(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert gpu_pool() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,-1,2")  # CUDA stops at the first invalid id
    assert gpu_pool() == ["1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_pool() == [] and own_gpus(4) == []  # no GPUs: the CPU, nothing claimed


def test_two_jobs_at_once_get_disjoint_gpus_and_a_third_waits(tmp_path):
    pool = ["0", "1", "2", "3"]
    first, first_ids = _holder(tmp_path / "gpus", 2, pool)
    second, second_ids = _holder(tmp_path / "gpus", 2, pool)
    try:
        assert len(first_ids) == len(second_ids) == 2
        assert sorted(first_ids + second_ids) == pool
        with pytest.raises(TimeoutError, match=rf"no 1 free GPU\(s\).*GPU 0: pid {first.pid}"):
            claim_gpus(1, pool, tmp_path / "gpus", poll_s=0.05, timeout_s=0.2)
    finally:
        _release(first)
    assert sorted(claim_gpus(2, pool, tmp_path / "gpus", poll_s=0.05, timeout_s=5)) == sorted(first_ids)
    _release(second)


def test_a_killed_holders_gpus_are_claimed_again(tmp_path):
    holder, ids = _holder(tmp_path / "gpus", 1, ["0"])
    assert ids == ["0"]
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=20)
    assert claim_gpus(1, ["0"], tmp_path / "gpus", poll_s=0.05, timeout_s=5) == ["0"]


def test_scheduler_assigned_gpus_are_used_without_locks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert own_gpus(2) == ["5", "7"]
    assert not (tmp_path / ".resume").exists()
    with pytest.raises(ValueError, match=r"train.devices is 3 but only 2 GPU\(s\) are visible \(5,7\)"):
        own_gpus(3)


# --------------------------------------------------------------------------- the launch
def test_launch_command_by_devices_and_deepspeed():
    argv = ["workflow/scripts/train.py", "--params", "p.yaml", "--log", "l.log"]
    assert launch_command(1, False, [], argv, "r.torchrun") is None  # CPU, one process: run here
    assert launch_command(1, False, ["3"], argv, "r.torchrun") == [
        sys.executable,
        *argv,
    ]  # a fresh process that sees only GPU 3
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    own_files = "--log-dir=.resume/train/x/seed-1.torchrun"
    # '--' keeps the stage's own options (--log) away from torchrun's parser
    assert launch_command(4, False, ["0", "1", "2", "3"], argv, ".resume/train/x/seed-1.torchrun") == [
        *torchrun,
        "--nproc-per-node=4",
        own_files,
        "--",
        *argv,
    ]
    assert launch_command(1, True, [], argv, ".resume/train/x/seed-1.torchrun") == [
        *torchrun,
        "--nproc-per-node=1",
        own_files,
        "--",
        *argv,
    ]  # DeepSpeed needs the distributed env


JOB = """
    import os, sys
    from brandcap.running.launch import launch_stage
    launch_stage({devices}, distributed=False, resume_dir=".resume/job")
    print(os.environ["CUDA_VISIBLE_DEVICES"], os.environ["{marker}"], os.getpid(), flush=True)
    sys.stdin.read()
"""


def test_jobs_run_again_on_their_own_gpus(tmp_path):
    """Two one-GPU jobs from a pool of two: each one's process is replaced by one that sees only its GPU."""
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(JOB.format(devices=1, marker=LAUNCHED_ENV)))
    jobs = [
        subprocess.Popen(
            [sys.executable, script],
            cwd=tmp_path,
            env=_env(CUDA_VISIBLE_DEVICES="0,1"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        seen = [job.stdout.readline().split() for job in jobs]
        assert sorted(gpu for gpu, _, _ in seen) == ["0", "1"]
        assert all(
            marker == "1" and int(pid) == job.pid for (_, marker, pid), job in zip(seen, jobs)
        )  # exec: same process
        assert sorted(p.name for p in (tmp_path / ".resume" / "gpus").glob("*/*.lock")) == ["gpu-0.lock", "gpu-1.lock"]
        # the claims outlived the exec: no GPU is free while the jobs run
        with pytest.raises(TimeoutError):
            claim_gpus(1, ["0", "1"], tmp_path / ".resume" / "gpus" / socket.gethostname(), poll_s=0.05, timeout_s=0.2)
    finally:
        for job in jobs:
            _release(job)


TORCHRUN_JOB = """
    import os, sys
    from brandcap.running.launch import launch_stage
    launch_stage(2, distributed=False, resume_dir=sys.argv[1])
    import torch, torch.distributed as dist
    dist.init_process_group("gloo")
    total = torch.tensor([dist.get_rank() + 1.0])
    dist.all_reduce(total)
    line = f"rank {dist.get_rank()} of {dist.get_world_size()} sum {total.item():.0f} threads {torch.get_num_threads()} port {os.environ['MASTER_PORT']}\\n"
    os.write(1, line.encode())  # one write: both ranks share the pipe, print() could interleave them
    dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_torchrun_jobs_on_one_node_do_not_collide(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(TORCHRUN_JOB))
    system_temp = tmp_path / "system-temp"  # torchrun's default place for its files, which it leaves behind
    system_temp.mkdir()
    # each job was given two threads (Snakemake: threads = train.devices): one per process
    jobs = [
        subprocess.Popen(
            [sys.executable, script, f".resume/train/job-{i}"],
            cwd=tmp_path,
            env=_env(OMP_NUM_THREADS="2", TMPDIR=str(system_temp)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [job.communicate(timeout=120) for job in jobs]
    for job, (out, err) in zip(jobs, outputs):
        assert job.returncode == 0, err[-2000:]
        assert sorted(line.split(" port ")[0] for line in out.splitlines()) == [
            "rank 0 of 2 sum 3 threads 1",
            "rank 1 of 2 sum 3 threads 1",
        ]
    assert list(system_temp.iterdir()) == []  # nothing written outside the resume root
    assert sorted(p.name for p in (tmp_path / ".resume/train").iterdir()) == ["job-0.torchrun", "job-1.torchrun"]
    ports = [{line.split(" port ")[1] for line in out.splitlines()} for out, _ in outputs]
    assert all(len(p) == 1 for p in ports) and ports[0] != ports[1]


def test_a_jobs_threads_are_shared_among_its_processes(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads_per_process(2) == 1  # DVC sets nothing: one thread each, as in one process
    for job_threads, devices, each in [("2", 2, 1), ("8", 2, 4), ("1", 4, 1), ("3", 2, 1)]:
        monkeypatch.setenv("OMP_NUM_THREADS", job_threads)
        assert threads_per_process(devices) == each


def test_a_run_with_the_wrong_process_count_fails(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="train.devices is 1 but this run has 2 process"):
        check_process_count(1)
    check_process_count(2)


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers, root.level = handlers, level


def test_only_rank_zero_writes_the_stage_log(tmp_path, monkeypatch, restore_logging):
    log_file = tmp_path / "train.log"
    log_file.write_text("launching 2 process(es)\n")
    monkeypatch.setenv(LAUNCHED_ENV, "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    setup_logging(log_file)
    logging.getLogger("brandcap").info("from rank 1")
    monkeypatch.setenv("RANK", "0")
    setup_logging(log_file)
    logging.getLogger("brandcap").info("from rank 0")
    for handler in logging.getLogger().handlers:
        handler.flush()
    lines = log_file.read_text().splitlines()
    assert lines[0] == "launching 2 process(es)"  # the launcher's lines are kept
    assert len(lines) == 2 and lines[1].endswith("[rank 0] brandcap: from rank 0")


def test_train_rule_declares_one_gpu_per_device(tmp_path):
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    profile = tmp_path / "four_gpus.yaml"
    profile.write_text("train: {devices: 4, per_device_batch_size: 3}\n")
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            snakefile=ROOT / "Snakefile",
            workdir=ROOT,
            config_settings=ConfigSettings(configfiles=[profile]),
        )
        assert workflow._workflow.get_rule("train").resources["gpu"] == 4
