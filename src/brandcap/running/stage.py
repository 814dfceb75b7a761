"""What every stage entry script shares: its arguments, logging, params validation, timing.

An entry script in workflow/scripts/ names its path options and the package function to call;
Snakemake and DVC run the same command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from brandcap.config.params import Params, ParamsError
from brandcap.config.profiles import resolve_params
from brandcap.files.disk_full import disk_full_message
from brandcap.running.launch import LAUNCHED_ENV, is_main_process, process_count
from brandcap.running.progress import quiet_library_bars
from brandcap.running.project_lock import ProjectBusy, stage_lock
from brandcap.running.resume_root import RESUME_ROOT

log = logging.getLogger("brandcap")

# torch makes its compile-cache folder (<system temp dir>/torchinductor_<user>) as soon as
# transformers is imported, compiled or not. A stage keeps it under the resume root with every other
# file it leaves (the entry scripts import this module before any stage module loads torch).
TORCH_CACHE_DIR = RESUME_ROOT / "torch"
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(TORCH_CACHE_DIR))


def stage_args(
    doc: str | None, *path_options: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(doc or "").strip().splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=doc,
    )
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="the parameter file (default: params.yaml)"
    )
    parser.add_argument(
        "--overlay",
        type=Path,
        action="append",
        default=[],
        help="a profile laid over --params (repeatable; Snakemake passes its --configfile files)",
    )
    parser.add_argument("--log", type=Path, default=None, help="also write the log to this file")
    for name in path_options:
        parser.add_argument(f"--{name}", type=Path, required=True)
    if extra:
        extra(parser)
    return parser.parse_args()


def setup_logging(log_file: Path | None) -> None:
    """Log to stderr and `log_file`; under a launcher only rank 0 writes the file, after the launcher's lines."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None and is_main_process():
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.FileHandler(log_file, mode="a" if LAUNCHED_ENV in os.environ else "w", encoding="utf-8")
        )
    rank = f"[rank {os.environ['RANK']}] " if process_count() > 1 else ""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s {rank}%(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    # Third-party chatter (HTTP request lines, hub checks) would drown the summaries.
    for noisy in ("httpx", "httpx2", "openai", "urllib3", "aiohttp.access", "DeepSpeed", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_library_bars()  # their bars would be thousands of \r updates in a log file


def startup_seconds() -> float:
    """Seconds since this process started: the interpreter, the imports and parameter validation."""
    return time.time() - psutil.Process().create_time()


def pin_cpu_threads() -> int:
    """The CPU threads of the stage's numerics: OMP_NUM_THREADS when set, else 1; returns the count.

    Snakemake sets OMP_NUM_THREADS to a job's `threads` (1 here); DVC sets nothing, and torch would
    then use every core. Sums split over another number of threads round differently, so the same
    study would give other weights and losses under DVC than under Snakemake. Torch, when the stage
    script has imported it already, is set too (it reads the variable only at import)."""
    value = os.environ.setdefault("OMP_NUM_THREADS", "1")
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(
            f"OMP_NUM_THREADS={value!r}: give a whole number of CPU threads of at least 1, or unset it (1)"
        )
    threads = int(value)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


# The path options that name what a stage writes, in the order a full-disk message falls back on them.
OUTPUT_OPTIONS = ("out", "checkpoints", "tables", "catalog", "captions", "images")


def output_path(args: argparse.Namespace) -> Path:
    """What the stage writes (its first output option), named when a full-disk error does not name a file."""
    return next((Path(getattr(args, option)) for option in OUTPUT_OPTIONS if getattr(args, option, None)), Path.cwd())


class StageWaits(Exception):
    """The stage stops on purpose, its finished work kept, until something outside it is done (batch captioning:
    the request files are to be answered); the message says what, and a rerun goes on from there."""


# The exit status of a stage that waits (StageWaits): not a failure of the code, so no traceback.
WAITS_EXIT = 5


def run_stage(name: str, args: argparse.Namespace, body: Callable[[Params], None]) -> None:
    """Validate params, run the stage body under the project lock, log its wall time; a bad parameter
    file exits 2 with its message, a project busy with another orchestrator exits 3, a full disk exits 4
    with `<path>: cannot write it, the disk is full (N MB free)` whichever library noticed it, a stage that
    waits for work outside it (StageWaits) exits 5 with what to do."""
    pin_cpu_threads()
    setup_logging(args.log)
    try:
        params = resolve_params(args.params, args.overlay)
    except ParamsError as err:
        log.error("%s", err)
        raise SystemExit(2) from None
    try:
        with stage_lock(name):
            start = time.perf_counter()
            params_files = " + ".join(map(str, [args.params, *args.overlay]))
            log.info(
                "stage %s: start (params %s) after %.1f s of interpreter and import start-up",
                name,
                params_files,
                startup_seconds(),
            )
            body(params)
            log.info("stage %s: done in %.1f s", name, time.perf_counter() - start)
    except ProjectBusy as err:
        log.error("stage %s refused: %s", name, err)
        raise SystemExit(3) from None
    except StageWaits as err:
        log.error("stage %s stops and waits: %s", name, err)
        raise SystemExit(WAITS_EXIT) from None
    except Exception as err:
        if full := disk_full_message(err, fallback=output_path(args)):
            log.error("stage %s failed: %s", name, full)
            raise SystemExit(4) from None
        # into the log file too: a failed job's log is what Snakemake keeps and points to
        log.error("stage %s failed: %s: %s", name, type(err).__name__, err)
        raise
