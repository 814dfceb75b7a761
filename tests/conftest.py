"""Fixtures shared by the test modules: the README's profile commands and throwaway project copies."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_in(repo: Path, command: str | list[str], check: bool = True) -> subprocess.CompletedProcess:
    """Run a command (a shell line as the README writes it, or an argv) with the venv's tools first on PATH."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", HF_HUB_OFFLINE="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    if (Path(repo) / "src/brandcap").is_dir():  # the copy's own package, not the editable install's
        env["PYTHONPATH"] = os.pathsep.join([str(Path(repo) / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    run = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, shell=isinstance(command, str))
    if check and run.returncode:
        shown = command if isinstance(command, str) else " ".join(map(str, command))
        raise AssertionError(f"{shown} failed ({run.returncode}):\n{run.stdout[-4000:]}\n{run.stderr[-6000:]}")
    return run


def copy_project(target: Path) -> Path:
    """A git repository holding the working tree's tracked and untracked-but-not-ignored files."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    for name in files:
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    run_in(target, ["git", "init", "-q"])
    run_in(target, ["git", "add", "-A"])
    run_in(target, ["git", "commit", "-qm", "copy"])
    return target


def readme_profile_commands() -> dict[str, dict[str, str]]:
    """The README's profile table: profile file -> {"snakemake": command, "dvc": command}."""
    text = (ROOT / "README.md").read_text()
    table = text.split("<!-- profiles -->")[1]
    rows = {}
    for line in table.splitlines():
        cells = re.findall(r"`([^`]+)`", line)
        if line.startswith("|") and len(cells) >= 3 and cells[-2].startswith("snakemake"):
            rows[cells[0]] = {"snakemake": cells[-2], "dvc": cells[-1]}
    return rows


@pytest.fixture(scope="session")
def profile_commands() -> dict[str, dict[str, str]]:
    return readme_profile_commands()


@pytest.fixture(scope="session")
def run():
    return run_in


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("brandcap"))
