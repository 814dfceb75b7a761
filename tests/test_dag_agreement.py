"""Snakemake's rules and dvc.yaml must describe the same DAG: stage names, commands, dependencies,
outputs and params sections. Any drift between the two orchestrators fails here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from brandcap.config.params import EXTERNAL_DATA_DIR
from brandcap.sim.standin import STANDIN_DIR

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake_jobs() -> dict[str, dict]:
    """Every job of a forced dry run: name (DVC-style address) -> cmd, inputs, outputs."""
    run = subprocess.run(
        [BIN / "snakemake", "--dry-run", "--forceall", "--cores", "1", "--printshellcmds", "results/tables.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return planned_snakemake_jobs(run.stdout)


def planned_snakemake_jobs(dry_run: str) -> dict[str, dict]:
    """The jobs in the output of `snakemake --dry-run --printshellcmds`, named as DVC addresses them
    (rule@wildcard-values)."""
    jobs: dict[str, dict] = {}
    for block in dry_run.split("\n\n"):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if not rule:
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
        wildcards = dict(kv.split("=", 1) for kv in fields.get("wildcards", "").split(", ") if kv)
        name = rule.group(1) + ("@" + "-".join(wildcards.values()) if wildcards else "")
        cmd = re.search(r"^Shell command: (.*)$", block, re.M)
        if rule.group(1) == "all":
            continue
        jobs[name] = {
            "rule": rule.group(1),
            "cmd": cmd.group(1).strip() if cmd else None,
            "deps": set(fields.get("input", "").split(", ")) - {""},
            "outs": set(fields.get("output", "").split(", ")) - {""},
            "priority": float(fields.get("priority", 0)),
            "threads": int(fields.get("threads", 1)),
        }
    return jobs


def snakemake_params() -> dict[str, list[str]]:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=ROOT / "Snakefile", workdir=ROOT)
        # A rule param named `train__instruction` stands for DVC's `train.instruction`.
        return {rule.name: sorted(k.replace("__", ".") for k in rule.params.keys()) for rule in wf._workflow.rules}


def dvc_stages() -> dict[str, dict]:
    from dvc.repo import Repo

    stages = {}
    with Repo(str(ROOT)) as repo:
        for stage in repo.index.stages:
            params = sorted(k for dep in stage.deps if hasattr(dep, "params") for k in dep.params)
            stages[stage.addressing] = {
                "cmd": stage.cmd,
                "deps": {dep.def_path for dep in stage.deps if not hasattr(dep, "params")},
                "outs": {out.def_path for out in stage.outs},
                "params": params,
            }
    return stages


def covered(paths: set[str], by: set[str]) -> set[str]:
    """Paths not equal to, inside, or containing one of `by` (a dir dependency covers its files)."""

    def related(a: str, b: str) -> bool:
        return a == b or a.startswith(b + "/") or b.startswith(a + "/")

    return {p for p in paths if not any(related(p, q) for q in by)}


@pytest.fixture(scope="module")
def both():
    return snakemake_jobs(), dvc_stages()


def test_same_stage_names(both):
    smk, dvc = both
    assert sorted(smk) == sorted(dvc)


def test_same_commands(both):
    smk, dvc = both
    for name, stage in dvc.items():
        assert smk[name]["cmd"] == stage["cmd"], name


def test_same_dependencies_and_outputs(both):
    smk, dvc = both
    for name, stage in dvc.items():
        assert not covered(smk[name]["deps"], stage["deps"]), f"{name}: Snakemake inputs missing from dvc.yaml"
        assert not covered(stage["deps"], smk[name]["deps"]), f"{name}: dvc.yaml deps missing from Snakemake"
        assert smk[name]["outs"] == stage["outs"], name


def run_params(stage_params: list[str]) -> list[str]:
    """DVC's `train.experiments.EXP` of one run is the rule's `train.experiment` (its wildcard's entry)."""
    return sorted("train.experiment" if key.startswith("train.experiments.") else key for key in stage_params)


def test_an_evaluation_reads_only_its_own_question():
    """The prompt-only baseline's question reruns that baseline alone, and the general set's question the scored
    evaluations alone: neither is among the other jobs' params, in either orchestrator (same lists, see below)."""
    rule_params = snakemake_params()
    for rule in ("evaluate", "evaluate_base"):
        assert "eval.general_instruction" in rule_params[rule] and "eval.prompted_instruction" not in rule_params[rule]
    assert "eval.prompted_instruction" in rule_params["evaluate_prompted"]
    assert "eval.general_instruction" not in rule_params["evaluate_prompted"]


def test_same_params_sections(both):
    smk, dvc = both
    rule_params = snakemake_params()
    for name, stage in dvc.items():
        assert rule_params[smk[name]["rule"]] == run_params(stage["params"]), name


def test_a_training_run_reads_every_train_key_but_the_matrix_axes_and_its_own_experiment(both):
    """So that adding a seed or an experiment leaves the existing runs alone, and no new train key goes untracked."""
    from brandcap.config.params import TrainParams

    _, dvc = both
    expected = {f"train.{key}" for key in TrainParams.model_fields} - {"train.experiments", "train.seeds"}
    for name, stage in dvc.items():
        if name.startswith("train@"):
            exp = name.removeprefix("train@").rsplit("-", 1)[0]
            assert {k for k in stage["params"] if k.startswith("train.")} == expected | {f"train.experiments.{exp}"}, (
                name
            )


def test_under_snakemake_the_longest_training_run_starts_first_and_evaluations_wait_for_free_cores(both):
    """Only Snakemake schedules jobs side by side (DVC runs one stage at a time): the mixed run trains on
    twice the samples per epoch, so it must not wait behind evaluations or the shorter runs."""
    smk, _ = both
    trains = {name: job["priority"] for name, job in smk.items() if job["rule"] == "train"}
    others = [job["priority"] for job in smk.values() if job["rule"] != "train"]
    assert max(trains, key=trains.get) == "train@freeze_vision_mix-4", trains
    assert sorted(trains.values()) == [1.0, 1.0, 1.0, 2.0]
    assert min(trains.values()) > max(others)


def test_a_training_job_claims_one_core_per_process(project_copy, run):
    """With train.devices 2 a train job runs two processes (torchrun); Snakemake must count them as two
    cores, so `--cores 2` runs one such job at a time, not two jobs of two processes each."""
    (project_copy / "two-devices.yaml").write_text(
        yaml.safe_dump({"train": {"devices": 2, "per_device_batch_size": 12}})
    )
    planned = planned_snakemake_jobs(
        run(
            project_copy, "snakemake --cores 2 results/tables.md --configfile two-devices.yaml --dry-run --forceall"
        ).stdout
    )
    assert {job["threads"] for job in planned.values() if job["rule"] == "train"} == {2}
    assert {job["threads"] for job in planned.values() if job["rule"] != "train"} == {1}
    one_device = planned_snakemake_jobs(
        run(project_copy, "snakemake --cores 2 results/tables.md --dry-run --forceall").stdout
    )
    assert {job["threads"] for job in one_device.values()} == {1}  # the default: the same bytes as before


def test_every_stage_script_and_module_exists(both):
    _, dvc = both
    produced = {out for stage in dvc.values() for out in stage["outs"]}
    for name, stage in dvc.items():
        for dep in stage["deps"]:
            if dep.startswith(("workflow/", "src/")) or dep in (
                str(EXTERNAL_DATA_DIR),
                str(STANDIN_DIR),
            ):  # code, local tables, the stand-in
                assert (ROOT / dep).exists(), f"{name}: {dep} does not exist"
            else:
                assert not covered({dep}, produced), f"{name}: {dep} is produced by no stage"


def test_local_tables_are_a_dependency_of_the_catalog_in_both(both):
    """A local product table lives under data/external/; changing it must rerun the catalog."""
    smk, dvc = both
    assert str(EXTERNAL_DATA_DIR) in dvc["catalog"]["deps"]
    assert f"{EXTERNAL_DATA_DIR}/.gitkeep" in smk["catalog"]["deps"]  # the folder exists in a fresh clone


TWO_SEEDS = {
    "train": {
        "seeds": [4, 5],
        "save_epochs": [2, 10],
        "experiments": {"freeze_llm": {"strategy": "freeze_llm"}, "lora": {"strategy": "lora"}},
    }
}


def test_seeds_are_a_matrix_axis_of_train_and_evaluate_in_both(project_copy, run):
    """With train.seeds [4, 5] both orchestrators plan one train job and one evaluate job (all its
    checkpoints in one process) per experiment x seed, with the same commands."""
    (project_copy / "two-seeds.yaml").write_text(yaml.safe_dump(TWO_SEEDS))
    smk_out = run(
        project_copy,
        "snakemake --cores 1 results/tables.md --configfile two-seeds.yaml --dry-run --forceall --printshellcmds",
    ).stdout
    smk = {
        name: job["cmd"].replace(" --overlay two-seeds.yaml", "")
        for name, job in planned_snakemake_jobs(smk_out).items()
    }
    dvc_out = run(project_copy, "brandcap profile two-seeds.yaml && dvc repro --dry --force").stdout
    run(project_copy, "git checkout -q params.yaml")
    dvc = dict(re.findall(r"^Running stage '([^']+)':\n> (.*)$", dvc_out, re.M))

    pairs = [(exp, seed) for exp in ("freeze_llm", "lora") for seed in (4, 5)]
    expected = {f"train@{exp}-{seed}" for exp, seed in pairs} | {f"evaluate@{exp}-{seed}" for exp, seed in pairs}
    for planned in (smk, dvc):
        assert {name for name in planned if name.startswith(("train@", "evaluate@"))} == expected
    for name in expected:
        assert smk[name] == dvc[name], name
    assert (
        "--experiment lora --seed 5 " in smk["train@lora-5"]
        and "--checkpoints results/checkpoints/lora/seed-5 " in smk["train@lora-5"]
    )
    assert "--checkpoints results/checkpoints/lora/seed-5 " in smk["evaluate@lora-5"]
    assert "--out results/eval/lora/seed-5 " in smk["evaluate@lora-5"]
    assert "--resume .resume/eval/lora/seed-5 " in smk["evaluate@lora-5"]


# ----------------------------------------------------------------------------- code dependencies
# Modules that run a stage but cannot change what it writes: the stage runner and its logging,
# progress, locks, process launching, atomic writes and resume bookkeeping, and the params schema
# (the values it validates are tracked as params). Editing them reruns nothing; editing any other
# module a stage imports reruns that stage.
def test_each_stage_depends_on_every_module_its_script_imports():
    """dvc.yaml's code deps of a stage (which Snakemake reads too) are exactly the modules its script
    imports, orchestration aside (`brandcap code-deps` writes them): so a change to any code that shapes a
    stage's output reruns it."""
    from brandcap.running.stage_code import script_code

    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in spec.items():
        deps = [d for d in stage.get("do", stage)["deps"] if isinstance(d, str)]
        script = next(d for d in deps if d.startswith("workflow/scripts/"))
        listed = {d for d in deps if d.startswith("src/")}
        wanted = set(script_code(Path(script), ROOT))
        assert listed == wanted, (
            f"dvc.yaml stage {name}: list {sorted(wanted - listed)} in its deps, drop {sorted(listed - wanted)} "
            f"(the modules {script} imports; orchestration modules are left out); `brandcap code-deps` rewrites them"
        )


def test_the_committed_code_deps_are_what_brandcap_code_deps_writes(tmp_path):
    from brandcap.cli import code_deps

    copy = tmp_path / "dvc.yaml"
    copy.write_text((ROOT / "dvc.yaml").read_text())
    assert code_deps(check=True, dvc_yaml=ROOT / "dvc.yaml") == 0
    lines = copy.read_text().splitlines(keepends=True)
    dropped = next(i for i, line in enumerate(lines) if line.startswith("      - src/brandcap/"))
    copy.write_text("".join(lines[:dropped] + lines[dropped + 1 :]))  # one dep lost by hand
    assert code_deps(check=True, dvc_yaml=copy, root=ROOT) == 1
    assert code_deps(check=False, dvc_yaml=copy, root=ROOT) == 0 and copy.read_text() == (ROOT / "dvc.yaml").read_text()
