"""Snakemake's report of a finished smoke build (a copy of the session's shared one), opened in a real browser: `snakemake --report report.zip` writes
the zip and nothing else in the project, and the page (a React app with its data embedded) shows the results that
rules/*.smk wrap in report(): the tables and the metrics file, the plots, the clean stage's report and examples,
and the review gallery with its photos, each with the caption from report/*.rst under its category.

Headless Chromium (Debian's `chromium` package, which `make test` installs) clicks through the unzipped report as a
person would: a copy of report.html, probe.html, carries a small script that follows the `step` query parameters
(a menu entry, a result's view or info button), then records what the page shows as JSON in the DOM that
--dump-dom prints. What --dump-dom cannot show, whether a plot and the gallery's photos loaded, the script reads
from the live page.

    .venv/bin/python -m pytest tests/test_report.py -q
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.conftest import SMOKE

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium on PATH: install Debian's package (apt-get install chromium; `make test` does) to test the report in a browser",
    ),
]

# What a report command may write in the project: Snakemake's own log and lock folders; brandcap's project lock is
# read and written back unchanged (brandcap.running.project_lock, checked by every Snakemake call at start-up).
REPORT_MAY_WRITE = (".snakemake/log/", ".snakemake/locks/", ".snakemake/iocache/")
PROJECT_LOCK = ".resume/project.lock"

PROBE = """
<script>
// tests/test_report.py: follow the ?step= parameters as clicks, then record what the page shows.
(async function () {
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
  const record = { error: null };
  const text = (el) => (el ? el.innerText.trim() : null);
  try {
    for (const step of new URLSearchParams(location.search).getAll("step")) {
      await sleep(200);
      const [kind, what] = [step.slice(0, step.indexOf(":")), step.slice(step.indexOf(":") + 1)];
      let target;
      if (kind === "menu") {
        target = [...document.querySelectorAll("nav a")].find((a) => a.innerText.trim() === what);
      } else {  // view / info: the first / second button of the result's row
        const row = [...document.querySelectorAll("nav tr")].find((tr) => tr.cells.length && tr.cells[0].innerText.trim() === what);
        target = row && row.querySelectorAll("a")[kind === "view" ? 0 : 1];
      }
      if (!target) throw new Error("nothing to click for " + step);
      target.click();
    }
    await sleep(500);
    record.menu = [...document.querySelectorAll("nav ul a")].map((a) => a.innerText.trim());
    record.rows = [...document.querySelectorAll("nav tbody tr")].map((tr) => tr.cells[0].innerText.trim());
    record.navbar = text(document.querySelector("nav"));
    const img = document.querySelector("#app img[src^='data/raw/']");
    if (img) {
      for (let i = 0; i < 50 && !img.complete; i++) await sleep(100);
      record.image = { src: img.getAttribute("src"), width: img.naturalWidth };
    }
    const frame = document.querySelector("#app iframe");
    if (frame) {
      record.frame = { src: frame.getAttribute("src") };
      for (let i = 0; i < 50 && !(frame.contentDocument && frame.contentDocument.readyState === "complete"); i++) await sleep(100);
      const page = frame.contentDocument;
      const photos = [...page.querySelectorAll("td.photo img")];
      for (let i = 0; i < 50 && !photos.some((p) => p.complete && p.naturalWidth > 0); i++) await sleep(100);
      Object.assign(record.frame, {
        title: page.title,
        items: page.querySelectorAll("tr.item").length,
        photos: photos.map((p) => p.getAttribute("src")),
        loaded: photos.filter((p) => p.complete && p.naturalWidth > 0).length,
      });
    }
    const description = document.querySelector("#app .prose");
    record.description = text(description);
  } catch (err) {
    record.error = String(err);
  }
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(record);
  document.body.appendChild(out);
})();
</script>
"""


def file_states(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under root but git's: relative path -> (size, mtime in ns, sha256 of the small ones)."""
    states = {}
    for path in root.rglob("*"):
        name = path.relative_to(root).as_posix()
        if path.is_file() and not name.startswith(".git/"):
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.st_size < 1_000_000 else ""
            states[name] = (stat.st_size, stat.st_mtime_ns, digest)
    return states


@pytest.fixture(scope="module")
def report_run(smoke_copy, run, tmp_path_factory) -> dict:
    """`snakemake --report OUT/report.zip --configfile configs/smoke.yaml` in the build, the zip unpacked; the
    project's files before and after."""
    out = tmp_path_factory.mktemp("report")
    before = file_states(smoke_copy)
    done = run(smoke_copy, ["snakemake", "--report", str(out / "report.zip"), "--configfile", SMOKE])
    after = file_states(smoke_copy)
    with zipfile.ZipFile(out / "report.zip") as archive:
        archive.extractall(out / "unzipped")
    page = out / "unzipped/report/report.html"
    head, end, tail = page.read_text(encoding="utf-8").rpartition(
        "</body>"
    )  # the last one: scripts hold the string too
    (page.parent / "probe.html").write_text(head + PROBE + end + tail, encoding="utf-8")
    return {"out": out, "page": page, "log": done.stdout + done.stderr, "before": before, "after": after}


