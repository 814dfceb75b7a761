"""The whole DAG, run as a user would, on the smoke profile in a temporary git repository, with
the README's commands as written: Snakemake builds everything; a second run has nothing to do; an
upstream change reruns the whole affected chain in one call; after `dvc checkout` the documented
`snakemake --touch` leaves nothing to do; DVC reproduces the data stages bit for bit and
`dvc exp run -S` + `dvc exp show` compare a variant that changes an upstream stage."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

SMOKE = "configs/smoke.yaml"
TOUCH_AFTER_CHECKOUT = "snakemake --touch --cores 1 results/tables.md"


@pytest.fixture(scope="module")
def system_temp(tmp_path_factory) -> Path:
    """The system temp dir (TMPDIR) of the smoke build: nothing may land there."""
    return tmp_path_factory.mktemp("system-temp")


@pytest.fixture(scope="module")
def built(project_copy, profile_commands, run, system_temp) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(system_temp))
        # as in a user's shell: a test module that imported brandcap.stage in this process set it (and
        # torch made it absolute), and the build would inherit that folder instead of its own
        patch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
        run(project_copy, profile_commands[SMOKE]["snakemake"])
    return project_copy


def nothing_to_do(repo: Path, run, *extra: str) -> bool:
    out = run(repo, ["snakemake", "--cores", "1", "--dry-run", "results/tables.md", *extra])
    return "Nothing to be done" in out.stdout + out.stderr


def test_snakemake_builds_the_tables(built):
    tables = (built / "results/tables.md").read_text()
    for section in ("funnel", "brand accuracy", "per-brand"):
        assert section in tables.lower(), section
    metrics = json.loads((built / "results/metrics.json").read_text())
    assert set(metrics) >= {"base", "freeze_llm", "lora"} and "freeze_vision" not in metrics
    assert {"epoch-1", "epoch-2"} <= set(metrics["freeze_llm"])
    for png in ("brand_accuracy.png", "train_loss.png"):
        assert (built / "results/plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "stage tables: done" in (built / "logs/tables.log").read_text()
    assert "stage tables: start (params params.yaml + configs/smoke.yaml)" in (built / "logs/tables.log").read_text()


def test_the_build_writes_nothing_into_the_system_temp_dir(built, system_temp):
    assert sorted(p.name for p in system_temp.iterdir()) == []  # e.g. torch's torchinductor_<user> (brandcap.stage)
    assert (built / ".resume/torch").is_dir()


def test_second_snakemake_run_has_nothing_to_do(built, run):
    assert nothing_to_do(built, run, "--configfile", SMOKE)


def planned_runs(out: str, rule: str) -> set[tuple[str, str]]:
    """(exp, seed) of each planned job of `rule` in a dry run's output."""
    blocks = re.split(r"\n\s*\n", out)
    return {tuple(m.groups()) for block in blocks if re.search(rf"^(?:local)?rule {rule}:", block, re.M)
            for m in [re.search(r"wildcards: exp=(\w+), seed=(\d+)", block)] if m}


def test_adding_a_seed_plans_only_the_new_seeds_runs(built, run, tmp_path):
    """A training run reads its own experiment entry, not the seed list or the other experiments."""
    more_seeds = tmp_path / "two-seeds.yaml"
    more_seeds.write_text("train: {seeds: [4, 5]}\n")
    out = run(built, ["snakemake", "--cores", "1", "--dry-run", "results/tables.md", "--configfile", SMOKE, str(more_seeds)])
    planned = out.stdout + out.stderr
    assert planned_runs(planned, "train") == {("freeze_llm", "5"), ("lora", "5")}, planned[-3000:]
    assert planned_runs(planned, "evaluate") == {("freeze_llm", "5"), ("lora", "5")}


def test_the_dvc_profile_command_agrees_with_the_snakemake_build(built, profile_commands, run):
    """`brandcap profile` resolves the same parameters, so Snakemake without --configfile is up to date too."""
    run(built, profile_commands[SMOKE]["dvc"].removesuffix(" && dvc repro"))
    assert nothing_to_do(built, run)
    run(built, "dvc commit --force --quiet")
    assert "Data and pipelines are up to date" in run(built, profile_commands[SMOKE]["dvc"]).stdout


def test_an_upstream_param_change_reruns_the_whole_chain_in_one_call(built, run):
    params = yaml.safe_load((built / "params.yaml").read_text())
    params["clean"]["test_fraction"] = 0.3
    (built / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(built, ["snakemake", "--cores", "1", "results/tables.md"])
    ran = set(re.findall(r"^(?:local)?rule (\w+):", out.stdout + out.stderr, re.M))
    assert {"clean", "train", "evaluate", "evaluate_base", "tables"} <= ran
    assert not {"catalog", "general_set", "download", "base_model"} & ran  # caption reads `clean` too: it reruns, from its cache
    assert nothing_to_do(built, run)
    test_items = sum(1 for _ in (built / "data/processed/test.jsonl").open())
    assert json.loads((built / "data/processed/clean_report.json").read_text())["test"] == test_items
    assert str(test_items) in (built / "results/tables.md").read_text()
    run(built, "dvc commit --force --quiet")


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
    """An evaluation setting changes every evaluation job and the tables under `dvc exp run` (cheaper
    than retraining again: the clean -> train chain was shown under Snakemake above)."""
    run(built, "git add -A && git commit -qm 'baseline results'")
    old_metrics = json.loads((built / "results/metrics.json").read_text())
    out = run(built, ["dvc", "exp", "run", "-S", "eval.max_new_tokens=4", "--name", "short-answers"])
    reran = set(re.findall(r"Running stage '(\w+)", out.stdout))
    assert {"evaluate", "evaluate_base", "evaluate_prompted", "tables"} <= reran
    assert not {"catalog", "clean", "train"} & reran
    assert "short-answers" in json.dumps(json.loads(run(built, ["dvc", "exp", "show", "--json"]).stdout))
    table = run(built, ["dvc", "exp", "show", "--md"]).stdout
    assert "eval.max_new_tokens" in table and "epoch-2.brand_accuracy" in table
    # the README's narrowed form: the varied param, the verdict and each experiment's chosen test accuracy
    narrowed = run(built, ["dvc", "exp", "show", "--md", "--drop", ".*", "--keep", r"Experiment|eval\.max_new_tokens|selection\.(verdict|versus_strongest_baseline|\w+\.brand_accuracy)$"]).stdout
    header = [cell.strip() for cell in narrowed.splitlines()[0].strip("|").split("|")]
    # (per-experiment selection entries exist only where something learnt; the smoke profile's verdict is "no learning")
    assert header[:3] == ["Experiment", "selection.verdict", "selection.versus_strongest_baseline"], header
    assert header[-1] == "eval.max_new_tokens", header
    assert all(re.fullmatch(r"selection\.\w+\.brand_accuracy", column) for column in header[3:-1]), header
    assert re.search(r"short-answers.*\|\s*4\s*\|", narrowed), narrowed
    assert "no best checkpoint" in narrowed, narrowed
    new_metrics = json.loads((built / "results/metrics.json").read_text())
    assert new_metrics["provenance"]["params_sha256"] != old_metrics["provenance"]["params_sha256"]
