"""An upstream change under Snakemake, on a copy of the session's shared smoke build: one
`snakemake` call reruns the whole affected chain (and only it), and the tables show the new split."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import SMOKE, nothing_to_do

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(smoke_copy) -> Path:
    return smoke_copy


def test_an_upstream_param_change_reruns_the_whole_chain_in_one_call(built, run):
    profile = yaml.safe_load((built / SMOKE).read_text())
    profile["clean"]["test_fraction"] = 0.3
    (built / SMOKE).write_text(yaml.safe_dump(profile, sort_keys=False))
    out = run(built, ["snakemake", "--cores", "1", "results/tables.md", "--configfile", SMOKE])
    ran = set(re.findall(r"^(?:local)?rule (\w+):", out.stdout + out.stderr, re.M))
    assert {"clean", "train", "evaluate", "evaluate_base", "tables"} <= ran
    assert (
        not {"catalog", "general_set", "download", "base_model"} & ran
    )  # caption reads `clean` too: it reruns, from its cache
    assert nothing_to_do(built, run, "--configfile", SMOKE)
    test_items = sum(1 for _ in (built / "data/processed/test.jsonl").open())
    assert json.loads((built / "data/processed/clean_report.json").read_text())["test"] == test_items
    assert str(test_items) in (built / "results/tables.md").read_text()
