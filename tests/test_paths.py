"""Artifact paths are written once, in dvc.yaml's inline `vars` block: the stages read them as
${paths.catalog}, rules/common.smk reads the block as PATHS (PATHS.catalog). A path written out again in
dvc.yaml or rules/*.smk, an entry neither orchestrator uses, or a script docstring whose example
command is not the one DVC runs fails here. (tests/test_dag_agreement.py checks that both
orchestrators resolve the same commands, inputs and outputs.)

    .venv/bin/python -m pytest tests/test_paths.py -q
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

from brandcap.config.params import EXTERNAL_DATA_DIR
from brandcap.running.gpus import GPU_LOCK_DIR
from brandcap.running.project_lock import LOCK_FILE
from brandcap.running.resume_root import RESUME_ROOT
from brandcap.running.stage import TORCH_CACHE_DIR
from tests.conftest import ROOT

PATHS_FILE = ROOT / "dvc.yaml"
PATHS: dict[str, str] = yaml.safe_load(PATHS_FILE.read_text())["vars"][0]["paths"]
DAG_FILES = [ROOT / "dvc.yaml", *sorted((ROOT / "rules").glob("*.smk"))]
SCRIPTS = sorted((ROOT / "workflow/scripts").glob("*.py"))

# A path-like token (at least one slash), not the tail of ${paths.x}/... or {PATHS.x}/...
PATH_TOKEN = re.compile(r"(?<![\w.${}/-])[\w.-]+(?:/[\w.*{}-]+)+")


def written_out_paths(text: str) -> list[tuple[int, str, str]]:
    """(line number, token, key) for each token that is an artifact path of PATHS or lies under one."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for token in PATH_TOKEN.findall(line):
            for key, path in PATHS.items():
                if token == path or token.startswith(path + "/"):
                    found.append((number, token, key))
    return found


def test_the_paths_file_holds_relative_paths_with_no_repeats():
    values = list(PATHS.values())
    assert len(set(values)) == len(values), f"{PATHS_FILE}: a path is listed twice"
    for key, path in PATHS.items():
        assert path and not Path(path).is_absolute() and not path.endswith("/"), f"{PATHS_FILE}: paths.{key}: {path!r}"


def outside_the_paths_block(dag_file: Path) -> str:
    """The file's text, with dvc.yaml's `vars` block (the one home of the paths) blanked, lines kept."""
    lines = dag_file.read_text().splitlines()
    if dag_file.name == "dvc.yaml":
        stages = lines.index("stages:")
        lines = ["" if n < stages and not line.startswith("#") else line for n, line in enumerate(lines)]
    return "\n".join(lines)


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_no_artifact_path_is_written_out_in_the_dag_files(dag_file):
    found = written_out_paths(outside_the_paths_block(dag_file))
    hints = [
        f"{dag_file.relative_to(ROOT)}:{n}: {token} (use paths.{key} from dvc.yaml vars)" for n, token, key in found
    ]
    assert not hints, "artifact paths written out again:\n" + "\n".join(hints)


def test_the_check_finds_a_written_out_path():
    """The token match itself: plain paths and paths under a root are found, references are not."""
    text = (
        'out=directory("results/eval/{exp}/seed-{seed}"),\n'
        "cmd: python x.py --log logs/catalog.log --out ${paths.eval}/base --resume {PATHS.resume}/caption\n"
    )
    assert [(n, key) for n, _, key in written_out_paths(text)] == [(1, "eval"), (2, "logs")]


def test_every_path_is_used_by_both_orchestrators():
    dvc = (ROOT / "dvc.yaml").read_text()
    rules = "\n".join(p.read_text() for p in (ROOT / "rules").glob("*.smk"))
    for key in PATHS:
        assert f"${{paths.{key}}}" in dvc, f"dvc.yaml vars: paths.{key} is not used in dvc.yaml"
        assert re.search(rf"\bPATHS\.{key}\b", rules), f"dvc.yaml vars: paths.{key} is not used in rules/*.smk"


def test_folders_the_package_names_agree_with_the_paths_file():
    """The local tables folder (brandcap.config.params) and the resume folder (brandcap.running.resume_root: the locks of
    brandcap.running.project_lock and brandcap.running.gpus, torch's cache of brandcap.running.stage)."""
    assert Path(PATHS["external"]) == EXTERNAL_DATA_DIR, f"dvc.yaml vars: paths.external must be {EXTERNAL_DATA_DIR}"
    assert Path(PATHS["resume"]) == RESUME_ROOT, f"dvc.yaml vars: paths.resume must be {RESUME_ROOT}"
    assert LOCK_FILE.parent == GPU_LOCK_DIR.parent == TORCH_CACHE_DIR.parent == RESUME_ROOT


@pytest.fixture(scope="module")
def stage_commands() -> dict[str, str]:
    """Every stage's command as DVC resolves it (paths from dvc.yaml vars, matrix items filled in)."""
    with Repo(str(ROOT)) as repo:
        return {stage.addressing: stage.cmd for stage in repo.index.stages}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_each_script_docstring_shows_the_command_a_stage_runs(script, stage_commands):
    """The first command in each entry script's docstring is, character for character, the
    command of one of the stages that run the script (dvc.yaml; the same in rules/*.smk)."""
    docstring = ast.get_docstring(ast.parse(script.read_text()))
    relative = script.relative_to(ROOT).as_posix()
    example = next(
        (line.strip() for line in docstring.splitlines() if line.strip().startswith(f"python {relative} ")), None
    )
    assert example, f"{relative}: its docstring shows no `python {relative} ...` command"
    commands = {name: cmd for name, cmd in stage_commands.items() if cmd.startswith(f"python {relative} ")}
    assert example in commands.values(), (
        f"{relative}: the docstring's command\n  {example}\nis none of the stage commands\n  "
        + "\n  ".join(f"{name}: {cmd}" for name, cmd in commands.items())
    )
