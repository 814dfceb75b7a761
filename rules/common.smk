# Glue shared by all rules: the artifact paths, the resolved parameters, the params arguments of
# every command, the experiment x seed matrix and the final targets.

import os
import socket
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml

from brandcap.config.params import PROMPTED_EVAL_KEYS, SCORED_EVAL_KEYS, ParamsError, experiment_settings
from brandcap.config.profiles import resolve_params
from brandcap.running.project_lock import Orchestrator, ProjectBusy, busy_reason, claim, hold_dvc_lock, release

DVC_YAML = yaml.safe_load(Path("dvc.yaml").read_text())
# Every artifact path, written once in dvc.yaml's `vars` block (DVC's ${paths.NAME}):
# PATHS.catalog, PATHS.eval, ... A training run's folder under a per-run root is f"{root}/{RUN}".
PATHS = SimpleNamespace(**DVC_YAML["vars"][0]["paths"])
RUN = "{exp}/seed-{seed}"

# Profiles are overlays of params.yaml (`--configfile configs/smoke.yaml`). Snakemake's own deep
# merge would add a profile's experiments to the default ones, so the configuration is resolved
# by brandcap's rules instead; every command gets the same files and resolves them the same way.
# Snakemake makes --configfile paths absolute; commands name them as the user did, relative to here.
OVERLAYS = [os.path.relpath(path) if Path(path).is_relative_to(Path.cwd()) else str(path) for path in workflow.overwrite_configfiles]
# Snakemake's --configfile takes several files, and a second --configfile replaces the first.
if sum(arg.split("=")[0] in ("--configfile", "--configfiles") for arg in sys.argv) > 1:
    raise WorkflowError(
        "--configfile is given more than once: Snakemake keeps only the last, so the profiles before it would be "
        "left out without a word; name them all after one --configfile (e.g. --configfile configs/smoke.yaml mine.yaml)"
    )
if workflow.config_settings.config:
    raise WorkflowError(
        "snakemake --config is not passed on to the stages, so they would run with other parameters "
        "than Snakemake records; put the values in a profile file and pass it with --configfile "
        "(e.g. configs/smoke.yaml), or edit params.yaml"
    )
try:
    PARAMS = resolve_params("params.yaml", OVERLAYS)
except ParamsError as err:
    raise WorkflowError(str(err)) from None
config.clear()
config.update(PARAMS.model_dump(mode="json"))

# Snakemake and DVC must not run stages of this project at the same time (brandcap.running.project_lock).
SNAKEMAKE_RUN = Orchestrator("snakemake", os.getpid(), socket.gethostname())
if busy := busy_reason(SNAKEMAKE_RUN):
    raise WorkflowError(busy)


# While it runs, Snakemake also holds DVC's repository lock: `dvc repro` deletes a stage's outputs before
# running it, so it must be refused before it starts (brandcap.running.project_lock.hold_dvc_lock).
DVC_LOCK_HELD = []


onstart:
    claim(None, SNAKEMAKE_RUN)
    try:
        DVC_LOCK_HELD.append(hold_dvc_lock())
    except ProjectBusy as err:
        release(SNAKEMAKE_RUN, stage=False)
        raise WorkflowError(str(err)) from None


onsuccess:
    release(SNAKEMAKE_RUN, stage=False)
    while DVC_LOCK_HELD:
        DVC_LOCK_HELD.pop().close()


onerror:
    release(SNAKEMAKE_RUN, stage=False)
    while DVC_LOCK_HELD:
        DVC_LOCK_HELD.pop().close()


PARAMS_ARGS = " ".join(["--params params.yaml", *(f"--overlay {path}" for path in OVERLAYS)])

EXPERIMENTS = list(PARAMS.train.experiments)
# What one training run reads of the train section: all of it but the matrix axes (the experiment
# list and the seeds); its own entry of train.experiments is added per run.
TRAIN_RUN_KEYS = [key for key in type(PARAMS.train).model_fields if key not in ("experiments", "seeds")]
SEEDS = list(PARAMS.train.seeds)


wildcard_constraints:
    exp="|".join(EXPERIMENTS),
    seed=r"\d+",


def script(name):
    return f"workflow/scripts/{name}.py"


def stage_code(stage):
    """The package modules a stage depends on, as its dvc.yaml deps list them (written once there;
    tests/test_dag_agreement.py checks the list against the stage script's imports)."""
    spec = DVC_YAML["stages"][stage]
    deps = spec.get("do", spec)["deps"]
    return [dep for dep in deps if isinstance(dep, str) and dep.startswith("src/brandcap/")]


def eval_params(keys):
    """The params entries of an evaluation job: each eval key it reads, as a function of no wildcard, so that
    Snakemake does not take the {brands} of eval.prompted_instruction for one."""
    return {f"eval__{key}": (lambda wildcards, value=config["eval"][key]: value) for key in keys}


def train_priority(wildcards):
    """Longest training runs first: a run's samples per epoch relative to the task data, 1 + its
    general_mix. With two or more cores the mixed run then starts as soon as the base model exists, and
    the evaluations (default priority 0) fill the gaps instead of holding the longest run back."""
    return 1 + experiment_settings(PARAMS, wildcards.exp).general_mix


def final_targets():
    return [PATHS.tables, PATHS.metrics]
