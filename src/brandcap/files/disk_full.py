"""Out of disk space, whatever library noticed it: one message naming the file and the free space.

    if (message := disk_full_message(err, fallback=Path("results/export/best"))):
        log.error("%s", message)   # "<path>: cannot write it, the disk is full (3 MB free); ..."

A full disk reaches a stage in many shapes: an OSError with errno ENOSPC or EDQUOT (ours name the file:
`brandcap.files.atomic.DiskFullError`), `shutil.Error` with a list of per-file copy errors (copytree),
safetensors' `SafetensorError: ... I/O error: No space left on device (os error 28)`, or any of these
as the cause of another exception. The stage runner (`brandcap.running.stage.run_stage`) turns every one of
them into the same message; `fallback` is named when the error does not say which file it was.
"""

from __future__ import annotations

import errno
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# How libraries that do not raise OSError say it (safetensors' Rust I/O errors, shutil's copy error lists).
_DISK_FULL_TEXT = re.compile(r"No space left on device|Disk quota exceeded|os error (?:28|122)\b|\[Errno (?:28|122)\]")


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _full_path(err: BaseException) -> tuple[bool, str | None]:
    """(whether this one error is a full disk, the file it names if any)."""
    if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
        return True, getattr(err, "path", None) or err.filename2 or err.filename
    if isinstance(err, shutil.Error) and err.args and isinstance(err.args[0], list):
        for entry in err.args[0]:
            if len(entry) == 3 and _DISK_FULL_TEXT.search(str(entry[2])):
                return True, str(entry[1])
    return bool(_DISK_FULL_TEXT.search(str(err))), None


def free_megabytes(path: Path) -> int:
    """Free space on the file system that holds `path` (its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free // 1_000_000


def disk_full_message(err: BaseException, fallback: Path) -> str | None:
    """The message for a full disk anywhere in `err`'s chain, or None when it is something else."""
    for link in _chain(err):
        full, path = _full_path(link)
        if full:
            where = Path(path) if path else Path(fallback)
            return (
                f"{where}: cannot write it, the disk is full ({free_megabytes(where)} MB free); free space on its file "
                f"system (df -h {where.parent}) or move the project, then rerun: finished work resumes, no partial file was kept"
            )
    return None
