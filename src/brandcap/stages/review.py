"""review stage: one static page for reading the study's test answers side by side, as a person.

    from brandcap.stages.review import run_review
    run_review(params, Path("data/processed/test.jsonl"), Path("data/processed/val.jsonl"),
               Path("results/eval"), Path("results/review"))

Writes `out_dir/index.html` (opens from the file system: no server, no network) and
`out_dir/thumbs/*.jpg`, one small photo per test item that the page links to relatively (the page
embeds no image data). Nothing else, nowhere else.

For each test item the evaluate stage scored (`eval_dir/base/epoch-0/predictions.jsonl`): the
product photo, the reference caption, the base model's answer and the best checkpoint's answer,
each with its brand outcome (correct / hedged / wrong / none, as
`brandcap.evaluation.metrics.brand_outcome` decides it) and the brands it names highlighted
(`brandcap.text.brands.find_brands`; a brand the metrics read as negated, "not Gucci", is struck
through). The best checkpoint of an experiment is its best epoch as the tables stage chooses it
(`brandcap.evaluation.selection.best_epoch`: the highest validation brand accuracy, mean over seeds); an
experiment with no learning shows its top validation epoch, marked so. A switch picks the
experiment (and training seed, with several); it starts on the overall best.

Filters, also read from the query string so that a link keeps them
(`index.html?run=lora&outcome=wrong&changed=1`): `run` (the switch), `brand`, `outcome` (the
checkpoint's), `base` (the base model's outcome), `changed` (the outcome differs between base and
checkpoint).

Counts at the top: per outcome, the test items of the base model and of the chosen checkpoint.
Count / n is the run's brand_accuracy, hedged_rate, wrong_brand_rate and no_brand_rate in
results/metrics.json (under `base` -> `epoch-0`, `{exp}` -> `epoch-N`, or with several seeds
`{exp}` -> `seed-S` -> `epoch-N`); the stage refuses predictions that disagree with their run's
metrics.json or with brandcap.evaluation.metrics.
"""

from __future__ import annotations

import html
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from brandcap.config.params import Params
from brandcap.evaluation.metrics import (
    CORRECT,
    HEDGED,
    NONE,
    OUTCOMES,
    WRONG,
    brand_outcome,
    candidate_brands,
    named_brands,
)
from brandcap.evaluation.selection import (
    BASE,
    best_epoch,
    epoch_key,
    load_evaluations,
    overall_best,
    run_dir,
    seed_key,
    top_validation_epoch,
)
from brandcap.files.atomic import atomic_path, read_json, read_jsonl, write_text
from brandcap.files.images import open_rgb
from brandcap.files.product_table import image_file_stem
from brandcap.text.brands import find_brands

log = logging.getLogger(__name__)

THUMBNAIL_SIDE = 160  # pixels, the longer side: enough to recognise a product, a few KB each
THUMBS = "thumbs"  # beside index.html
# The metrics.json rate that each outcome's count / n equals.
RATE_OF = {CORRECT: "brand_accuracy", HEDGED: "hedged_rate", WRONG: "wrong_brand_rate", NONE: "no_brand_rate"}
RATE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Answer:
    text: str
    outcome: str  # one of brandcap.evaluation.metrics.OUTCOMES
    named: tuple[str, ...]  # the brands the metrics count as named (negated ones left out)


@dataclass(frozen=True)
class ReviewRun:
    """One system's answers on the test items: the base model or one experiment's checkpoint."""

    key: str  # the switch's value, in the query string: ?run=key
    label: str  # what the switch shows
    metrics_key: str  # where its figures are in results/metrics.json, e.g. "lora → epoch-4"
    answers: dict[str, Answer]  # by product id


@dataclass(frozen=True)
class ReviewItem:
    product_id: str
    brand: str
    reference: str
    thumbnail: str  # relative to index.html


