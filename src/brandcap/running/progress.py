"""Progress of long work: a live bar on a terminal, a few plain lines in a log.

    with progress(len(items), "caption", unit="item", initial=n_cached) as bar:
        for item in items:
            ...
            bar.update(1)

A tqdm bar is drawn only when the stream (stderr) is a terminal: written into a file or a pipe
(a Snakemake log, a cluster job's output) every refresh would be one more `\\r` update. The
log gets a line through `logging` every `LOG_EVERY_S` seconds or `LOG_EVERY_FRACTION` of the
total, whichever comes first, and one at the end; on a terminal these lines print above the bar.
`quiet_library_bars` does the same for the bars the Hugging Face libraries draw themselves.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger(__name__)

LOG_EVERY_S = 30.0  # a heartbeat for slow work
LOG_EVERY_FRACTION = 0.1  # and a line per tenth of the work for fast work


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def quiet_library_bars(stream: TextIO | None = None) -> None:
    """Turn off the Hugging Face libraries' own bars (loading weights, dataset maps) when `stream` (stderr)
    is no terminal; libraries imported later (and child processes) read the environment variable."""
    if is_terminal(stream if stream is not None else sys.stderr):
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


class Progress:
    """Counts done work; draws the bar (terminal only) and logs a line now and then."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str,
        initial: int = 0,
        stream: TextIO | None = None,
        logger: logging.Logger = log,
        every_s: float = LOG_EVERY_S,
        every_fraction: float = LOG_EVERY_FRACTION,
    ):
        stream = stream if stream is not None else sys.stderr
        self.total, self.desc, self.unit, self.logger = total, desc, unit, logger
        self.done = self.initial = self.logged_done = initial
        self.step = max(1, int(total * every_fraction)) if total else None
        self.every_s = every_s
        self.started = self.last_logged = time.monotonic()
        self.next_count = self._next_count_after(initial)
        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit=unit,
            file=stream,
            dynamic_ncols=True,
            disable=not is_terminal(stream),
        )
        self._redirect = ExitStack()
        if not self.bar.disable:  # log lines to the terminal print above the bar instead of through it
            self._redirect.enter_context(logging_redirect_tqdm())

    def _next_count_after(self, done: int) -> float:
        return (done // self.step + 1) * self.step if self.step else float("inf")

    def update(self, n: int = 1) -> None:
        self.bar.update(n)
        self.done += n
        now = time.monotonic()
        if self.done >= self.next_count or now - self.last_logged >= self.every_s:
            self._log_line(now)

    def _log_line(self, now: float) -> None:
        self.last_logged, self.logged_done, self.next_count = now, self.done, self._next_count_after(self.done)
        rate = (self.done - self.initial) / (now - self.started) if now > self.started else 0.0
        of_total = f"/{self.total} ({self.done / self.total:.0%})" if self.total else ""
        self.logger.info(
            "%s: %d%s %s, %.1f %s/s, %.0f s",
            self.desc,
            self.done,
            of_total,
            self.unit,
            rate,
            self.unit,
            now - self.started,
        )

    def close(self) -> None:
        """Close the bar; the log's last line says where the work ended."""
        self.bar.close()
        self._redirect.close()
        if self.done != self.logged_done:
            self._log_line(time.monotonic())


@contextmanager
def progress(
    total: int,
    desc: str,
    unit: str = "it",
    initial: int = 0,
    stream: TextIO | None = None,
    logger: logging.Logger = log,
) -> Iterator[Progress]:
    """A Progress for the duration of the block."""
    bar = Progress(total, desc, unit, initial=initial, stream=stream, logger=logger)
    try:
        yield bar
    finally:
        bar.close()
