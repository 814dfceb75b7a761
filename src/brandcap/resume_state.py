"""One fingerprint for every resumable stage, and the resume folder it guards.

A stage's resume state (partial predictions, Trainer checkpoints, fetched images) is reused only
when it was made from the same inputs (content hashes, never modification times, which
`dvc checkout` changes), the same params keys and the same source of the brandcap modules the
stage runs. Otherwise it is discarded, with a log line that says which part changed.

    fingerprint = stage_fingerprint(inputs={"test": test_jsonl, "images": images_dir},
                                    params={"eval": params.eval.model_dump(mode="json")})
    kept = prepare_resume_dir(resume_dir, fingerprint)
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from brandcap import atomic

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.json"
_CHUNK = 1 << 20


def _files(path: Path) -> Iterable[Path]:
    if path.is_dir():
        # Snakemake's directory stamp is no content (DVC ignores it too, see .dvcignore)
        yield from sorted(p for p in path.rglob("*") if p.is_file() and p.name != ".snakemake_timestamp")
    elif path.exists():
        yield path


def content_digest(path: str | Path | list[str | Path]) -> str:
    """sha256 over a file's bytes, a folder's relative names and file bytes, or a list of such
    paths in order; '' when absent."""
    if isinstance(path, list):
        return hashlib.sha256("\n".join(f"{p}\0{content_digest(p)}" for p in path).encode()).hexdigest()
    path = Path(path)
    if not path.exists():
        return ""
    digest = hashlib.sha256()
    for file in _files(path):
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}\0".encode())
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()


def loaded_code_digest() -> str:
    """sha256 over the source of every brandcap module this process has imported: the code the stage runs."""
    digest = hashlib.sha256()
    for name in sorted(n for n in sys.modules if n == "brandcap" or n.startswith("brandcap.")):
        source = getattr(sys.modules[name], "__file__", None)
        if source and Path(source).exists():
            digest.update(f"{name}\0".encode() + Path(source).read_bytes())
    return digest.hexdigest()


def stage_fingerprint(inputs: dict[str, str | Path | list[str | Path]], params: dict[str, Any]) -> dict[str, Any]:
    """What a stage's resume state depends on: input contents, the params it reads, its code."""
    canonical = json.dumps(params, sort_keys=True, default=str)
    return {
        "inputs": {name: content_digest(path) for name, path in sorted(inputs.items())},
        "params": hashlib.sha256(canonical.encode()).hexdigest(),
        "code": loaded_code_digest(),
    }


def _changed(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    changed = [f"input {name}" for name in sorted(set(stored.get("inputs", {})) | set(current["inputs"]))
               if stored.get("inputs", {}).get(name) != current["inputs"].get(name)]
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
