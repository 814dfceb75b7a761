"""The code each stage runs, as dvc.yaml lists it: generated from the imports, never written by hand.

    brandcap code-deps            # rewrite the src/brandcap/ deps of every stage in dvc.yaml
    brandcap code-deps --check    # exit 1 naming the stages whose list is not current

A stage's code is its entry script's package imports and everything they import, directly or not,
lazily or not (`brandcap.running.resume_state.imported_modules`, the walk that also fingerprints resume
states), minus the modules that run a stage without shaping its output (`ORCHESTRATION_MODULES`).
Snakemake reads the same lists back (`rules/common.smk: stage_code`), so a change to any code that
shapes a stage's output reruns it under both orchestrators.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from brandcap.running.resume_state import imported_modules, module_file

# Modules that run a stage without shaping its output: the runner, params schema, progress, locks,
# launching, atomic writes, resume bookkeeping and this one.
ORCHESTRATION_MODULES = frozenset(
    f"src/brandcap/{name}.py"
    for name in (
        "running/stage",
        "config/params",
        "config/params_file",
        "config/profiles",
        "running/progress",
        "running/project_lock",
        "running/launch",
        "running/gpus",
        "files/atomic",
        "files/append_only",
        "running/resume_state",
        "files/disk_full",
        "running/stage_code",
    )
)
_SCRIPT_IMPORT = re.compile(r"^from (brandcap[\w.]*) import|^import (brandcap[\w.]*)", re.M)
_STAGE_HEADER = re.compile(r"^  (\w+):\s*$")
_CODE_DEP = re.compile(r"^      - src/brandcap/")


def _holds_code(path: Path) -> bool:
    """Whether a package's __init__.py holds more than its docstring."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return bool(
        body[1:] if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) else body
    )


def script_code(script: Path, root: Path) -> list[str]:
    """The package files (relative to root) that a stage's entry script runs, orchestration aside."""
    top = ["".join(match) for match in _SCRIPT_IMPORT.findall(Path(root, script).read_text(encoding="utf-8"))]
    files = {module_file(name) for imported in top for name in imported_modules(imported)}
    found = {
        f.resolve().relative_to(Path(root).resolve()).as_posix()
        for f in files
        if f is not None and (f.name != "__init__.py" or _holds_code(f))
    }
    return sorted(found - ORCHESTRATION_MODULES)


def current_dvc_yaml(dvc_yaml: Path, root: Path | None = None) -> str:
    """dvc.yaml's text with every stage's src/brandcap/ deps replaced by `script_code` (one per line, sorted);
    `root`: the project the stage scripts are in (dvc.yaml's folder)."""
    text = Path(dvc_yaml).read_text(encoding="utf-8")
    stages = yaml.safe_load(text)["stages"]
    wanted = {}
    for name, spec in stages.items():
        script = next(
            d for d in spec.get("do", spec)["deps"] if isinstance(d, str) and d.startswith("workflow/scripts/")
        )
        wanted[name] = script_code(Path(script), root or Path(dvc_yaml).parent)
    out, stage, lines, i = [], None, text.splitlines(keepends=True), 0
    while i < len(lines):
        if (header := _STAGE_HEADER.match(lines[i])) and header.group(1) in stages:
            stage = header.group(1)
        if stage and _CODE_DEP.match(lines[i]):
            while i < len(lines) and _CODE_DEP.match(lines[i]):
                i += 1
            out += [f"      - {dep}\n" for dep in wanted[stage]]
            continue
        out.append(lines[i])
        i += 1
    return "".join(out)


def stale_stages(dvc_yaml: Path, root: Path | None = None) -> list[str]:
    """The stages whose code deps in dvc.yaml differ from `script_code`."""
    now = yaml.safe_load(Path(dvc_yaml).read_text(encoding="utf-8"))["stages"]
    want = yaml.safe_load(current_dvc_yaml(dvc_yaml, root))["stages"]
    return sorted(name for name in now if now[name] != want[name])
