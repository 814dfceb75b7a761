"""The review stage on fabricated evaluations: the page, its counts, thumbnails, escaping and the best checkpoint it shows."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from PIL import Image

from brandcap.atomic import write_json, write_jsonl
from brandcap.evaluation.metrics import brand_metrics, brand_outcomes
from brandcap.params import validate_params
from brandcap.stages.review import THUMBNAIL_SIDE, highlighted, run_review

ROOT = Path(__file__).resolve().parents[1]
DG, CHLOE, ODD = "Dolce & Gabbana", "Chloé", 'A<B "Co"'  # ODD: a name with every character HTML must escape
SCRIPT_CAPTION = "A Chloé <script>alert(1)</script> scarf & more."
# (product id, brand, reference, base answer, lora epoch-4 answer); the last id is no safe file name.
ITEMS = [
    ("t0", DG, "A black Dolce & Gabbana bag.", "A black bag.", "A black Dolce & Gabbana bag."),
    ("t1", DG, "A red Dolce&Gabbana shoe.", "A red Chloé shoe.", "Not Chloé but Dolce & Gabbana."),
    ("t2", CHLOE, SCRIPT_CAPTION, "A scarf.", "A Chloé or Dolce & Gabbana scarf."),
    ("t3", CHLOE, "A white Chloé top.", "A Chloé top.", "A Dolce & Gabbana top."),
    ("t4", ODD, 'A A<B "Co" belt.', "A belt.", 'An A<B "Co" belt.'),
    ('../Sac "Été"/5', ODD, 'A green A<B "Co" hat.', "A hat.", "A hat."),
]
# Outcomes of the fabricated answers, as brandcap.evaluation.metrics scores them.
BASE_COUNTS = {"correct": 1, "hedged": 0, "wrong": 1, "none": 4}
LORA_COUNTS = {"correct": 3, "hedged": 1, "wrong": 1, "none": 1}
CHANGED = 5  # every item but the last changes outcome from base to lora epoch 4


def write_run(folder: Path, answers: list[str], val_accuracy: float) -> dict:
    """predictions.jsonl and metrics.json of one evaluation, scored as the evaluate stage scores them."""
    brands = [brand for _, brand, *_ in ITEMS]
    known = sorted({*brands, "Prada"})
    outcomes = brand_outcomes(answers, brands, known)
    write_jsonl(folder / "predictions.jsonl", [
        {"product_id": pid, "brand": brand, "reference": ref, "prediction": answer, "outcome": outcome}
        for (pid, brand, ref, *_), answer, outcome in zip(ITEMS, answers, outcomes)
    ])
    metrics = {"n_test": len(ITEMS), **brand_metrics(answers, brands, known), "val_brand_accuracy": val_accuracy}
    write_json(folder / "metrics.json", metrics)
    return metrics


def make_study(root: Path, seeds: tuple[int, ...] = (4,)) -> dict:
    """Images, test/val splits and evaluations under root (image paths relative to root): lora's best epoch on
    validation is 4 (epoch 2 answers better on test, so a test-chosen page would differ); freeze_llm never
    beats the base model on validation (no learning)."""
    (root / "images").mkdir(parents=True)
    test = []
    for i, (pid, brand, ref, *_) in enumerate(ITEMS):
        Image.new("RGB", (300, 200), (40 * i, 100, 200)).save(root / "images" / f"p{i}.png")
        test.append({"product_id": pid, "image": f"images/p{i}.png", "brand": brand, "caption": ref})
    write_jsonl(root / "test.jsonl", test)
    write_jsonl(root / "val.jsonl", [{"product_id": "v0", "image": "images/p0.png", "brand": "Prada", "caption": "A Prada bag."}])
    evals = root / "eval"
    base_answers = [it[3] for it in ITEMS]
    write_run(evals / "base" / "epoch-0", base_answers, 0.1)
    for seed in seeds:
        runs = evals / "lora" / f"seed-{seed}"
        write_run(runs / "epoch-2", [it[2] for it in ITEMS], 0.3)  # the references: all correct on test
        write_run(runs / "epoch-4", [it[4] for it in ITEMS], 0.5)
        for epoch in (2, 4):
            write_run(evals / "freeze_llm" / f"seed-{seed}" / f"epoch-{epoch}", base_answers, 0.1)
    train = {"epochs": 4, "save_epochs": [2, 4], "seeds": list(seeds),
             "experiments": {"freeze_llm": {"strategy": "freeze_llm"}, "lora": {"strategy": "lora"}}}
    return {"root": root, "train": train, "params": validate_params({"train": train}), "out": root / "results" / "review"}


def review(study: dict) -> str:
    run_review(study["params"], Path("test.jsonl"), Path("val.jsonl"), Path("eval"), Path("results/review"))
    return (study["out"] / "index.html").read_text(encoding="utf-8")


@pytest.fixture
def study(tmp_path, monkeypatch) -> dict:
    monkeypatch.chdir(tmp_path)
    return make_study(tmp_path)


class Elements(HTMLParser):
    """Start tags with their attributes and the text inside each (for the few elements a test asks about)."""

    def __init__(self, html: str):
        super().__init__()
        self.found: list[tuple[str, dict, list[str]]] = []
        self._open: list[list[str]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        text: list[str] = []
        self.found.append((tag, dict(attrs), text))
        if tag not in ("img", "input", "br", "meta"):
            self._open.append(text)

    def handle_endtag(self, tag):
        if self._open and tag not in ("img", "input", "br", "meta"):
            self._open.pop()

    def handle_data(self, data):
        for text in self._open:
            text.append(data)

    def where(self, tag: str, **attrs) -> list[tuple[dict, str]]:
        return [(a, "".join(t).strip()) for tg, a, t in self.found
                if tg == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def shown_counts(self) -> dict[str, int]:
        """The count cells of the visible counts table."""
        out, inside = {}, False
        for tag, attrs, text in self.found:
            if tag == "table" and "data-run-only" in attrs:
                inside = "hidden" not in attrs
            elif tag == "td" and inside and "data-count" in attrs:
                out[attrs["data-count"]] = int("".join(text).split()[0])
        return out


def expected_counts() -> dict[str, int]:
    return {**{f"base-{o}": n for o, n in BASE_COUNTS.items()}, **{f"best-{o}": n for o, n in LORA_COUNTS.items()}, "best-changed": CHANGED}


def test_page_has_every_item_with_photo_reference_and_both_answers(study):
    page = Elements(review(study))
    rows = page.where("tr", **{"class": "item"})
    assert [a["data-brand"] for a, _ in rows] == [brand for _, brand, *_ in ITEMS]
    assert [a["data-base"] for a, _ in rows] == ["none", "wrong", "none", "correct", "none", "none"]
    best = [(a, text) for a, text in page.where("td") if a.get("data-run") == "lora"]
    assert [a["data-outcome"] for a, _ in best] == ["correct", "correct", "hedged", "wrong", "correct", "none"]
    assert [a["data-changed"] for a, _ in best] == ["yes"] * 5 + ["no"]
    assert all("hidden" not in a for a, _ in best)
    assert all("hidden" in a for a, _ in page.where("td") if a.get("data-run") == "freeze_llm")  # not the one shown first
    assert "Not Chloé but Dolce & Gabbana." in best[1][1]


def test_counts_are_the_metrics_figures(study):
    page = Elements(review(study))
    assert page.shown_counts() == expected_counts()
    lora = json.loads((study["root"] / "eval/lora/seed-4/epoch-4/metrics.json").read_text())
    assert LORA_COUNTS["correct"] / len(ITEMS) == lora["brand_accuracy"]
    assert LORA_COUNTS["none"] / len(ITEMS) == lora["no_brand_rate"]


def test_the_best_checkpoint_is_the_one_validation_chooses(study):
    html = review(study)
    page = Elements(html)
    [(selected, label)] = [(a, t) for a, t in page.where("option") if "selected" in a]
    assert selected["value"] == "lora" and label.startswith("lora epoch 4 (best overall on validation)")
    assert "freeze_llm epoch 2 (no learning" in html  # its top validation epoch (tie: the earlier), marked
    assert "metrics.json: lora → epoch-4" in html and "metrics.json: base → epoch-0" in html


def test_thumbnails_are_small_files_linked_relatively(study):
    html = review(study)
    out = study["out"]
    sources = [a["src"] for a, _ in Elements(html).where("img")]
    assert len(sources) == len(ITEMS)
    for src in sources:
        assert src.startswith("thumbs/") and "/" not in src[len("thumbs/"):]  # no path from an unsafe product id
        with Image.open(out / src) as img:
            assert img.format == "JPEG" and max(img.size) == THUMBNAIL_SIDE
    assert "base64" not in html and "data:" not in html
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(["index.html", *sources])
    assert sorted(p.name for p in study["root"].joinpath("results").iterdir()) == ["review"]  # nothing beside it


def test_text_is_html_escaped(study):
    html = review(study)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'A<B "Co"' not in html
    assert 'data-brand="A&lt;B &quot;Co&quot;"' in html
    assert '<option value="A&lt;B &quot;Co&quot;">A&lt;B &quot;Co&quot; (2)</option>' in html
    assert "Dolce &amp; Gabbana" in html and "Dolce & Gabbana" not in html


def test_named_brands_are_highlighted_and_negated_ones_marked():
    out = highlighted("Not Chloé but Dolce & Gabbana.", DG, [CHLOE, DG])
    assert out == ('Not <mark class="other negated" title="Chloé (negated: not counted as named)">Chloé</mark> but '
                   '<mark class="gold" title="Dolce &amp; Gabbana">Dolce &amp; Gabbana</mark>.')
    assert highlighted('An A<B "Co" belt & <b>', ODD, [ODD]) == (
        'An <mark class="gold" title="A&lt;B &quot;Co&quot;">A&lt;B &quot;Co&quot;</mark> belt &amp; &lt;b&gt;')


def test_several_seeds_get_one_switch_entry_each(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    html = review(make_study(tmp_path, seeds=(4, 5)))
    values = [a["value"] for a, _ in Elements(html).where("option") if a["value"].startswith(("lora", "freeze"))]
    assert values == ["freeze_llm.seed-4", "freeze_llm.seed-5", "lora.seed-4", "lora.seed-5"]
    assert "metrics.json: lora → seed-5 → epoch-4" in html


def test_a_recorded_outcome_the_metrics_disagree_with_is_refused(study):
    path = study["root"] / "eval/lora/seed-4/epoch-4/predictions.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[0]["outcome"] = "wrong"
    write_jsonl(path, records)
    with pytest.raises(ValueError, match=r"predictions\.jsonl: item 't0' is recorded as 'wrong' but .* scores it 'correct'; rerun the evaluate stage"):
        review(study)


def test_counts_that_disagree_with_metrics_json_are_refused(study):
    path = study["root"] / "eval/lora/seed-4/epoch-4/metrics.json"
    write_json(path, {**json.loads(path.read_text()), "brand_accuracy": 0.9})
    with pytest.raises(ValueError, match=r"3 of 6 answers are correct but metrics.json has brand_accuracy 0.9; rerun the evaluate stage"):
        review(study)


def test_a_missing_evaluation_names_the_stage_to_run(study):
    (study["root"] / "eval/base/epoch-0/predictions.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"predictions\.jsonl: not found; run the evaluate_base stage"):
        review(study)


def test_the_stage_command_writes_the_page(study, run):
    """The entry script as both orchestrators run it (its command line from dvc.yaml), in a project-like folder."""
    root = study["root"]
    (root / "params.yaml").write_text(yaml.safe_dump({"train": study["train"]}))
    script = ROOT / "workflow/scripts/review.py"
    run(root, ["python", script, "--params", "params.yaml", "--test", "test.jsonl", "--val", "val.jsonl",
               "--eval-dir", "eval", "--out", "results/review", "--log", "logs/review.log"])
    assert Elements((study["out"] / "index.html").read_text()).shown_counts() == expected_counts()
    assert re.search(r"review: 6 test items, base model and 2 runs \(shown first: lora\)", (root / "logs/review.log").read_text())
