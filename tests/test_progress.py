"""Progress: a bar on a terminal only, a bounded number of plain lines in a log.

.venv/bin/python -m pytest tests/test_progress.py -q
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import pty
import select
import termios

from brandcap.running.progress import progress, quiet_library_bars


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def count_to(n: int, stream, caplog, **kwargs) -> list[str]:
    with caplog.at_level(logging.INFO, logger="brandcap.running.progress"):
        with progress(n, "caption", unit="item", stream=stream, **kwargs) as bar:
            for _ in range(n):
                bar.update(1)
    return [r.getMessage() for r in caplog.records if r.name == "brandcap.running.progress"]


def test_a_file_gets_no_bar_and_a_line_per_tenth(caplog):
    stream = io.StringIO()  # a log file or a pipe: not a terminal
    lines = count_to(5000, stream, caplog)
    assert stream.getvalue() == ""
    assert "\r" not in "".join(lines)
    assert len(lines) == 10  # 10 %, 20 %, ... 100 %, not one per update
    assert lines[-1].startswith("caption: 5000/5000 (100%) item")


def test_resumed_work_counts_from_where_it_stood(caplog):
    with caplog.at_level(logging.INFO, logger="brandcap.running.progress"):
        with progress(100, "caption", unit="item", initial=95, stream=io.StringIO()) as bar:
            for _ in range(5):
                bar.update(1)
    lines = [r.getMessage() for r in caplog.records if r.name == "brandcap.running.progress"]
    assert lines == [lines[-1]] and lines[-1].startswith("caption: 100/100 (100%)")


def test_a_terminal_gets_the_bar(caplog):
    terminal = FakeTerminal()
    count_to(50, terminal, caplog)
    drawn = terminal.getvalue()
    assert "\r" in drawn and "50/50" in drawn and "caption" in drawn


def _read_all(fd: int) -> str:
    """Everything written to the pty so far (one read may return only the first refreshes)."""
    chunks = []
    while select.select([fd], [], [], 0.5)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_a_real_pseudo_terminal_gets_the_bar(caplog):
    leader, follower = pty.openpty()
    termios.tcsetwinsize(follower, (24, 100))  # a new pty is 0 columns wide
    try:
        with os.fdopen(follower, "w", closefd=False) as stream:
            assert stream.isatty()
            count_to(20, stream, caplog)
        drawn = _read_all(leader)
    finally:
        os.close(leader)
        os.close(follower)
    assert "20/20" in drawn


def test_library_bars_are_off_without_a_terminal(monkeypatch):
    import huggingface_hub.utils
    import transformers.utils.logging as hf_logging

    hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")  # the module, not its tqdm class

    monkeypatch.setattr(hf_logging, "_tqdm_active", True)  # restored after the test
    monkeypatch.setattr(hub_tqdm, "progress_bar_states", {})
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    quiet_library_bars(FakeTerminal())
    assert hf_logging.is_progress_bar_enabled() and not huggingface_hub.utils.are_progress_bars_disabled()
    quiet_library_bars(io.StringIO())
    assert not hf_logging.is_progress_bar_enabled() and huggingface_hub.utils.are_progress_bars_disabled()
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"  # for libraries imported later and child processes
