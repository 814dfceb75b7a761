"""Where a result came from: the code commit, the parameters and the data it was made from.

    from brandcap.running.provenance import provenance
    provenance(params, Path("data/processed"), written=[Path("results/tables.md"), Path("results/metrics.json")])
    # {"commit": "7c0e446...", "params_sha256": "...", "data_sha256": "..."}

- `commit`: `git rev-parse HEAD` of the working directory's repository, with `+dirty` when tracked
  files differ from that commit (staged or not). `dvc.lock` and the files the caller is writing
  are not counted: `dvc repro` rewrites the lock file before the last stage runs, and a committed
  `results/metrics.json` is about to be replaced. `unknown` outside a git repository or without git.
- `params_sha256`: sha256 of the resolved parameters (every section, defaults filled in) as
  canonical JSON (sorted keys, no spaces, UTF-8). Snakemake with `--configfile` and DVC with the
  `brandcap profile` params.yaml resolve the same parameters, so they give the same hash.
- `data_sha256`: sha256 over `DATA_FILES` of the processed-data folder (the clean stage's split and
  report), each as its name, its length and its bytes. The split records carry each image's
  sha256, so the hash also pins the image content.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from brandcap.config.params import Params
from brandcap.files.digests import canonical_json_sha256, named_files_sha256

# The clean stage's outputs that define the data a study was trained and scored on (val.jsonl when
# the split has a validation part), in data/processed/.
DATA_FILES = ("train.jsonl", "val.jsonl", "test.jsonl", "clean_report.json")
# Rewritten by `dvc repro` itself while the pipeline runs; never a sign of edited sources.
PIPELINE_WRITTEN = ("dvc.lock",)
UNKNOWN = "unknown"


def params_sha256(params: Params) -> str:
    return canonical_json_sha256(params.model_dump(mode="json"))


def data_files(processed_dir: Path) -> list[Path]:
    """The `DATA_FILES` present in `processed_dir`, in that order."""
    return [Path(processed_dir) / name for name in DATA_FILES if (Path(processed_dir) / name).is_file()]


def data_sha256(processed_dir: Path) -> str:
    """sha256 over the processed data files (see `DATA_FILES`); a missing train or test file is an error."""
    processed_dir = Path(processed_dir)
    for required in ("train.jsonl", "test.jsonl"):
        if not (processed_dir / required).is_file():
            raise FileNotFoundError(f"{processed_dir / required}: not found; run the clean stage first")
    return named_files_sha256(data_files(processed_dir))


def _git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")  # read-only: never take the index lock
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def _is_inside(path: str, roots: set[str]) -> bool:
    return any(path == root or path.startswith(root + "/") for root in roots)


def source_commit(cwd: Path | None = None, written: Iterable[Path] = ()) -> str:
    """HEAD's sha, `+dirty` when tracked files other than dvc.lock and `written` changed; `unknown` outside git."""
    cwd = Path(cwd or Path.cwd()).resolve()
    try:
        head = _git(cwd, "rev-parse", "--verify", "HEAD").strip()
        top = Path(_git(cwd, "rev-parse", "--show-toplevel").strip()).resolve()
        changed = _git(cwd, "diff", "--name-only", "-z", "HEAD", "--").split("\0")
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    skipped = set()
    for path in [*PIPELINE_WRITTEN, *written]:
        absolute = (cwd / path).resolve()
        if absolute.is_relative_to(top):
            skipped.add(absolute.relative_to(top).as_posix())
    dirty = any(name and not _is_inside(name, skipped) for name in changed)
    return head + ("+dirty" if dirty else "")


def provenance(params: Params, processed_dir: Path, written: Iterable[Path] = ()) -> dict[str, Any]:
    """{commit, params_sha256, data_sha256} (strings); see the module docstring."""
    return {
        "commit": source_commit(written=written),
        "params_sha256": params_sha256(params),
        "data_sha256": data_sha256(Path(processed_dir)),
    }
