"""Append-only JSONL files (resume caches, partial predictions, training logs): one reader, one appender.

    records = read_append_only(".resume/caption/cache.jsonl", CacheRecord)
    with open_append_only(".resume/caption/cache.jsonl") as sink: sink.write(json.dumps(rec) + "\\n")

Such files are written one record per line by a process that can be killed at any moment, and
they live for days next to other tools, so the reader survives what it may find there:
- a last line without its newline (torn by a killed writer, perhaps inside a multi-byte
  character) is unfinished work: ignored, so the work it held is done again;
- any other line that is not UTF-8, not JSON, not a JSON object, or not a valid record (when a
  pydantic model is given) is skipped and counted; one warning names the file, the count and the
  first such line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)


def _parse_line(raw: bytes, record_model: type[BaseModel] | None) -> dict[str, Any]:
    """The record on one complete line; ValueError saying why it is not one."""
    obj = json.loads(raw.decode("utf-8"))  # UnicodeDecodeError and JSONDecodeError are ValueErrors
    if not isinstance(obj, dict):
        raise ValueError(f"a JSON {type(obj).__name__}, not an object")
    if record_model is None:
        return obj
    try:
        return record_model.model_validate(obj).model_dump()
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "record"
        raise ValueError(f"{where}: {first['msg']}") from None


def read_append_only(path: str | Path, record_model: type[BaseModel] | None = None) -> list[dict[str, Any]]:
    """The valid records of an append-only JSONL file, in file order (see the module docstring)."""
    path = Path(path)
    records: list[dict[str, Any]] = []
    invalid: list[tuple[int, str]] = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                log.info("%s: line %d is unfinished (a killed writer); its work will be done again", path, number)
                break
            if not raw.strip():
                continue
            try:
                records.append(_parse_line(raw, record_model))
            except ValueError as err:
                invalid.append((number, str(err)[:200]))
    if invalid:
        number, why = invalid[0]
        log.warning(
            "%s: skipped %d invalid line(s) (first: line %d: %s); their work will be done again",
            path,
            len(invalid),
            number,
            why,
        )
    return records


def open_append_only(path: str | Path) -> TextIO:
    """A text handle appending to `path`; a torn last line is cut off first so records never merge."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        with open(path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
    return open(path, "a", encoding="utf-8")