def browse(report_run: dict, *steps: str) -> dict:
    """Open the report's probe copy in headless Chromium, click `steps` (menu:TEXT, view:PATH, info:PATH); what it shows."""
    url = (report_run["page"].parent / "probe.html").as_uri() + "?" + urlencode([("step", s) for s in steps])
    profile = report_run["out"] / "chromium-profile"
    shown = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-extensions",
            "--allow-file-access-from-files",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', shown.stdout, re.S)
    assert found, (
        "the probe script recorded nothing: the page's scripts did not run to the end\n" + shown.stderr[-3000:]
    )
    record = json.loads(html.unescape(found.group(1)))
    assert record["error"] is None, record
    return record


def test_the_report_command_writes_the_zip_and_nothing_else_in_the_project(report_run):
    before, after = report_run["before"], report_run["after"]
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    assert {name for name in changed if not name.startswith(REPORT_MAY_WRITE) and name != PROJECT_LOCK} == set()
    assert before[PROJECT_LOCK][2] == after[PROJECT_LOCK][2]  # rewritten at most, never changed
    assert "Report created." in report_run["log"]


def test_a_single_file_html_report_is_refused_for_the_gallery(smoke_copy, run, tmp_path):
    refused = run(
        smoke_copy, ["snakemake", "--report", str(tmp_path / "report.html"), "--configfile", SMOKE], check=False
    )
    assert refused.returncode != 0
    assert (
        "--report report.zip" in refused.stdout + refused.stderr
    )  # Snakemake's own advice, as docs/orchestrators.md says
    assert not (tmp_path / "report.html").exists()


def test_the_front_page_describes_this_run_and_lists_the_categories(report_run):
    shown = browse(report_run)
    assert shown["menu"] == ["Workflow", "Statistics", "About", "Data", "Results", "Review"]
    description = shown["description"]
    assert description.startswith("brandcap: can fine-tuning teach a vision-language model")
    # the Jinja in report/workflow.rst reads the resolved configuration: the smoke profile's, not params.yaml's
    assert "experiments freeze_llm, lora" in description
    assert "checkpoints at epochs 1, 2" in description


def test_the_tables_are_listed_with_their_caption(report_run):
    assert browse(report_run, "menu:Results")["menu"] == ["Plots", "Tables"]  # the category's subcategories
    assert browse(report_run, "menu:Results", "menu:Tables")["rows"] == ["results/metrics.json", "results/tables.md"]
    tables = browse(report_run, "menu:Results", "menu:Tables", "info:results/tables.md")["navbar"]
    assert "The study's tables" in tables and "(1) the data funnel" in tables
    metrics = browse(report_run, "menu:Results", "menu:Tables", "info:results/metrics.json")["navbar"]
    assert "dvc exp show" in metrics


def test_the_plots_show_with_their_own_captions(report_run):
    shown = browse(report_run, "menu:Results", "menu:Plots", "view:results/plots/brand_accuracy.png")
    assert shown["rows"] == ["results/plots/brand_accuracy.png", "results/plots/train_loss.png"]
    assert shown["image"]["src"].endswith("/brand_accuracy.png") and shown["image"]["width"] > 100  # the PNG was drawn
    accuracy = browse(report_run, "menu:Results", "menu:Plots", "info:results/plots/brand_accuracy.png")["navbar"]
    loss = browse(report_run, "menu:Results", "menu:Plots", "info:results/plots/train_loss.png")["navbar"]
    assert "Brand accuracy on the test set" in accuracy and "checkpoints at epochs 1, 2" in accuracy
    assert "Training loss against the optimizer step" in loss and "Brand accuracy" not in loss


def test_the_clean_report_and_its_examples_are_listed_under_data(report_run):
    shown = browse(report_run, "menu:Data")
    assert shown["rows"] == ["data/processed/clean_examples.md", "data/processed/clean_report.json"]  # not the splits
    report = browse(report_run, "menu:Data", "info:data/processed/clean_report.json")["navbar"]
    assert "What the clean stage did to the captions" in report and "Examples of the captions" not in report


def test_the_gallery_shows_every_test_item_with_its_photo(report_run, smoke_copy):
    shown = browse(report_run, "menu:Review", "view:results/review/index.html")
    assert shown["rows"] == ["results/review/index.html"]
    gallery = shown["frame"]
    assert gallery["title"].startswith("brandcap review")
    evaluated = (smoke_copy / "results/eval/base/epoch-0/predictions.jsonl").read_text().splitlines()
    assert gallery["items"] == len(evaluated) > 0
    assert len(gallery["photos"]) == len(evaluated) and gallery["loaded"] > 0  # the thumbnails came with the zip
    folder = (report_run["page"].parent / gallery["src"]).parent
    assert all((folder / photo).is_file() for photo in gallery["photos"])
    assert "The review page" in browse(report_run, "menu:Review", "info:results/review/index.html")["navbar"]
