"""The positive control (issue 10): on the learning profile, whose brands also have house colours
the tiny model can learn, the pipeline must find learning. The best checkpoint, chosen on
validation, beats the majority baseline on test with its 95% bootstrap interval above it, and the
tables mark it best. Where this fails, the machinery (training, evaluation, selection, tables) is
broken, whatever the default world shows."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

LEARNING = "configs/learning.yaml"


@pytest.fixture(scope="module")
def learnt(project_copy, profile_commands, run) -> dict:
    run(project_copy, profile_commands[LEARNING]["snakemake"])
    return {
        "metrics": json.loads((project_copy / "results/metrics.json").read_text()),
        "tables": (project_copy / "results/tables.md").read_text(),
    }


def test_the_best_checkpoint_beats_the_majority_baseline_with_its_interval_above_it(learnt):
    metrics = learnt["metrics"]
    selection = metrics["selection"]
    assert selection["verdict"] == "best", selection
    best = selection[selection["best"]]
    majority = metrics["baselines"]["majority"]["brand_accuracy"]
    assert best["brand_accuracy_ci_low"] > majority, (best, majority)
    assert best["epoch"] > 0


def test_the_tables_name_the_best_experiment(learnt):
    best = learnt["metrics"]["selection"]["best"]
    assert f"**Best**: `{best}` epoch" in learnt["tables"]
    assert "no learning" not in learnt["tables"].split("## 3.")[1].split("## 4.")[0].split("|---")[-1]


def test_the_world_has_house_colours_only_here(project_copy):
    assert "house_colour_rate: 0.0" in (project_copy / "params.yaml").read_text()
    assert "house_colour_rate: 1.0" in (project_copy / LEARNING).read_text()
