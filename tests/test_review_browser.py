"""The review page in a real browser: headless Chromium (Debian's `chromium` package, which `make test` installs)
opens index.html from the file system, runs its script, and the test reads the rendered DOM and keeps a screenshot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlencode

import pytest
from PIL import Image

from tests.conftest import ODD, Elements, expected_counts, make_study, review

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium on PATH: install Debian's package (apt-get install chromium; `make test` does) to test the review page in a browser",
)


def chromium(tmp_path: Path, url: str, *args: str) -> str:
    """Headless Chromium on `url` with a throwaway profile; its stdout (the DOM after the page's script ran, with --dump-dom)."""
    run = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


@pytest.fixture
def page_url(tmp_path, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)
    study = make_study(tmp_path)
    review(study)
    return (study["out"] / "index.html").as_uri()


def shown_rows(dom: Elements, run: str) -> list[tuple[dict, dict]]:
    """(row, its answer cell for `run`) of every row the script left visible."""
    rows, out = [], []
    for tag, attrs, _ in dom.found:
        if tag == "tr" and attrs.get("class") == "item":
            rows.append([attrs, None])
        elif tag == "td" and attrs.get("data-run") == run:
            rows[-1][1] = attrs
    for row, cell in rows:
        if "hidden" not in row:
            assert "hidden" not in cell, "the shown run's answer must be visible"
            out.append((row, cell))
    return out


def test_filters_from_the_query_string_apply_in_the_browser(page_url, tmp_path):
    dom = Elements(chromium(tmp_path, page_url + "?" + urlencode({"outcome": "correct", "brand": ODD}), "--dump-dom"))
    rows = shown_rows(dom, "lora")
    assert [(row["data-brand"], cell["data-outcome"]) for row, cell in rows] == [(ODD, "correct")]
    assert [text for a, text in dom.where("b") if a.get("id") == "shown"] == ["1"]
    assert dom.shown_counts() == expected_counts()  # the counts stay the run's, whatever the filter

    dom = Elements(chromium(tmp_path, page_url + "?run=freeze_llm&changed=1", "--dump-dom"))
    assert shown_rows(dom, "freeze_llm") == []  # freeze_llm answers as the base model does: nothing changed
    assert dom.shown_counts()["best-changed"] == 0
    assert all("hidden" in cell for tag, cell, _ in dom.found if tag == "td" and cell.get("data-run") == "lora")


def test_the_page_renders_and_a_screenshot_is_kept(page_url, tmp_path):
    shot = tmp_path / "review.png"
    chromium(
        tmp_path, page_url + "?outcome=wrong", "--hide-scrollbars", "--window-size=1280,900", f"--screenshot={shot}"
    )
    with Image.open(shot) as img:
        assert img.size == (1280, 900)
        colours = img.convert("RGB").getcolors(maxcolors=1_000_000)
    assert len(colours) > 50  # text, highlights and photos were drawn, not a blank page
