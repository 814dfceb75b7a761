"""The lint set-up CI relies on: the conda environment of the rules pins what pyproject.toml pins,
and the linters come from the test extras `make install` puts in the venv."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_rule_environment_pins_the_package_dependencies():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    env = yaml.safe_load((ROOT / "envs/brandcap.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == pyproject["project"]["dependencies"], "envs/brandcap.yaml: its pip list must equal pyproject.toml's dependencies"
    assert "torch==2.14.1" in pip and "torchvision==0.29.1" in pip


def test_linters_are_test_extras():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    assert {e.split("==")[0] for e in extras} >= {"ruff", "snakefmt"}
