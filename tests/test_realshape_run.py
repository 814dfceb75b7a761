"""The real-shaped profile end to end, with the README's command as written: real brand-name
shapes, `N.A.` values, unsafe ids, tiled portrait/landscape photos, the simulated endpoint on
loopback and a randomly initialised InternVL with 448 px tiles, from catalog to tables."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROFILE = "configs/realshape.yaml"
# .dvc/tmp/: DVC's own lock, which a Snakemake run holds so that dvc repro cannot delete its inputs (brandcap.running.project_lock)
DECLARED = ("data/", "results/", "models/", "logs/", ".snakemake/", ".resume/", ".dvc/tmp/")


@pytest.fixture(scope="module")
def built(project_copy, profile_commands, run) -> Path:
    run(project_copy, profile_commands[PROFILE]["snakemake"])
    return project_copy


def test_real_brand_names_survive_cleaning(built):
    report = json.loads((built / "data/processed/clean_report.json").read_text())
    assert {"A.P.C.", "Off-White™", "(di)vision", "Saint Laurent", "Laurent"} <= set(report["brands_kept"])
    assert report["removed"]["no_brand"] < 0.1 * report["input"]  # the simulator drops the brand in ~4%


def test_images_were_tiled_and_the_model_trained_and_evaluated(built):
    processor = json.loads((built / "models/base/processor_config.json").read_text())
    image_processor = processor.get("image_processor", processor)
    assert image_processor["crop_to_patches"] is True and image_processor["max_patches"] == 2
    assert (built / "results/checkpoints/freeze_llm/seed-4/epoch-1").is_dir()
    metrics = json.loads((built / "results/metrics.json").read_text())
    assert "freeze_llm" in metrics and "base" in metrics
    assert "brand acc" in (built / "results/tables.md").read_text()


def test_unsafe_ids_stay_inside_the_images_folder(built):
    names = [p.name for p in (built / "data/raw/images").iterdir() if p.name != ".snakemake_timestamp"]
    assert names and all(re.fullmatch(r"[A-Za-z0-9._-]+\.png", n) for n in names)


def test_nothing_is_written_outside_the_declared_folders(built):
    untracked = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--ignored"],
        cwd=built,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    stray = [line[3:] for line in untracked if not line[3:].startswith(DECLARED) and "__pycache__" not in line]
    assert stray == []