# ----------------------------------------------------------------------------- reading
def score_answers(predictions: list[dict[str, Any]], known_brands: list[str], source: Path) -> dict[str, Answer]:
    """{product_id: Answer} with the outcome brandcap.evaluation.metrics gives; a recorded outcome that differs is refused."""
    answers = {}
    for rec in predictions:
        outcome = brand_outcome(rec["prediction"], rec["brand"], known_brands)
        if rec.get("outcome", outcome) != outcome:
            raise ValueError(
                f"{source}: item {rec['product_id']!r} is recorded as {rec['outcome']!r} but "
                f"brandcap.evaluation.metrics scores it {outcome!r}; rerun the evaluate stage"
            )
        answers[str(rec["product_id"])] = Answer(
            rec["prediction"], outcome, tuple(named_brands(rec["prediction"], [*known_brands, rec["brand"]]))
        )
    return answers


def outcome_counts(answers: dict[str, Answer]) -> dict[str, int]:
    counts = Counter(a.outcome for a in answers.values())
    return {o: counts[o] for o in OUTCOMES}


def check_counts(answers: dict[str, Answer], metrics: dict[str, Any], source: Path) -> None:
    """The page's counts must be the metrics' figures: n_test items, count / n = each outcome's rate."""
    n = len(answers)
    if metrics.get("n_test") != n:
        raise ValueError(
            f"{source}: metrics.json has n_test {metrics.get('n_test')} but predictions.jsonl {n} items; rerun the evaluate stage"
        )
    for outcome, count in outcome_counts(answers).items():
        rate = metrics.get(RATE_OF[outcome])
        if rate is not None and not math.isclose(count / n, rate, abs_tol=RATE_TOLERANCE):
            raise ValueError(
                f"{source}: {count} of {n} answers are {outcome} but metrics.json has {RATE_OF[outcome]} {rate}; "
                "rerun the evaluate stage"
            )


def load_run(folder: Path, key: str, label: str, metrics_key: str, known_brands: list[str], fix: str) -> ReviewRun:
    predictions, metrics_path = folder / "predictions.jsonl", folder / "metrics.json"
    if not predictions.exists():
        raise FileNotFoundError(f"{predictions}: not found; {fix}")
    metrics = read_json(metrics_path, fix)
    answers = score_answers(read_jsonl(predictions), known_brands, predictions)
    check_counts(answers, metrics, folder)
    return ReviewRun(key, label, metrics_key, answers)


def review_runs(params: Params, eval_dir: Path, known_brands: list[str]) -> tuple[ReviewRun, list[ReviewRun], str]:
    """(base, one run per experiment and seed at the experiment's best epoch, the key shown first: the overall best)."""
    evaluations, _ = load_evaluations(params, eval_dir)
    base_metrics = evaluations[BASE][0]
    best = {exp: best_epoch(evaluations[exp], base_metrics) for exp in params.train.experiments}
    winners = overall_best(evaluations, best)
    base = load_run(
        Path(eval_dir) / BASE / epoch_key(0),
        BASE,
        "base model (epoch 0)",
        f"{BASE} → {epoch_key(0)}",
        known_brands,
        "run the evaluate_base stage",
    )
    several = len(params.train.seeds) > 1
    runs, default = [], None
    for exp, epoch in best.items():
        shown = epoch if epoch is not None else top_validation_epoch(evaluations[exp])
        why = (
            ("best overall on validation" if exp in winners else "its best epoch on validation")
            if epoch is not None
            else "no learning: its top validation epoch does not beat the base model"
        )
        for seed in params.train.seeds:
            key = f"{exp}.{seed_key(seed)}" if several else exp
            label = f"{exp}{f' seed {seed}' if several else ''} epoch {shown} ({why})"
            metrics_key = " → ".join([exp, *([seed_key(seed)] if several else []), epoch_key(shown)])
            runs.append(
                load_run(
                    run_dir(eval_dir, exp, seed, shown),
                    key,
                    label,
                    metrics_key,
                    known_brands,
                    f"run the evaluate stage for {exp} seed {seed} epoch {shown}",
                )
            )
            if default is None and winners and exp == winners[0]:
                default = key
    return base, runs, default or runs[0].key


