"""The whole DAG, run as a user would, on the smoke profile in a temporary git repository:
Snakemake builds everything; a second run and a run after `dvc checkout` have nothing to do;
DVC reproduces the data stages bit for bit; `dvc exp run -S` + `dvc exp show` compare a variant."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def sh(repo: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", HF_HUB_OFFLINE="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    run = subprocess.run(list(cmd), cwd=repo, env=env, capture_output=True, text=True)
    if check and run.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({run.returncode}):\n{run.stdout[-4000:]}\n{run.stderr[-6000:]}")
    return run


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A git clone of the working tree (tracked and untracked-but-not-ignored files), smoke profile as params.yaml."""
    repo = tmp_path_factory.mktemp("brandcap")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    shutil.copy(ROOT / "configs/smoke.yaml", repo / "params.yaml")
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "smoke")
    return repo


@pytest.fixture(scope="module")
def built(repo) -> Path:
    sh(repo, "snakemake", "--cores", "1", "results/tables.md")
    return repo


def test_snakemake_builds_the_tables(built):
    tables = (built / "results/tables.md").read_text()
    for section in ("funnel", "brand accuracy", "per-brand"):
        assert section in tables.lower(), section
    metrics = json.loads((built / "results/metrics.json").read_text())
    assert "base" in metrics and "freeze_llm" in metrics
    assert {"epoch-1", "epoch-2"} <= set(metrics["freeze_llm"])
    for png in ("brand_accuracy.png", "train_loss.png"):
        assert (built / "results/plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Stage logs are written where the rules say.
    assert "stage tables: done" in (built / "logs/tables.log").read_text()


def test_second_snakemake_run_has_nothing_to_do(built):
    run = sh(built, "snakemake", "--cores", "1", "--dry-run", "results/tables.md")
    assert "Nothing to be done" in run.stdout + run.stderr


def test_snakemake_has_nothing_to_do_after_dvc_checkout(built):
    sh(built, "dvc", "commit", "--force", "--quiet")
    shutil.rmtree(built / "data/processed")
    shutil.rmtree(built / "results/eval/base")
    sh(built, "dvc", "checkout", "--quiet")
    assert (built / "data/processed/train.jsonl").exists()
    run = sh(built, "snakemake", "--cores", "1", "--dry-run", "results/tables.md")
    assert "Nothing to be done" in run.stdout + run.stderr


def test_dvc_reproduces_the_data_stages_bit_for_bit(built):
    sh(built, "dvc", "commit", "--force", "--quiet")
    before = (built / "dvc.lock").read_text()
    sh(built, "dvc", "repro", "--force", "--single-item", "catalog", "general_set", "download", "caption", "clean")
    assert (built / "dvc.lock").read_text() == before
    status = sh(built, "dvc", "status", "--json")
    assert json.loads(status.stdout or "{}") == {}


def test_dvc_exp_run_and_show_compare_a_variant(built):
    sh(built, "dvc", "commit", "--force", "--quiet")
    sh(built, "git", "add", "-A")
    sh(built, "git", "commit", "-qm", "baseline results")
    sh(built, "dvc", "exp", "run", "-S", "train.learning_rate=0.004", "--name", "lr-high")
    shown = json.loads(sh(built, "dvc", "exp", "show", "--json").stdout)
    text = json.dumps(shown)
    assert "lr-high" in text
    table = sh(built, "dvc", "exp", "show", "--md").stdout
    assert "train.learning_rate" in table and "0.004" in table
    assert "freeze_llm.epoch-2.brand_accuracy" in table or "epoch-2.brand_accuracy" in table
