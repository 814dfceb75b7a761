"""DVC on the smoke build (a copy of the session's shared one), with the README's commands as written:
`brandcap profile` + `dvc commit` adopt the Snakemake build and DVC then finds it up to date; after
`dvc checkout` the documented `snakemake --touch` leaves nothing to do; DVC reproduces the data stages
bit for bit; `dvc exp run -S` + `dvc exp show` compare a variant that changes an upstream stage. The
tests run in this order on one copy: each starts from what the one before left."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import SMOKE, nothing_to_do

pytestmark = pytest.mark.slow

TOUCH_AFTER_CHECKOUT = "snakemake --touch --cores 1 results/tables.md"
# The prompt-only baseline asked another way: the variant `dvc exp run -S` makes below (a comma and braces, quoted).
ASKED = "Name the brand of this product, one of: {brands}"
PROMPTED_ANSWERS = "results/eval/base/prompted/predictions.jsonl"


@pytest.fixture(scope="module")
def built(smoke_copy) -> Path:
    return smoke_copy


def test_the_dvc_profile_command_agrees_with_the_snakemake_build(built, profile_commands, run):
    """`brandcap profile` resolves the same parameters, so Snakemake without --configfile is up to date too."""
    run(built, profile_commands[SMOKE]["dvc"].removesuffix(" && dvc repro"))
    assert nothing_to_do(built, run)
    run(built, "dvc commit --force --quiet")
    assert "Data and pipelines are up to date" in run(built, profile_commands[SMOKE]["dvc"]).stdout


def test_dvc_lists_and_draws_each_training_runs_dvclive_metrics(built, run):
    """The train stage's DVCLive files are DVC metrics and plots: `dvc exp show` lists their values, `dvc plots
    show` draws their curves (steps on x) with DVC's own template."""
    shown = json.loads(run(built, ["dvc", "exp", "show", "--json"]).stdout)
    workspace = json.dumps(shown[0])
    for exp in ("freeze_llm", "lora"):
        assert f"results/dvclive/{exp}/seed-4/metrics.json" in workspace
    metrics = json.loads(run(built, ["dvc", "metrics", "show", "--json"]).stdout)
    lora = next(iter(metrics.values()))["data"]["results/dvclive/lora/seed-4/metrics.json"]["data"]
    steps = (built / "results/dvclive/lora/seed-4/plots/metrics/training/loss.tsv").read_text().splitlines()
    assert lora["step"] == int(steps[-1].split("\t")[0]) and lora["training"]["loss"] == float(steps[-1].split("\t")[1])
    plots = json.loads(run(built, ["dvc", "plots", "show", "--json"]).stdout)["data"]
    loss = "results/dvclive/lora/seed-4/plots/metrics/training/loss.tsv"
    assert loss in plots, sorted(plots)
    assert [plot["type"] for plot in plots[loss]] == ["vega"], plots[loss]


def test_snakemake_touch_after_dvc_checkout_leaves_nothing_to_do(built, run):
    shutil.rmtree(built / "data/processed")
    shutil.rmtree(built / "results/eval/base")
    run(built, "dvc checkout --quiet")
    assert (built / "data/processed/train.jsonl").exists()
    run(built, TOUCH_AFTER_CHECKOUT)
    assert nothing_to_do(built, run)


def test_dvc_reproduces_the_data_stages_bit_for_bit(built, run):
    before = (built / "dvc.lock").read_text()
    run(built, ["dvc", "repro", "--force", "--single-item", "catalog", "general_set", "download", "caption", "clean"])
    assert (built / "dvc.lock").read_text() == before
    assert json.loads(run(built, ["dvc", "status", "--json"]).stdout or "{}") == {}


def test_dvc_exp_run_reruns_downstream_of_an_upstream_change(built, run):
    """A variant of the prompt-only baseline's question under `dvc exp run`: DVC reruns that evaluation and what
    reads it, and nothing else (the clean -> train -> evaluate chain reruns under Snakemake in
    test_pipeline_rerun.py; `dvc exp run` is the same machinery over any upstream stage)."""
    run(built, "git add -A && git commit -qm 'baseline results'")
    old_metrics = json.loads((built / "results/metrics.json").read_text())
    old_answers = (built / PROMPTED_ANSWERS).read_text()
    out = run(built, ["dvc", "exp", "run", "-S", f"eval.prompted_instruction='{ASKED}'", "--name", "asked-again"])
    reran = set(re.findall(r"Running stage '(\w+)", out.stdout))
    # the baseline, and what reads it: the tables, the review page (its answers) and the export (best vs baselines)
    assert reran == {"evaluate_prompted", "review", "export", "tables"}, reran
    assert "asked-again" in json.dumps(json.loads(run(built, ["dvc", "exp", "show", "--json"]).stdout))
    table = run(built, ["dvc", "exp", "show", "--md"]).stdout
    assert "eval.prompted_instruction" in table and "epoch-2.brand_accuracy" in table
    # the README's narrowed form: the varied param, the verdict and each experiment's chosen test accuracy
    narrowed = run(
        built,
        [
            "dvc",
            "exp",
            "show",
            "--md",
            "--drop",
            ".*",
            "--keep",
            r"Experiment|eval\.prompted_instruction|selection\.(verdict|versus_strongest_baseline|\w+\.brand_accuracy)$",
        ],
    ).stdout
    header = [cell.strip() for cell in narrowed.splitlines()[0].strip("|").split("|")]
    # (per-experiment selection entries exist only where something learnt; the smoke profile's verdict is "no learning")
    assert header[:3] == ["Experiment", "selection.verdict", "selection.versus_strongest_baseline"], header
    assert header[-1] == "eval.prompted_instruction", header
    assert all(re.fullmatch(r"selection\.\w+\.brand_accuracy", column) for column in header[3:-1]), header
    assert re.search(r"asked-again.*\|\s*" + re.escape(ASKED) + r"\s*\|", narrowed), narrowed
    assert "no best checkpoint" in narrowed, narrowed
    # asked another question, the base model's loss of every reference answer changes
    assert (built / PROMPTED_ANSWERS).read_text() != old_answers
    new_metrics = json.loads((built / "results/metrics.json").read_text())
    assert new_metrics["provenance"]["params_sha256"] != old_metrics["provenance"]["params_sha256"]
