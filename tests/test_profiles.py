"""Profiles are short overlays of params.yaml, resolved the same way by Snakemake, DVC and every stage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from brandcap.config.params import Params, ParamsError
from brandcap.config.profiles import overlay_params, resolve_params, write_profile

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROFILES = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))


def test_sections_merge_and_free_form_mappings_are_replaced():
    base = Params().model_dump(mode="json")
    top = {
        "train": {"epochs": 3, "save_epochs": [3], "experiments": {"only": {"strategy": "lora"}}},
        "caption": {"extra_body": {"repetition_penalty": 1.05}},
    }
    merged = overlay_params(base, top)
    assert list(merged["train"]["experiments"]) == ["only"]
    assert merged["train"]["learning_rate"] == base["train"]["learning_rate"]  # untouched keys stay
    assert merged["caption"]["extra_body"] == {"repetition_penalty": 1.05}
    assert merged["caption"]["model"] == base["caption"]["model"]
    assert base["train"]["epochs"] != 3  # the base is not modified in place


@pytest.mark.parametrize("name", PROFILES)
def test_profiles_are_short_overlays_that_resolve(name):
    raw = yaml.safe_load((ROOT / "configs" / name).read_text())
    defaults = Params().model_dump(mode="json")
    for section, values in raw.items():
        assert values != defaults[section], f"configs/{name}: section {section} repeats the defaults"
    params = resolve_params(ROOT / "params.yaml", [ROOT / "configs" / name])
    # a profile's experiment list replaces the defaults' whole; without one (configs/seeds.yaml) the defaults' run
    assert set(params.train.experiments) == set(raw["train"].get("experiments", defaults["train"]["experiments"]))


def test_a_partial_profile_keeps_the_base_files_values(tmp_path):
    """What is not in the overlay comes from params.yaml as the user has it, not from schema defaults."""
    base = tmp_path / "params.yaml"
    base.write_text(yaml.safe_dump({"seed": 11, "train": {"learning_rate": 0.01}}))
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"train": {"epochs": 4, "save_epochs": [4]}}))
    params = resolve_params(base, [overlay])
    assert (params.seed, params.train.learning_rate, params.train.epochs) == (11, 0.01, 4)


def test_an_overlay_with_a_bad_key_names_both_files(tmp_path):
    overlay = tmp_path / "typo.yaml"
    overlay.write_text("train:\n  lerning_rate: 0.1\n")
    with pytest.raises(ParamsError, match=r"params.yaml \+ .*typo.yaml: train.lerning_rate: unknown key"):
        resolve_params(ROOT / "params.yaml", [overlay])


def test_brandcap_profile_writes_defaults_plus_overlay(tmp_path):
    out = tmp_path / "params.yaml"
    written = write_profile([ROOT / "configs/smoke.yaml"], out)
    assert written == resolve_params(ROOT / "params.yaml", [ROOT / "configs/smoke.yaml"])
    assert resolve_params(out) == written
    assert "overlaid by" in out.read_text().splitlines()[0]


def snakemake_config(*configfiles: str) -> dict:
    """The configuration Snakemake records for its jobs (rule params come from it)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            snakefile=ROOT / "Snakefile",
            workdir=ROOT,
            config_settings=ConfigSettings(configfiles=[ROOT / c for c in configfiles]),
        )
        return dict(wf._workflow.config)


@pytest.mark.parametrize("name", PROFILES)
def test_snakemake_records_exactly_what_the_stages_resolve(name):
    recorded = snakemake_config(f"configs/{name}")
    assert recorded == resolve_params(ROOT / "params.yaml", [ROOT / "configs" / name]).model_dump(mode="json")


def test_snakemake_config_overrides_are_refused():
    run = subprocess.run(
        [BIN / "snakemake", "-n", "--cores", "1", "results/tables.md", "--config", "seed=5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert "--config is not passed on to the stages" in run.stdout + run.stderr


def test_a_second_configfile_flag_is_refused_rather_than_dropping_the_first(tmp_path):
    """Snakemake keeps only the last --configfile flag; stacked profiles go after one flag, as the error says."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("caption: {mode: batch}\n")
    smk = [BIN / "snakemake", "-n", "--cores", "1", "results/tables.md"]
    twice = subprocess.run(
        [*smk, "--configfile", "configs/smoke.yaml", "--configfile", mine], cwd=ROOT, capture_output=True, text=True
    )
    assert twice.returncode != 0
    assert "--configfile is given more than once" in twice.stdout + twice.stderr
    once = subprocess.run([*smk, "--configfile", "configs/smoke.yaml", mine], cwd=ROOT, capture_output=True, text=True)
    assert once.returncode == 0, once.stderr
