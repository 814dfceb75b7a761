"""One fingerprint for every resumable stage, and the resume folder it guards.

A stage's resume state (partial predictions, Trainer checkpoints, fetched images) is reused only
when it was made from the same inputs (content hashes, never modification times, which
`dvc checkout` changes), the same params keys and the same source of the brandcap modules the
stage runs. Otherwise it is discarded, with a log line that says which part changed.

    fingerprint = stage_fingerprint("brandcap.stages.evaluate", inputs={"test": test_jsonl, "images": images_dir},
                                    params={"eval": params.eval.model_dump(mode="json")})
    kept = prepare_resume_dir(resume_dir, fingerprint)
"""

from __future__ import annotations

import ast
import importlib.util
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from brandcap.files import atomic
from brandcap.files.digests import canonical_json_sha256, content_digest, named_texts_sha256

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.json"


def _module_file(name: str) -> Path | None:
    """The source file of brandcap module `name`, found without importing it."""
    package = importlib.util.find_spec("brandcap")
    parts = name.split(".")
    if parts[0] != "brandcap" or len(parts) < 2 or not package or not package.submodule_search_locations:
        return None
    for root in package.submodule_search_locations:
        for candidate in (Path(root, *parts[1:]).with_suffix(".py"), Path(root, *parts[1:], "__init__.py")):
            if candidate.is_file():
                return candidate
    return None


def _brandcap_imports(name: str) -> set[str]:
    """The brandcap modules that module `name` imports anywhere in its source (lazy imports too)."""
    source = _module_file(name)
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))) if source else ():
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("brandcap.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "brandcap":
            found.add(node.module)
            found |= {
                f"{node.module}.{alias.name}" for alias in node.names if _module_file(f"{node.module}.{alias.name}")
            }
    return {m for m in found if m != "brandcap" and _module_file(m)}


def imported_modules(module: str) -> list[str]:
    """`module` and every brandcap module it imports, directly or not, lazily or not (sorted names)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_brandcap_imports(name) - seen)
    return sorted(seen)


def module_file(name: str) -> Path | None:
    """The source file of brandcap module `name` (None when there is none)."""
    return _module_file(name)


def code_digest(stage_module: str) -> str:
    """sha256 over the source of `stage_module` and every brandcap module it imports, directly or not:
    the code the stage runs, the same whichever process computes it."""
    return named_texts_sha256((name, _module_file(name).read_bytes()) for name in imported_modules(stage_module))


def stage_fingerprint(
    stage_module: str, inputs: dict[str, str | Path | list[str | Path]], params: dict[str, Any]
) -> dict[str, Any]:
    """What a stage's resume state depends on: input contents, the params it reads, its code."""
    return {
        "inputs": {name: content_digest(path) for name, path in sorted(inputs.items())},
        "params": canonical_json_sha256(params),
        "code": code_digest(stage_module),
    }


def _changed(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    changed = [
        f"input {name}"
        for name in sorted(set(stored.get("inputs", {})) | set(current["inputs"]))
        if stored.get("inputs", {}).get(name) != current["inputs"].get(name)
    ]
    changed += [part for part in ("params", "code") if stored.get(part) != current[part]]
    return changed


def prepare_resume_dir(resume_dir: str | Path, fingerprint: dict[str, Any]) -> bool:
    """Keep `resume_dir` if it was made under `fingerprint`, else empty it (logging why); True when kept."""
    resume_dir = Path(resume_dir)
    marker = resume_dir / FINGERPRINT_FILE
    kept = False
    if resume_dir.exists():
        try:
            stored = json.loads(marker.read_text())
        except (OSError, ValueError):
            stored = None
        changed = ["its fingerprint is missing"] if not isinstance(stored, dict) else _changed(stored, fingerprint)
        if changed:
            log.info("discarding the resume state in %s: %s changed since it was made", resume_dir, ", ".join(changed))
            shutil.rmtree(resume_dir)
        else:
            kept = True
    resume_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(marker, fingerprint)
    return kept


def finish_resume_dir(resume_dir: str | Path) -> None:
    """Remove a stage's resume state after success: the outputs are now the record."""
    shutil.rmtree(resume_dir, ignore_errors=True)
