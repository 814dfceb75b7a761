"""The train stage on two processes for real: its entry script relaunches itself through torchrun
(gloo on the CPU, the Trainer's DDP) and matches the one-process run with the same effective batch.

    .venv/bin/python -m pytest tests/test_train_distributed.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml

from brandcap.model.training_log import read_step_metrics
from brandcap.running.resume_state import FINGERPRINT_FILE
from brandcap.stages.train import _prepare_run_state
from tests.conftest import delta_weights, run_tiny_training, train_params

THIS_RUN = {"inputs": {}, "params": "this run", "code": ""}
OTHER_RUN = {"inputs": {}, "params": "other params", "code": ""}

ROOT = Path(__file__).resolve().parents[1]


def _run_stage(workdir: Path, params, out: Path) -> subprocess.CompletedProcess:
    """The stage's own command line, as Snakemake and DVC run it."""
    params_file = out / "params.yaml"
    out.mkdir(parents=True, exist_ok=True)
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    command = [
        sys.executable,
        ROOT / "workflow/scripts/train.py",
        "--params",
        params_file,
        "--experiment",
        "freeze_llm",
        "--seed",
        "3",
        "--base",
        "base",
        "--train",
        "train.jsonl",
        "--general-train",
        "general_train.jsonl",  # read only with train.general_mix
        "--checkpoints",
        out / "checkpoints",
        "--train-log",
        out / "train",
        "--dvclive",
        out / "dvclive",
        "--resume",
        out / "resume",
        "--log",
        out / "train.log",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "CUDA_VISIBLE_DEVICES": ""}  # CPU processes, gloo
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.skipif(
    torch.cuda.is_available(), reason="compares CPU runs; on a GPU machine the in-process run would use CUDA"
)
def test_two_processes_match_one_process(workdir):
    # one process: 2 per device x accumulation 2; two processes: 2 per device x 1 each -> the same batches of 4
    one = run_tiny_training(workdir, "freeze_llm", train_params(), tag="-one-process")
    out = workdir / "run-freeze_llm-two-processes"
    # a stale resume state: discarded once, by rank 0 alone (removed twice, one rank would crash)
    (out / "resume" / "checkpoint-999").mkdir(parents=True)
    (out / "resume" / FINGERPRINT_FILE).write_text(json.dumps(OTHER_RUN))

    run = _run_stage(workdir, train_params(devices=2), out)
    assert run.returncode == 0, run.stderr[-3000:]

    log = (out / "train.log").read_text()
    assert "launching 2 process(es) on the CPU (gloo)" in log and "--nproc-per-node=2" in log
    assert log.count("saved checkpoint") == 2 and "[rank 1]" not in log
    assert run.stderr.count("discarding the resume state") == 1  # all ranks log to stderr
    summary = json.loads((out / "train" / "summary.json").read_text())
    assert (summary["devices"], summary["gradient_accumulation_steps"], summary["effective_batch_size"]) == (2, 1, 4)
    assert summary["distributed_backend"] == "gloo"
    assert not (out / "resume").exists()

    one_records, two_records = read_step_metrics(one["dvclive_dir"]), read_step_metrics(out / "dvclive")
    assert [r["step"] for r in two_records] == [r["step"] for r in one_records] == [1, 2, 3, 4]
    for a, b in zip(one_records, two_records):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5) and b["grad_norm"] == pytest.approx(
            a["grad_norm"], rel=1e-4
        )
    for epoch in (1, 2):
        single = delta_weights(one["checkpoints_dir"] / f"epoch-{epoch}")
        double = delta_weights(out / "checkpoints" / f"epoch-{epoch}")
        assert single.keys() == double.keys()
        assert all(torch.allclose(single[k], double[k], atol=1e-6) for k in single)


class FakeRank:
    """TrainingArguments as seen by one process: its index and the barrier of main_process_first."""

    def __init__(self, process_index: int):
        self.process_index, self.barriers = process_index, 0

    @contextmanager
    def main_process_first(self, local: bool, desc: str):
        yield
        self.barriers += 1


def test_only_rank_zero_touches_the_resume_state(tmp_path):
    resume = tmp_path / "resume"
    (resume / "checkpoint-999").mkdir(parents=True)
    (resume / FINGERPRINT_FILE).write_text(json.dumps(OTHER_RUN))
    rank1 = FakeRank(1)
    _prepare_run_state(rank1, resume, THIS_RUN, tmp_path / "checkpoints")
    assert rank1.barriers == 1 and (resume / "checkpoint-999").exists()
    assert json.loads((resume / FINGERPRINT_FILE).read_text()) == OTHER_RUN

    assert _prepare_run_state(FakeRank(0), resume, THIS_RUN, tmp_path / "checkpoints") is None
    assert not (resume / "checkpoint-999").exists()
    assert json.loads((resume / FINGERPRINT_FILE).read_text()) == THIS_RUN
