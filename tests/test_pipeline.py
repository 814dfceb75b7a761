"""The whole DAG, run as a user would, on the smoke profile in a temporary git repository, with
the README's command as written: Snakemake builds everything (the session's shared smoke build,
tests/conftest.py) and writes nothing into the system temp dir; a second run has nothing to do; a
new seed plans only its own runs. What changes the build runs on copies of it, side by side:
an upstream change under Snakemake (test_pipeline_rerun.py), DVC adopting the build, checkout,
repro and `dvc exp run` (test_pipeline_dvc.py)."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import SMOKE, nothing_to_do

pytestmark = pytest.mark.slow


def test_snakemake_builds_the_tables(smoke_build):
    built = smoke_build
    tables = (built / "results/tables.md").read_text()
    for section in ("funnel", "brand accuracy", "per-brand"):
        assert section in tables.lower(), section
    metrics = json.loads((built / "results/metrics.json").read_text())
    assert set(metrics) >= {"base", "freeze_llm", "lora"} and "freeze_vision" not in metrics
    assert {"epoch-1", "epoch-2"} <= set(metrics["freeze_llm"])
    assert (
        (built / "results/dvclive/lora/seed-4/plots/metrics/training/loss.tsv").read_text().startswith("step\tloss\n")
    )
    for png in ("brand_accuracy.png", "train_loss.png"):
        assert (built / "results/plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "stage tables: done" in (built / "logs/tables.log").read_text()
    assert "stage tables: start (params params.yaml + configs/smoke.yaml)" in (built / "logs/tables.log").read_text()


def test_the_build_writes_nothing_into_the_system_temp_dir(smoke_build, smoke_system_temp):
    built = smoke_build
    assert (
        sorted(p.name for p in smoke_system_temp.iterdir()) == []
    )  # e.g. torch's torchinductor_<user> (brandcap.running.stage)
    assert (built / ".resume/torch").is_dir()


def test_second_snakemake_run_has_nothing_to_do(smoke_build, run):
    assert nothing_to_do(smoke_build, run, "--configfile", SMOKE)


def planned_runs(out: str, rule: str) -> set[tuple[str, str]]:
    """(exp, seed) of each planned job of `rule` in a dry run's output."""
    blocks = re.split(r"\n\s*\n", out)
    return {
        tuple(m.groups())
        for block in blocks
        if re.search(rf"^(?:local)?rule {rule}:", block, re.M)
        for m in [re.search(r"wildcards: exp=(\w+), seed=(\d+)", block)]
        if m
    }


def test_adding_a_seed_plans_only_the_new_seeds_runs(smoke_build, run, tmp_path):
    """A training run reads its own experiment entry, not the seed list or the other experiments."""
    more_seeds = tmp_path / "two-seeds.yaml"
    more_seeds.write_text("train: {seeds: [4, 5]}\n")
    out = run(
        smoke_build,
        ["snakemake", "--cores", "1", "--dry-run", "results/tables.md", "--configfile", SMOKE, str(more_seeds)],
    )
    planned = out.stdout + out.stderr
    assert planned_runs(planned, "train") == {("freeze_llm", "5"), ("lora", "5")}, planned[-3000:]
    assert planned_runs(planned, "evaluate") == {("freeze_llm", "5"), ("lora", "5")}
