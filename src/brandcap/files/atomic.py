"""Atomic file and directory writes: write to a temporary name beside the target, then rename; and the readers of
the JSON and JSONL files they write.

    with staged_directory("models/base") as stage:    # a whole directory: appears complete or not at all
        model.save_pretrained(stage)
    write_json("results/metrics.json", metrics)        # one file

A killed stage never leaves a partial file or directory under the final name. Files are created readable
by others (0o666 minus the umask, as `open` would; tempfile.mkstemp makes them 0600), and a
full disk is reported with the path being written.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from brandcap.files.disk_full import DISK_FULL_ERRNOS


class DiskFullError(OSError):
    """No space (or quota) left while writing a file; the message names the file (`path`)."""

    def __init__(self, code: int, message: str, path: Path | None = None):
        super().__init__(code, message)
        self.path = str(path) if path is not None else None


def _new_temporary(path: Path) -> Path:
    """A new empty file beside `path`, named .<name>.<random>.tmp, mode 0o666 minus the umask."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it over `path` on success."""
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = _new_temporary(path)
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as err:
        if err.errno not in DISK_FULL_ERRNOS or isinstance(err, DiskFullError):
            raise
        raise DiskFullError(
            err.errno,
            f"{path}: cannot write it, the disk is full ({err.strerror}); free space on its "
            f"file system (df -h {path.parent}) or move the project, then rerun the stage",
            path,
        ) from err
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def _new_temporary_directory(path: Path) -> Path:
    """A new empty directory beside `path`, named .<name>.<random>.tmp (mode as mkdir makes it)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue


def remove_stale_temporaries(path: str | Path) -> None:
    """Remove what a killed writer of `path` left beside it: files and directories named
    .<name>.<random>.tmp. Only `path`'s own (each output has one writer at a time): a folder is
    shared by jobs that run side by side, and another job's temporaries there are in use."""
    path = Path(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        _remove(stale)


def clear_owned_folder_of_temporaries(folder: str | Path) -> None:
    """Remove every .<name>.<random>.tmp file and directory that a killed writer left in `folder`, a folder
    that one stage owns alone (its images, its resume state): no other job can be writing there."""
    folder = Path(folder)
    if folder.is_dir():
        for stale in folder.glob(".*.tmp"):
            _remove(stale)


def _remove(stale: Path) -> None:
    if stale.is_dir():
        shutil.rmtree(stale, ignore_errors=True)
    else:
        stale.unlink(missing_ok=True)


@contextmanager
def staged_directory(path: str | Path) -> Iterator[Path]:
    """Yield a fresh directory beside `path`; it replaces `path` only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    stage = _new_temporary_directory(path)
    try:
        yield stage
        if path.exists():
            old = _new_temporary_directory(path)
            os.replace(path, old)  # a directory cannot be renamed over a non-empty one
            os.replace(stage, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def mirror_directory(source: str | Path, target: str | Path) -> None:
    """Place a copy of `source` at `target` atomically, with hard links where the file system allows."""
    with staged_directory(target) as stage:
        shutil.copytree(source, stage, dirs_exist_ok=True, copy_function=link_or_copy)


def link_or_copy(source: str | Path, target: str | Path) -> None:
    """A hard link of `source` at `target` (no copy of the bytes), or a copy across file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def place_link_or_copy(source: str | Path, target: str | Path) -> None:
    """`target` = `source`, atomically: a hard link where the file system allows, else a copy."""
    with atomic_path(target) as tmp:
        tmp.unlink()  # os.link needs a free name
        link_or_copy(source, tmp)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- reading what these write
# The one family of JSON readers: whole JSON files (`read_json`), JSONL files written whole (`numbered_jsonl`,
# `read_jsonl`); files appended to while a stage runs, which a kill can leave with a torn last line, are read by
# brandcap.files.append_only, and records checked against a schema by brandcap.files.stage_records.
REWRITE = "fix the line or rerun the stage that writes the file"


def numbered_jsonl(path: str | Path, fix: str = REWRITE) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number in the file, record) of every non-blank line of a JSONL file written whole (`write_jsonl`, or a
    user's own); a line that is not a JSON object is refused with the file, its line number and `fix`."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {number} is not a JSON record ({err}); {fix}") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}: line {number} is not a JSON object; {fix}")
            yield number, record


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a JSONL file written whole (see `numbered_jsonl`)."""
    return [record for _, record in numbered_jsonl(path)]


def read_json(path: str | Path, fix: str) -> Any:
    """A whole JSON file; a missing or unreadable one is refused with its path and `fix`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; {fix}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); {fix}") from None


def write_parquet(path: str | Path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
