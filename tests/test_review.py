"""The review stage on fabricated evaluations: the page, its counts, thumbnails, escaping and the best checkpoint it shows."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from PIL import Image

from brandcap.files.atomic import write_json, write_jsonl
from brandcap.stages.review import THUMBNAIL_SIDE, highlighted
from tests.conftest import CHLOE, DG, ITEMS, LORA_COUNTS, ODD, ROOT, Elements, expected_counts, make_study, review


@pytest.fixture
def study(tmp_path, monkeypatch) -> dict:
    monkeypatch.chdir(tmp_path)
    return make_study(tmp_path)


def test_page_has_every_item_with_photo_reference_and_both_answers(study):
    page = Elements(review(study))
    rows = page.where("tr", **{"class": "item"})
    assert [a["data-brand"] for a, _ in rows] == [brand for _, brand, *_ in ITEMS]
    assert [a["data-base"] for a, _ in rows] == ["none", "wrong", "none", "correct", "none", "none"]
    best = [(a, text) for a, text in page.where("td") if a.get("data-run") == "lora"]
    assert [a["data-outcome"] for a, _ in best] == ["correct", "correct", "hedged", "wrong", "correct", "none"]
    assert [a["data-changed"] for a, _ in best] == ["yes"] * 5 + ["no"]
    assert all("hidden" not in a for a, _ in best)
    assert all(
        "hidden" in a for a, _ in page.where("td") if a.get("data-run") == "freeze_llm"
    )  # not the one shown first
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
        assert src.startswith("thumbs/") and "/" not in src[len("thumbs/") :]  # no path from an unsafe product id
        with Image.open(out / src) as img:
            assert img.format == "JPEG" and max(img.size) == THUMBNAIL_SIDE
    assert "base64" not in html and "data:" not in html
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        ["index.html", *sources]
    )
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
    assert out == (
        'Not <mark class="other negated" title="Chloé (negated: not counted as named)">Chloé</mark> but '
        '<mark class="gold" title="Dolce &amp; Gabbana">Dolce &amp; Gabbana</mark>.'
    )
    assert highlighted('An A<B "Co" belt & <b>', ODD, [ODD]) == (
        'An <mark class="gold" title="A&lt;B &quot;Co&quot;">A&lt;B &quot;Co&quot;</mark> belt &amp; &lt;b&gt;'
    )


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
    with pytest.raises(
        ValueError,
        match=r"predictions\.jsonl: item 't0' is recorded as 'wrong' but .* scores it 'correct'; rerun the evaluate stage",
    ):
        review(study)


def test_counts_that_disagree_with_metrics_json_are_refused(study):
    path = study["root"] / "eval/lora/seed-4/epoch-4/metrics.json"
    write_json(path, {**json.loads(path.read_text()), "brand_accuracy": 0.9})
    with pytest.raises(
        ValueError,
        match=r"3 of 6 answers are correct but metrics.json has brand_accuracy 0.9; rerun the evaluate stage",
    ):
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
    run(
        root,
        [
            "python",
            script,
            "--params",
            "params.yaml",
            "--test",
            "test.jsonl",
            "--val",
            "val.jsonl",
            "--eval-dir",
            "eval",
            "--out",
            "results/review",
            "--log",
            "logs/review.log",
        ],
    )
    assert Elements((study["out"] / "index.html").read_text()).shown_counts() == expected_counts()
    assert re.search(
        r"review: 6 test items, base model and 2 runs \(shown first: lora\)", (root / "logs/review.log").read_text()
    )