# ----------------------------------------------------------------------------- thumbnails
def write_thumbnail(image: str, target: Path, source: Path) -> None:
    """A JPEG of `image` (a path relative to the working directory) whose longer side is THUMBNAIL_SIDE at most."""
    small = open_rgb(image, source)
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    with atomic_path(target) as tmp:
        small.save(tmp, format="JPEG", quality=85)


def review_items(test: list[dict[str, Any]], product_ids: list[str], out_dir: Path, source: Path) -> list[ReviewItem]:
    """The scored test items in order, each with its thumbnail written under out_dir/thumbs/."""
    by_id = {str(r["product_id"]): r for r in test}
    items = []
    for pid in product_ids:
        if pid not in by_id:
            raise ValueError(
                f"{source}: the predictions score product {pid!r}, which is not in it; rerun the evaluate stage"
            )
        rec = by_id[pid]
        thumbnail = f"{THUMBS}/{image_file_stem(pid)}.jpg"
        write_thumbnail(rec["image"], out_dir / thumbnail, source)
        items.append(ReviewItem(pid, rec["brand"], rec["caption"], thumbnail))
    return items


# ----------------------------------------------------------------------------- the page
def e(text: Any) -> str:
    """HTML-escaped text, quotes too (safe in element text and in attribute values)."""
    return html.escape(str(text), quote=True)


def highlighted(text: str, gold: str, known_brands: list[str]) -> str:
    """`text` escaped, every brand in it wrapped in <mark>: class gold (the item's brand) or other,
    plus negated when the metrics do not count it as named."""
    named = set(named_brands(text, [*known_brands, gold]))
    out, previous = [], 0
    for m in find_brands(text, [*known_brands, gold]):
        kind = "gold" if m.brand == gold else "other"
        negated = "" if m.brand in named else " negated"
        title = f"{m.brand}" + ("" if m.brand in named else " (negated: not counted as named)")
        out += [
            e(text[previous : m.start]),
            f'<mark class="{kind}{negated}" title="{e(title)}">{e(text[m.start : m.end])}</mark>',
        ]
        previous = m.end
    return "".join(out + [e(text[previous:])])


def _answer_cell(answer: Answer, item: ReviewItem, known_brands: list[str], css: str, attrs: str = "") -> str:
    named = ", ".join(answer.named) or "no brand"
    return (
        f'<td class="answer {css}" data-outcome="{answer.outcome}"{attrs}><span class="outcome {answer.outcome}" '
        f'title="names: {e(named)}">{answer.outcome}</span> {highlighted(answer.text, item.brand, known_brands)}</td>'
    )


def _row(item: ReviewItem, base: ReviewRun, runs: list[ReviewRun], default: str, known_brands: list[str]) -> str:
    base_answer = base.answers[item.product_id]
    cells = [
        f'<td class="photo"><img src="{e(item.thumbnail)}" alt="photo of product {e(item.product_id)}" loading="lazy"></td>',
        f'<td class="reference"><div class="meta"><b>{e(item.brand)}</b> · {e(item.product_id)}</div>'
        f"{highlighted(item.reference, item.brand, known_brands)}</td>",
        _answer_cell(base_answer, item, known_brands, "base"),
    ]
    for run in runs:
        answer = run.answers[item.product_id]
        changed = "yes" if answer.outcome != base_answer.outcome else "no"
        hidden = "" if run.key == default else " hidden"
        cells.append(
            _answer_cell(
                answer, item, known_brands, "best", f' data-run="{e(run.key)}" data-changed="{changed}"{hidden}'
            )
        )
    return f'<tr class="item" data-brand="{e(item.brand)}" data-base="{base_answer.outcome}">{"".join(cells)}</tr>'


def _count_cell(system: str, what: str, count: int, n: int) -> str:
    return f'<td data-count="{system}-{what}">{count} <span class="rate">({count / n:.3f})</span></td>'


