"""Snakemake and DVC never run stages of one project at once: the second is refused at once,
naming the running stage and its pid; a dead run's entry is forgotten."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brandcap.running.project_lock import Orchestrator, ProjectBusy, busy_reason, claim, release, stage_lock

HOLDER = """
import sys, time
from brandcap.running.project_lock import stage_lock
with stage_lock(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def fake_dvc(tmp_path):
    """A process whose command line is `dvc`, running a stage that holds the project lock."""
    started = []

    def start(cwd: Path, stage: str = "train[lora]") -> subprocess.Popen:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "holder.py").write_text(HOLDER)
        dvc = bin_dir / "dvc"
        dvc.write_text(
            f"#!{sys.executable}\nimport subprocess, sys\n"
            f"subprocess.run([sys.executable, {str(bin_dir / 'holder.py')!r}, {stage!r}])\n"
        )
        dvc.chmod(0o755)
        proc = subprocess.Popen([str(dvc)], cwd=cwd, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert proc.stdout.readline().strip() == "holding"
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_another_orchestrator_is_refused_with_the_running_stage(tmp_path, monkeypatch, fake_dvc):
    monkeypatch.chdir(tmp_path)
    dvc = fake_dvc(tmp_path)
    snakemake = Orchestrator("snakemake", os.getpid(), socket.gethostname())
    reason = busy_reason(snakemake)
    assert reason and f"dvc (pid {dvc.pid}" in reason and "stage train[lora] (pid " in reason
    with pytest.raises(ProjectBusy, match=r"stage train\[lora\]"):
        claim(None, snakemake)
    with pytest.raises(ProjectBusy):  # a stage started by hand is refused too
        with stage_lock("clean"):
            pass
    os.killpg(dvc.pid, signal.SIGKILL)
    dvc.wait()
    time.sleep(0.1)
    assert busy_reason(snakemake) is None  # a killed run no longer holds the project
    me = claim(None, snakemake)
    release(me, stage=False)


def test_runs_of_the_same_orchestrator_do_not_conflict(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    snakemake = Orchestrator("snakemake", os.getpid(), socket.gethostname())
    claim(None, snakemake)
    claim("train[lora]", snakemake)
    assert busy_reason(Orchestrator("snakemake", os.getppid(), socket.gethostname())) is None
    assert "snakemake (pid" in busy_reason(Orchestrator("dvc", os.getppid(), socket.gethostname()))
    release(snakemake, stage=False)
    assert busy_reason(Orchestrator("dvc", os.getppid(), socket.gethostname())) is None


def test_snakemake_refuses_to_start_during_a_dvc_run(project_copy, fake_dvc, run):
    dvc = fake_dvc(project_copy, "evaluate@lora-2")
    out = run(project_copy, "snakemake --cores 1 results/tables.md", check=False)
    assert out.returncode != 0
    assert f"dvc (pid {dvc.pid}" in out.stdout + out.stderr and "evaluate@lora-2" in out.stdout + out.stderr


def test_snakemake_refuses_to_start_while_a_dvc_command_holds_dvc_s_lock(project_copy, run):
    import zc.lockfile

    (project_copy / ".dvc/tmp").mkdir(parents=True, exist_ok=True)
    held = zc.lockfile.LockFile(str(project_copy / ".dvc/tmp/lock"))  # as `dvc repro` holds it for its whole run
    try:
        out = run(project_copy, "snakemake --cores 1 data/raw/catalog.parquet", check=False)
    finally:
        held.close()
    assert out.returncode != 0 and "a DVC command is running in this project" in out.stdout + out.stderr
    assert not (project_copy / "data/raw/catalog.parquet").exists()
    assert (
        busy_reason(Orchestrator("dvc", os.getpid(), socket.gethostname()), project_copy / ".resume/project.lock")
        is None
    )


def test_dvc_repro_during_a_snakemake_run_deletes_nothing_and_the_run_succeeds(project_copy, run):
    """DVC removes a stage's outputs before its command runs; it must be refused before that."""
    from tests.conftest import BIN, run_in

    (project_copy / "configs/slow_captions.yaml").write_text("caption: {simulator: {latency_s: 0.5}}\n")
    command = (
        "snakemake --cores 2 data/interim/captions.jsonl --configfile configs/smoke.yaml configs/slow_captions.yaml"
    )
    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(project_copy / "src"),
    )
    snakemake = subprocess.Popen(
        command, cwd=project_copy, shell=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 240
        while not (project_copy / "logs/caption.log").exists():  # catalog and download done, captioning under way
            assert snakemake.poll() is None and time.monotonic() < deadline, (
                snakemake.stdout.read() if snakemake.poll() is not None else "timeout"
            )
            time.sleep(0.2)
        before = sorted(p.relative_to(project_copy) for p in (project_copy / "data/raw").rglob("*"))
        dvc = run_in(project_copy, "dvc repro", check=False)
        assert dvc.returncode != 0 and "Unable to acquire lock" in dvc.stdout + dvc.stderr
        assert (
            sorted(p.relative_to(project_copy) for p in (project_copy / "data/raw").rglob("*")) == before
        )  # nothing deleted
        output, _ = snakemake.communicate(timeout=300)
    finally:
        if snakemake.poll() is None:
            snakemake.kill()
    assert snakemake.returncode == 0, output[-3000:]
    assert (project_copy / "data/interim/captions.jsonl").stat().st_size > 0 and (
        project_copy / "data/raw/catalog.parquet"
    ).exists()
