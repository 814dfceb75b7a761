"""run_clean on a hand-made captions.jsonl: report counts, stratified split, no overlap, determinism.

.venv/bin/python -m pytest tests/test_clean.py -q
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from brandcap.config.params import ParamsError, validate_params
from brandcap.files.atomic import read_jsonl, write_jsonl
from brandcap.stages.clean import CleanError, apply_caption_rules, n_test_products, n_val_products, run_clean

COLOURS = [
    "black",
    "red",
    "navy",
    "ivory",
    "olive",
    "camel",
    "grey",
    "pink",
    "teal",
    "white",
    "brown",
    "gold",
    "plum",
    "sand",
]
ITEMS = [
    "tote bag",
    "trench coat",
    "loafer",
    "silk scarf",
    "wool sweater",
    "ankle boot",
    "shirt",
    "belt",
    "sandal",
    "cardigan",
    "skirt",
    "clutch",
]


def _photo(name: str) -> str:
    """The sha256 the download stage records for a stored image; one per photo."""
    return hashlib.sha256(name.encode()).hexdigest()


def _record(
    pid: str,
    brand: str,
    text: str | None,
    finish_reason: str | None = "stop",
    error: str | None = None,
    photo: str = "",
) -> dict:
    return {
        "product_id": pid,
        "brand": brand,
        "title": "t",
        "category": "c",
        "image": f"data/raw/images/{pid}.png",
        "sha256": _photo(photo or pid),
        "key": pid,
        "text": text,
        "finish_reason": finish_reason,
        "attempts": 1,
        "latency_s": 0.1,
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "error": error,
    }


def _good(i: int, brand_in_text: str) -> str:
    return (
        f"A {COLOURS[i % len(COLOURS)]} {ITEMS[i % len(ITEMS)]} by {brand_in_text}, number {i}, "
        f"shown on a plain background with soft light."
    )


def make_captions() -> tuple[list[dict], dict]:
    """Good captions for three brands plus one caption per failure; the expected report counts."""
    recs = []
    recs += [_record(f"me{i:02d}", "Maison Éclat", _good(i, "Maison Éclat")) for i in range(12)]
    recs += [_record(f"rf{i:02d}", "Rossi & Figli", _good(i + 100, "Rossi & Figli")) for i in range(10)]
    recs += [_record(f"tb{i:02d}", "Tiny Brand", _good(i + 200, "Tiny Brand")) for i in range(2)]
    recs += [
        _record("x_err", "Maison Éclat", None, None, error="http 400: content too long"),
        _record("x_loop", "Maison Éclat", "The Maison Éclat bag is black. " * 8),
        _record("x_garbled", "Rossi & Figli", "The Rossi & Figli coat is Ã©lÃ©gant and warm with a belt."),
        _record("x_cut_short", "Rossi & Figli", "Rossi & Figli coat. It has a belted waist and deep pock", "length"),
        _record("x_no_brand", "Maison Éclat", "A black leather bag with a gold chain strap and a flap."),
        _record("x_short", "Maison Éclat", "Maison Éclat bag."),
        # same text as me00 apart from case and punctuation
        _record("x_dup", "Maison Éclat", _good(0, "Maison Éclat").upper().replace(",", "")),
        # me01's photo under another product code, captioned differently
        _record("x_same_photo", "Maison Éclat", _good(60, "Maison Éclat"), photo="me01"),
        # kept, but trimmed / brand respelled
        _record("me_cut", "Maison Éclat", _good(50, "Maison Éclat") + " The strap is adjus", "length"),
        _record("rf_case", "Rossi & Figli", _good(150, "ROSSI AND FIGLI")),
    ]
    expected = {
        "input": len(recs),
        "removed": {
            "no_caption": 1,
            "repetition_loop": 1,
            "garbled": 1,
            "other_script": 0,
            "cut_off": 1,
            "no_brand": 1,
            "length": 1,
            "duplicate": 1,
            "duplicate_image": 1,
            "rare_brand": 2,
        },
        "trimmed": 1,
        "brand_case_fixed": 1,
        "after_caption_rules": 12 + 10 + 2 + 2,
        "after_rules": 12 + 10 + 2,
        "brands_kept": {"Maison Éclat": 13, "Rossi & Figli": 11},
        "brands_dropped": {"Tiny Brand": 2},
        "brands_lost": {},
    }
    return recs, expected


def _params(**clean):
    return validate_params({"seed": 4, "clean": {"min_brand_samples": 5, "test_fraction": 0.2, **clean}})


@pytest.fixture
def captions(tmp_path):
    recs, expected = make_captions()
    path = tmp_path / "captions.jsonl"
    write_jsonl(path, recs)
    return path, expected


def test_report_counts_every_rule(tmp_path, captions):
    path, expected = captions
    run_clean(_params(), path, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "clean_report.json").read_text())
    assert list(report["removed"]) == list(expected["removed"])  # rule order
    for key, value in expected.items():
        assert report[key] == value, key
    assert report["train"] + report["val"] + report["test"] == report["after_rules"]
    assert report["input"] - sum(report["removed"].values()) == report["after_rules"]


ARABIC_BRAND = "دار الأزياء الملكية"


def test_a_brand_in_another_script_is_kept_and_a_brand_that_loses_every_caption_is_listed(tmp_path):
    """Real catalogues come in other scripts; a brand removed entirely is named with the rule that removed it."""
    recs = [
        _record(
            f"ar{i:02d}",
            ARABIC_BRAND,
            f"Made by {ARABIC_BRAND}, this Logo cotton {ITEMS[i % 12]} is shown in {COLOURS[i % 14]}, number {i}.",
        )
        for i in range(8)
    ]
    recs += [
        _record(
            f"ar-only{i:02d}",
            ARABIC_BRAND,
            f"صنعت {ARABIC_BRAND} هذه الحقيبة الجلدية السوداء ذات السلسلة الذهبية رقم {i}.",
        )
        for i in range(3)
    ]
    recs += [_record(f"me{i:02d}", "Maison Éclat", _good(i, "Maison Éclat")) for i in range(8)]
    recs += [
        _record(
            f"gb{i:02d}",
            "Garbled Brand",
            "The Garbled Brand bag is \ufffd\ufffd\ufffd\ufffd with a \ufffd\ufffd strap.",
        )
        for i in range(4)
    ]
    write_jsonl(tmp_path / "captions.jsonl", recs)
    run_clean(_params(), tmp_path / "captions.jsonl", tmp_path / "out")
    report = json.loads((tmp_path / "out" / "clean_report.json").read_text())
    assert report["brands_kept"] == {ARABIC_BRAND: 11, "Maison Éclat": 8}
    assert report["removed"]["garbled"] == 4 and report["brands_lost"] == {
        "Garbled Brand": {"rule": "garbled", "captions": 4}
    }
    assert "Garbled Brand (garbled, 4 captions)" in (tmp_path / "out" / "clean_examples.md").read_text()

    # with the other_script rule on, the captions written in Arabic go, and the brand keeps its Latin-script ones
    run_clean(_params(expected_script="LATIN"), tmp_path / "captions.jsonl", tmp_path / "latin")
    report = json.loads((tmp_path / "latin" / "clean_report.json").read_text())
    assert report["removed"]["other_script"] == 3 and report["brands_kept"] == {"Maison Éclat": 8, ARABIC_BRAND: 8}


def test_outputs_are_canonical_trimmed_and_stratified(tmp_path, captions):
    path, _ = captions
    run_clean(_params(), path, tmp_path / "out")
    train = read_jsonl(tmp_path / "out" / "train.jsonl")
    val = read_jsonl(tmp_path / "out" / "val.jsonl")
    test = read_jsonl(tmp_path / "out" / "test.jsonl")
    everything = {r["product_id"]: r for r in train + val + test}
    assert len(everything) == len(train) + len(val) + len(test)  # no product in two parts
    assert set(train[0]) == set(val[0]) == {"product_id", "image", "sha256", "brand", "caption"}
    assert everything["me01"]["sha256"] == _photo("me01") and "x_same_photo" not in everything
    assert everything["rf_case"]["caption"] == _good(150, "Rossi & Figli")
    assert everything["me_cut"]["caption"] == _good(50, "Maison Éclat")
    assert everything["me00"]["image"] == "data/raw/images/me00.png"
    assert not {"x_dup", "x_same_photo", "tb00", "x_loop"} & set(everything)
    test_per_brand = Counter(r["brand"] for r in test)
    assert test_per_brand == {"Maison Éclat": n_test_products(13, 0.2), "Rossi & Figli": n_test_products(11, 0.2)}
    assert test_per_brand == {"Maison Éclat": 3, "Rossi & Figli": 2}
    assert Counter(r["brand"] for r in val) == {"Maison Éclat": 2, "Rossi & Figli": 2}  # 0.15 of 13 and of 11, rounded


def test_validation_is_held_out_per_brand_and_leaves_test_as_it_was(tmp_path, captions):
    """The best epoch is chosen on validation: a split of its own, by product, stratified by brand,
    taken after test so the test part is the same whatever val_fraction says."""
    path, _ = captions
    run_clean(_params(val_fraction=0.15), path, tmp_path / "a")
    run_clean(_params(val_fraction=0.3), path, tmp_path / "b")
    assert (tmp_path / "a" / "test.jsonl").read_bytes() == (tmp_path / "b" / "test.jsonl").read_bytes()
    val = read_jsonl(tmp_path / "b" / "val.jsonl")
    assert Counter(r["brand"] for r in val) == {"Maison Éclat": 4, "Rossi & Figli": 3}
    report = json.loads((tmp_path / "b" / "clean_report.json").read_text())
    assert (report["train"], report["val"], report["test"]) == (24 - 4 - 3 - 3 - 2, 7, 5)


def test_validation_sizes():
    assert n_val_products(100, 0.15, 0.15) == 15
    assert n_val_products(10, 0.1, 0.01) == 1  # every brand with room for it is validated
    assert n_val_products(3, 0.2, 0.9) == 1  # one product still trains
    assert n_val_products(2, 0.2, 0.5) == 0  # one in test, one to train on, none left


def test_test_and_validation_fractions_must_leave_training_data():
    with pytest.raises(
        ParamsError, match=r"clean.test_fraction \(0.5\) \+ clean.val_fraction \(0.5\) leave nothing to train on"
    ):
        validate_params({"clean": {"test_fraction": 0.5, "val_fraction": 0.5}})


def test_one_photo_under_several_product_codes_is_kept_once(tmp_path):
    """Re-listed products (a new code, the same photo) would otherwise land in train and test."""
    recs = []
    for brand in ("Maison Éclat", "Rossi & Figli"):
        for i in range(8):
            photo = f"{brand}-{i}"
            recs += [_record(f"{photo}-{copy}", brand, _good(10 * i + copy, brand), photo=photo) for copy in range(3)]
    path = tmp_path / "captions.jsonl"
    write_jsonl(path, recs)
    run_clean(_params(), path, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "clean_report.json").read_text())
    assert report["removed"]["duplicate_image"] == 2 * 8 * 2 and report["after_rules"] == 2 * 8
    kept = [r for name in ("train.jsonl", "val.jsonl", "test.jsonl") for r in read_jsonl(tmp_path / "out" / name)]
    assert sorted(r["product_id"] for r in kept) == sorted(
        r["product_id"] for r in recs if r["product_id"].endswith("-0")
    )
    assert len({r["sha256"] for r in kept}) == len(kept)


def test_split_is_deterministic_by_seed(tmp_path, captions):
    path, _ = captions
    run_clean(_params(), path, tmp_path / "a")
    run_clean(_params(), path, tmp_path / "b")
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "clean_report.json", "clean_examples.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = validate_params({"seed": 5, "clean": {"min_brand_samples": 5, "test_fraction": 0.2}})
    run_clean(other, path, tmp_path / "c")
    assert (tmp_path / "a" / "test.jsonl").read_bytes() != (tmp_path / "c" / "test.jsonl").read_bytes()


def test_examples_show_removed_and_trimmed_captions(tmp_path, captions):
    path, _ = captions
    run_clean(_params(), path, tmp_path / "out")
    md = (tmp_path / "out" / "clean_examples.md").read_text()
    assert "## repetition_loop: 1 removed" in md and "x_loop" in md
    assert "http 400: content too long" in md
    assert "Tiny Brand (2)" in md
    assert "The strap is adjus" in md  # the trimmed caption's before


def test_every_kept_brand_has_a_test_item():
    assert n_test_products(2, 0.01) == 1
    assert n_test_products(2, 0.99) == 1  # one left to train on
    assert n_test_products(100, 0.15) == 15


def test_too_few_brands_names_the_param(tmp_path, captions):
    path, _ = captions
    with pytest.raises(CleanError, match=r"clean\.min_brand_samples"):
        run_clean(_params(min_brand_samples=12), path, tmp_path / "out")
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_a_split_without_training_records_fails_clean(tmp_path):
    """One product per brand: every product goes to test; clean says so instead of writing an empty train.jsonl."""
    path = tmp_path / "captions.jsonl"
    write_jsonl(
        path,
        [
            _record(f"p{i}", brand, _good(i, brand))
            for i, brand in enumerate(["Maison Éclat", "Rossi & Figli", "Tiny Brand"])
        ],
    )
    with pytest.raises(CleanError) as err:
        run_clean(_params(min_brand_samples=1), path, tmp_path / "out")
    message = str(err.value)
    assert f"{path}: the split has 0 training and 3 test records" in message
    assert "Maison Éclat 1" in message and "clean.min_brand_samples (now 1) to at least 2" in message
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_nothing_surviving_is_an_error(tmp_path):
    path = tmp_path / "captions.jsonl"
    write_jsonl(
        path, [_record("a", "Maison Éclat", None, error="timeout"), _record("b", "Maison Éclat", "Maison Éclat bag.")]
    )
    with pytest.raises(CleanError, match="no caption survives.*no_caption 1, length 1"):
        run_clean(_params(), path, tmp_path / "out")


def test_bad_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="caption stage"):
        run_clean(_params(), tmp_path / "missing.jsonl", tmp_path / "out")
    path = tmp_path / "captions.jsonl"
    write_jsonl(path, [{"product_id": "a", "brand": "B", "text": "x"}])
    with pytest.raises(CleanError, match=r"captions.jsonl: line 1 lacks \['image', 'sha256', 'finish_reason'\]"):
        run_clean(_params(), path, tmp_path / "out")
    write_jsonl(path, [{**_record("a", "B", "A bag by B, number one, on a plain background."), "sha256": ""}])
    with pytest.raises(CleanError, match=r"line 1 lacks \['sha256'\]; .*\(run the caption stage first"):
        run_clean(_params(), path, tmp_path / "out")


@pytest.mark.timeout(30)
def test_real_catalogue_brand_names_are_found_and_respelled():
    """Punctuated names used to hang the stage (A.P.C., (di)vision) or never match (Off-White™);
    a caption naming only a longer known brand ('See by Chloé') does not name 'Chloé'."""
    brands = {
        "A.P.C.": "a.p.c.",
        "Off-White™": "OFF-WHITE",
        "(di)vision": "(DI)VISION",
        "Chloé": "CHLOE",
        "See by Chloé": "See By Chloe",
    }
    recs = [_record(f"p{i}", brand, _good(i, spelling)) for i, (brand, spelling) in enumerate(brands.items())]
    recs.append(_record("chloe_named_other", "Chloé", _good(9, "See by Chloé")))
    result = apply_caption_rules(recs, _params().clean)
    assert {r["product_id"]: r["caption"] for r in result.kept} == {f"p{i}": _good(i, b) for i, b in enumerate(brands)}
    assert result.removed["no_brand"] == 1 and result.examples["no_brand"][0]["product_id"] == "chloe_named_other"