def _counts_table(base: ReviewRun, run: ReviewRun, hidden: bool) -> str:
    n = len(run.answers)
    changed = sum(run.answers[pid].outcome != a.outcome for pid, a in base.answers.items())
    rows = []
    for system, shown in (("base", base), ("best", run)):
        counts = outcome_counts(shown.answers)
        cells = "".join(_count_cell(system, o, counts[o], n) for o in OUTCOMES)
        last = _count_cell(system, "changed", changed, n) if system == "best" else "<td>–</td>"
        rows.append(
            f'<tr><th scope="row">{e(shown.label)}<br><small>metrics.json: {e(shown.metrics_key)}</small></th>{cells}{last}</tr>'
        )
    head = "".join(f"<th>{o}<br><small>{RATE_OF[o]}</small></th>" for o in OUTCOMES)
    return (
        f'<table class="counts" data-run-only="{e(run.key)}"{" hidden" if hidden else ""}>'
        f"<tr><th>test items ({n})</th>{head}<th>changed from base</th></tr>{''.join(rows)}</table>"
    )


def _options(values: list[tuple[str, str]], selected: str = "") -> str:
    return "".join(
        f'<option value="{e(v)}"{" selected" if selected and v == selected else ""}>{e(label)}</option>'
        for v, label in values
    )


