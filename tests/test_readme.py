"""Every profile command in the README's table runs as written (as a dry run here; the smoke
profile's commands run for real in test_pipeline.py) and plans exactly the profile's jobs."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from brandcap.config.profiles import resolve_params

ROOT = Path(__file__).resolve().parents[1]


def expected_jobs(profile: str) -> Counter:
    overlays = [] if profile == "params.yaml" else [ROOT / profile]
    train = resolve_params(ROOT / "params.yaml", overlays).train
    runs = len(train.experiments) * len(train.seeds)  # one training run per experiment and seed
    return Counter(
        {"train": runs, "evaluate": runs, "evaluate_base": 1, "tables": 1}
    )  # one evaluate job scores all of a run's checkpoints


def test_the_table_lists_every_profile(profile_commands):
    assert set(profile_commands) == {"params.yaml"} | {f"configs/{p.name}" for p in (ROOT / "configs").glob("*.yaml")}


@pytest.mark.parametrize("profile", ["params.yaml", "configs/smoke.yaml", "configs/seed004.yaml", "configs/seeds.yaml"])
def test_snakemake_command_plans_the_profiles_jobs(profile, profile_commands, project_copy, run):
    out = run(project_copy, profile_commands[profile]["snakemake"] + " --dry-run --forceall").stdout
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1].split("Reasons")[0], re.M))
    planned = Counter({rule: int(stats.get(rule, 0)) for rule in ("train", "evaluate", "evaluate_base", "tables")})
    assert planned == expected_jobs(profile)


@pytest.mark.parametrize("profile", ["params.yaml", "configs/smoke.yaml", "configs/seed004.yaml", "configs/seeds.yaml"])
def test_dvc_command_plans_the_profiles_jobs(profile, profile_commands, project_copy, run):
    command = profile_commands[profile]["dvc"]
    assert command.endswith("dvc repro")
    out = run(project_copy, command + " --dry --force").stdout
    stages = re.findall(r"Running stage '(\w+)(?:@[^']*)?'", out)
    planned = Counter({rule: stages.count(rule) for rule in ("train", "evaluate", "evaluate_base", "tables")})
    assert planned == expected_jobs(profile)
    run(project_copy, "git checkout -q params.yaml")
