"""The lint set-up CI relies on: the conda environment of the rules pins what pyproject.toml pins,
the linters come from the test extras `make install` puts in the venv, and `snakemake --lint`
finds nothing but the one kind kept on purpose."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_rule_environment_pins_the_package_dependencies():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    env = yaml.safe_load((ROOT / "envs/brandcap.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == pyproject["project"]["dependencies"], (
        "envs/brandcap.yaml: its pip list must equal pyproject.toml's dependencies"
    )
    assert "torch==2.14.1" in pip and "torchvision==0.29.1" in pip


def test_linters_are_test_extras():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    assert {e.split("==")[0] for e in extras} >= {"ruff", "snakefmt"}


# The one kind of `snakemake --lint` finding kept on purpose (docs/development.md, "Tests and benchmarks"): shell
# lines that use the overlay arguments and the artifact roots of rules/common.smk.
KEPT_LINT = re.compile(r"Shell command directly uses variable (PARAMS_ARGS|PATHS) from outside of the rule:")


def snakemake_lint_findings(output: str) -> list[str]:
    """The findings (`* ...` lines) in `snakemake --lint` output."""
    return [line.strip()[2:] for line in output.splitlines() if line.lstrip().startswith("* ")]


def test_snakemake_lint_finds_nothing_but_the_kept_kind():
    run = subprocess.run([BIN / "snakemake", "--lint"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    findings = snakemake_lint_findings(run.stdout + run.stderr)
    assert findings, (
        "snakemake --lint printed no finding at all: the output format changed; update snakemake_lint_findings"
    )
    assert [f for f in findings if not KEPT_LINT.fullmatch(f)] == [], run.stdout + run.stderr


def test_the_lint_filter_reports_a_new_kind():
    output = (
        "Lints for rule x (line 1, rules/data.smk):\n"
        "    * Shell command directly uses variable PATHS from outside of the rule:\n      It is recommended...\n"
        "    * No log directive defined:\n      Without a log directive...\n"
    )
    assert [f for f in snakemake_lint_findings(output) if not KEPT_LINT.fullmatch(f)] == ["No log directive defined:"]
