"""One orchestrator at a time: Snakemake and DVC must not run stages of one project together.

Each orchestrator guards itself against a second copy of itself (Snakemake's directory lock,
DVC's rwlock), but not against the other one: `dvc repro` during a Snakemake run would delete
`models/base` under a running evaluate job. So every stage registers in `.resume/project.lock`
under the orchestrator that started it (found among its parent processes), and the Snakemake
workflow registers itself when it starts. A stage or workflow of another orchestrator, while the
owner is alive, is refused at once with the running stage and its pid.

That refusal comes too late for `dvc repro`: DVC deletes a stage's declared outputs before it runs
the stage's command, so a DVC stage refused during a Snakemake run had already removed files the
Snakemake run was reading. So a Snakemake run also holds DVC's own repository lock
(`.dvc/tmp/lock`, the lock every `dvc repro` takes before it touches anything) from start to end
(`hold_dvc_lock`): DVC then refuses at once ("Unable to acquire lock") and deletes nothing; and a
Snakemake run that cannot take it (a DVC command is running) refuses to start.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from brandcap.files.atomic import write_json
from brandcap.running.resume_root import RESUME_ROOT

LOCK_FILE = RESUME_ROOT / "project.lock"
DVC_REPO_LOCK = Path(".dvc/tmp/lock")  # DVC's own (dvc/lock.py: zc.lockfile, an flock on this file)
ORCHESTRATORS = ("snakemake", "dvc")


class ProjectBusy(RuntimeError):
    """Another orchestrator is running stages of this project."""


@dataclass(frozen=True)
class Orchestrator:
    kind: str  # snakemake, dvc, or manual (a stage started by hand or from Python)
    pid: int
    host: str


def _parent_pid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def _program(pid: int) -> str | None:
    """'snakemake' or 'dvc' when the process runs one of them (directly or as `python .../dvc`)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:3]
    except OSError:
        return None
    names = {os.path.basename(arg.decode(errors="replace")) for arg in argv}
    names |= {arg.decode(errors="replace") for arg in argv}
    return next((kind for kind in ORCHESTRATORS if kind in names), None)


def current_orchestrator(pid: int | None = None) -> Orchestrator:
    """The nearest ancestor process that is Snakemake or DVC, else this process itself ('manual')."""
    pid = os.getpid() if pid is None else pid
    ancestor = _parent_pid(pid)
    while ancestor > 1:
        kind = _program(ancestor)
        if kind:
            return Orchestrator(kind, ancestor, socket.gethostname())
        ancestor = _parent_pid(ancestor)
    return Orchestrator("manual", pid, socket.gethostname())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _locked_state(lock_file: Path) -> Iterator[dict]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file.with_suffix(".guard"), "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            state = json.loads(lock_file.read_text()) if lock_file.exists() else {}
        except (OSError, ValueError):
            state = {}
        yield state
        write_json(lock_file, state)


def _key(run: Orchestrator) -> str:
    return f"{run.host}:{run.pid}"


def _prune(state: dict, host: str) -> None:
    """Forget runs of this host whose process has ended (a killed run leaves its entry behind)."""
    for key, run in list(state.items()):
        if run["host"] == host and not _alive(run["pid"]):
            del state[key]
        else:
            run["stages"] = {
                pid: name for pid, name in run.get("stages", {}).items() if run["host"] != host or _alive(int(pid))
            }


def _conflict(state: dict, me: Orchestrator) -> str | None:
    """Why `me` may not run now, or None. Runs of the same orchestrator kind never conflict here:
    Snakemake and DVC each lock out a second copy of themselves."""
    for run in state.values():
        if run["kind"] != me.kind:
            running = [f"stage {name} (pid {pid})" for pid, name in run.get("stages", {}).items()]
            doing = ", ".join(running) if running else "between stages"
            return (
                f"another run is using this project: {run['kind']} (pid {run['pid']} on {run['host']}) is running {doing}; "
                f"wait for it to finish or stop it, then run again (lock file: {LOCK_FILE})"
            )
    return None


def busy_reason(me: Orchestrator, lock_file: Path = LOCK_FILE) -> str | None:
    """Why `me` could not run now (another orchestrator's live run), or None."""
    with _locked_state(lock_file) as state:
        _prune(state, me.host)
        return _conflict(state, me)


def claim(stage: str | None, me: Orchestrator | None = None, lock_file: Path = LOCK_FILE) -> Orchestrator:
    """Register `stage` (None: the orchestrator itself) under `me`; raise ProjectBusy if another orchestrator runs."""
    me = me or current_orchestrator()
    with _locked_state(lock_file) as state:
        _prune(state, me.host)
        reason = _conflict(state, me)
        if reason:
            raise ProjectBusy(reason)
        run = state.setdefault(_key(me), {"kind": me.kind, "pid": me.pid, "host": me.host, "stages": {}})
        if stage is not None:
            run["stages"][str(os.getpid())] = stage
    return me


def release(me: Orchestrator, stage: bool = True, lock_file: Path = LOCK_FILE) -> None:
    """Unregister this process's stage. A manual run, or the orchestrator itself (stage=False), leaves
    entirely; a DVC run stays registered while its dvc process lives (it runs more stages)."""
    with _locked_state(lock_file) as state:
        run = state.get(_key(me))
        if run is None:
            return
        run["stages"].pop(str(os.getpid()), None)
        if not stage or (me.kind == "manual" and not run["stages"]):
            del state[_key(me)]


@contextmanager
def stage_lock(stage: str, lock_file: Path = LOCK_FILE) -> Iterator[Orchestrator]:
    me = claim(stage, lock_file=lock_file)
    try:
        yield me
    finally:
        release(me, lock_file=lock_file)


def hold_dvc_lock(lock_file: Path = DVC_REPO_LOCK):
    """Take DVC's repository lock and hold it until the returned lock is closed (or the process ends);
    ProjectBusy when a DVC command holds it now."""
    import zc.lockfile  # DVC's own dependency, as DVC takes the lock

    lock_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        return zc.lockfile.LockFile(str(lock_file), content_template="{pid} snakemake")
    except zc.lockfile.LockError:
        raise ProjectBusy(
            f"a DVC command is running in this project (it holds {lock_file}); wait for it to finish or stop it, "
            "then run again"
        ) from None