def render_page(
    items: list[ReviewItem], base: ReviewRun, runs: list[ReviewRun], default: str, known_brands: list[str]
) -> str:
    """The whole index.html: counts, the switch and filters, one row per item (see the module docstring)."""
    brands = Counter(item.brand for item in items)
    outcome_choices = [("", "any")] + [(o, o) for o in OUTCOMES]
    controls = (
        f'<label>experiment <select id="run">{_options([(r.key, r.label) for r in runs], default)}</select></label> '
        f'<label>brand <select id="brand">{_options([("", "all brands")] + [(b, f"{b} ({n})") for b, n in sorted(brands.items())])}</select></label> '
        f'<label>checkpoint outcome <select id="outcome">{_options(outcome_choices)}</select></label> '
        f'<label>base outcome <select id="base">{_options(outcome_choices)}</select></label> '
        '<label><input type="checkbox" id="changed"> changed between base and best</label>'
    )
    head_cells = "".join(
        f'<th data-run-only="{e(r.key)}"{"" if r.key == default else " hidden"}>{e(r.label)}</th>' for r in runs
    )
    rows = "\n".join(_row(item, base, runs, default, known_brands) for item in items)
    counts = "\n".join(_counts_table(base, run, run.key != default) for run in runs)
    return PAGE.format(
        n=len(items),
        counts=counts,
        controls=controls,
        head_cells=head_cells,
        rows=rows,
        script=SCRIPT,
    )


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>brandcap review: base model and best checkpoint on the test set</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1em; }}
table.items {{ border-collapse: collapse; width: 100%; }}
table.items td, table.items th {{ border-top: 1px solid #ddd; padding: 6px; vertical-align: top; text-align: left; }}
td.photo img {{ max-width: 160px; max-height: 160px; }}
.meta {{ color: #555; margin-bottom: 4px; }}
mark.gold {{ background: #c8f0c8; }}
mark.other {{ background: #ffd6a8; }}
mark.negated {{ text-decoration: line-through; }}
.outcome {{ display: inline-block; padding: 0 5px; border-radius: 3px; font-weight: 600; color: #fff; }}
.outcome.correct {{ background: #2a7d2a; }} .outcome.hedged {{ background: #b08000; }}
.outcome.wrong {{ background: #b02a2a; }} .outcome.none {{ background: #777; }}
table.counts {{ border-collapse: collapse; margin: .5em 0; }}
table.counts td, table.counts th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
table.counts th[scope=row] {{ text-align: left; }}
.rate {{ color: #666; }}
#controls label {{ margin-right: 1em; white-space: nowrap; }}
</style>
</head>
<body>
<h1>brandcap review</h1>
<p>{n} test items. Each row: the product photo, the reference caption, the base model's answer and the chosen
experiment's best checkpoint (chosen on validation, as in tables.md). Outcomes as in the metrics: <b>correct</b>
(the right brand, and no other), <b>hedged</b> (the right brand among others), <b>wrong</b> (another brand only),
<b>none</b> (no brand). Highlighted: <mark class="gold">the item's brand</mark>, <mark class="other">another
brand</mark>, <mark class="other negated">a negated brand</mark> (not counted as named).</p>
<section id="counts">
{counts}
<p>Counts of test items; in brackets count / n, equal to the rate named under each outcome in results/metrics.json
at the key shown. Showing <b id="shown">{n}</b> of {n} items.</p>
</section>
<p id="controls">{controls}</p>
<table class="items">
<thead><tr><th>photo</th><th>reference caption</th><th>base model</th>{head_cells}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
<script>
{script}
</script>
</body>
</html>
"""

# Reads the filters from the query string, applies them, and writes them back on every change.
SCRIPT = """(function () {
  var names = ["run", "brand", "outcome", "base", "changed"];
  var control = {};
  names.forEach(function (name) { control[name] = document.getElementById(name); });
  function value(name) { return name === "changed" ? (control.changed.checked ? "1" : "") : control[name].value; }
  function apply() {
    var run = value("run"), shown = 0;
    document.querySelectorAll("[data-run-only]").forEach(function (el) { el.hidden = el.dataset.runOnly !== run; });
    document.querySelectorAll("tr.item").forEach(function (row) {
      var cell = null;
      row.querySelectorAll("td.best").forEach(function (td) { td.hidden = td.dataset.run !== run; if (!td.hidden) cell = td; });
      var keep = (!value("brand") || row.dataset.brand === value("brand")) &&
                 (!value("outcome") || cell.dataset.outcome === value("outcome")) &&
                 (!value("base") || row.dataset.base === value("base")) &&
                 (!value("changed") || cell.dataset.changed === "yes");
      row.hidden = !keep;
      if (keep) shown += 1;
    });
    document.getElementById("shown").textContent = shown;
  }
  function remember() {
    var query = new URLSearchParams();
    names.forEach(function (name) { if (value(name)) query.set(name, value(name)); });
    try { history.replaceState(null, "", "?" + query.toString()); } catch (err) { /* some browsers refuse it on file:// */ }
  }
  var asked = new URLSearchParams(location.search);
  names.forEach(function (name) {
    var wanted = asked.get(name);
    if (wanted === null) return;
    if (name === "changed") { control.changed.checked = wanted === "1"; return; }
    if (Array.prototype.some.call(control[name].options, function (o) { return o.value === wanted; })) control[name].value = wanted;
  });
  names.forEach(function (name) { control[name].addEventListener("change", function () { apply(); remember(); }); });
  apply();
})();"""


# ----------------------------------------------------------------------------- the stage
def build_review(
    test: list[dict[str, Any]],
    base: ReviewRun,
    runs: list[ReviewRun],
    default: str,
    known_brands: list[str],
    out_dir: Path,
    source: Path,
) -> Path:
    """Write the thumbnails and index.html under out_dir; the page's path."""
    missing = [(r.key, pid) for r in runs for pid in base.answers if pid not in r.answers]
    if missing:
        raise ValueError(
            f"{missing[0][0]}: no answer for product {missing[0][1]!r} that the base model answered; "
            "evaluate every run on the same test items (same data and eval.max_test_samples)"
        )
    items = review_items(test, list(base.answers), Path(out_dir), source)
    page = Path(out_dir) / "index.html"
    write_text(page, render_page(items, base, runs, default, known_brands))
    return page


def run_review(params: Params, test_jsonl: Path, val_jsonl: Path, eval_dir: Path, out_dir: Path) -> None:
    """Write out_dir/index.html and its thumbnails; see the module docstring."""
    test_jsonl, val_jsonl = Path(test_jsonl), Path(val_jsonl)
    for path in (test_jsonl, val_jsonl):
        if not path.exists():
            raise FileNotFoundError(f"{path}: not found; run the clean stage")
    test, val = read_jsonl(test_jsonl), read_jsonl(val_jsonl)
    known_brands = candidate_brands(test, val)
    base, runs, default = review_runs(params, Path(eval_dir), known_brands)
    page = build_review(test, base, runs, default, known_brands, Path(out_dir), test_jsonl)
    log.info(
        "review: %d test items, base model and %d runs (shown first: %s); wrote %s",
        len(base.answers),
        len(runs),
        default,
        page,
    )
