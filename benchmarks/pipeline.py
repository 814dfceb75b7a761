"""Where a whole run's time goes: the default profile from scratch, per stage.

    .venv/bin/python benchmarks/pipeline.py                              # the default profile, as make run runs it (about 17 min on 2 cores)
    .venv/bin/python benchmarks/pipeline.py --profile configs/smoke.yaml # the smoke profile (about a minute)

Copies the checkout's tracked files into a temporary folder (a fresh clone without results),
runs `snakemake --cores N results/tables.md` there and prints, per job, its wall time split into
interpreter and import start-up (the stage's own "start ... after N s" log line) and stage body
("done in N s"), the stage bodies' share of the whole run, and Snakemake's own share (planning,
job scheduling and bookkeeping: the run's wall time minus the summed job times with one core).
The evaluate jobs' generation seconds and the JVM-backed caption metrics are inside "body".
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# stage names may hold spaces: train[freeze_llm, seed 4]
START = re.compile(r"stage (.+?): start \(params [^)]*\) after ([\d.]+) s of interpreter and import start-up")
DONE = re.compile(r"stage (.+?): done in ([\d.]+) s")


def fresh_copy(dest: Path) -> None:
    """The checkout's tracked and untracked-but-not-ignored files, as a fresh clone would have them."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)  # DVC and provenance expect a repository


def stage_times(logs: Path) -> list[tuple[str, float, float]]:
    """(job, start-up seconds, body seconds) from every stage log under `logs`."""
    rows = []
    for log in sorted(logs.rglob("*.log")):
        text = log.read_text(errors="replace")
        start, done = START.search(text), DONE.search(text)
        if start and done:
            rows.append((str(log.relative_to(logs).with_suffix("")), float(start.group(2)), float(done.group(2))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="", help="a profile overlay (configs/*.yaml); default: params.yaml alone")
    parser.add_argument(
        "--cores", default="all", help="snakemake --cores: a number, or all (what make run uses; default)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary run folder and print its path")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="brandcap-pipeline-"))
    try:
        fresh_copy(work)
        command = [sys.executable, "-m", "snakemake", "--cores", str(args.cores), "results/tables.md"]
        command += ["--configfile", args.profile] if args.profile else []
        started = time.perf_counter()
        subprocess.run(command, cwd=work, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        total = time.perf_counter() - started
        rows = stage_times(work / "logs")
        print(f"{'job':<40} {'start-up s':>10} {'body s':>8} {'share':>6}")
        for job, startup, body in rows:
            print(f"{job:<40} {startup:>10.1f} {body:>8.1f} {(startup + body) / total:>6.1%}")
        startup_sum, body_sum = sum(r[1] for r in rows), sum(r[2] for r in rows)
        print(f"{'all jobs':<40} {startup_sum:>10.1f} {body_sum:>8.1f} {(startup_sum + body_sum) / total:>6.1%}")
        print(f"interpreter and import start-up: {startup_sum / total:.1%} of the run")
        print(f"stage bodies: {body_sum / total:.1%} of the run")
        if args.cores == "1":
            print(f"Snakemake planning and bookkeeping: {(total - startup_sum - body_sum) / total:.1%} of the run")
        print(
            f"total: {total:.0f} s wall ({len(rows)} jobs, --cores {args.cores}, profile {args.profile or 'params.yaml'})"
        )
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
