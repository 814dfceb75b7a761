"""The one JSONL record reader: each file's records checked against their pydantic model."""

from __future__ import annotations

import json

import pytest

from brandcap.files.stage_records import CaptionRecord, GeneralRecord, SplitRecord, read_records, record_problems


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_records_pass_with_their_extra_fields_untouched(tmp_path):
    rows = [{"product_id": "p1", "image": "a.png", "brand": "Saint Laurent", "caption": "A bag.", "sha256": "ab"}]
    assert read_records(_write(tmp_path / "test.jsonl", rows), SplitRecord, "test split", fix="rerun clean") == rows


@pytest.mark.parametrize(
    "broken, lacking",
    [
        ({"image": "a.png", "brand": "B", "caption": "c"}, ["product_id"]),  # absent
        ({"product_id": "p", "image": "", "brand": "B", "caption": "c"}, ["image"]),  # empty
        (
            {"product_id": "p", "image": "a.png", "brand": None, "caption": None},
            ["brand", "caption"],
        ),  # null, in field order
    ],
)
def test_a_record_lacking_a_field_names_the_file_the_line_the_fields_and_the_fix(tmp_path, broken, lacking):
    good = {"product_id": "p0", "image": "a.png", "brand": "B", "caption": "c"}
    path = _write(tmp_path / "val.jsonl", [good, broken])
    with pytest.raises(ValueError) as err:
        read_records(path, SplitRecord, "validation split", fix="rerun the clean stage")
    assert str(err.value).startswith(f"{path}: line 2 lacks {lacking}; ") and str(err.value).endswith(
        "(rerun the clean stage)"
    )


def test_the_line_named_is_the_line_in_the_file_blank_lines_counted(tmp_path):
    good = {"product_id": "p0", "image": "a.png", "brand": "B", "caption": "c"}
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(good) + "\n\n\n" + json.dumps({**good, "brand": None}) + "\n")
    with pytest.raises(ValueError, match=r"test.jsonl: line 4 lacks \['brand'\]"):
        read_records(path, SplitRecord, "test split", fix="rerun the clean stage")


def test_missing_and_empty_files_say_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="general.jsonl: general set not found; run general_set"):
        read_records(tmp_path / "general.jsonl", GeneralRecord, "general set", fix="run general_set")
    empty = _write(tmp_path / "train.jsonl", [])
    assert read_records(empty, SplitRecord, "training split", fix="run clean") == []
    with pytest.raises(ValueError, match="train.jsonl: no training split records; run clean"):
        read_records(empty, SplitRecord, "training split", fix="run clean", allow_empty=False)


def test_a_failed_caption_keeps_its_null_text_but_needs_its_image_hash():
    failed = {"product_id": "p", "brand": "B", "image": "a.png", "sha256": "ab", "text": None, "finish_reason": None}
    assert record_problems(failed, CaptionRecord) == []
    assert record_problems({**failed, "sha256": ""}, CaptionRecord) == ["sha256"]
    assert record_problems({k: v for k, v in failed.items() if k != "text"}, CaptionRecord) == ["text"]
