"""The JSONL records the stages hand each other, as pydantic models, and the one reader that checks
them; and the one check of a table's columns (`check_columns`).

    from brandcap.files.stage_records import SplitRecord, read_records
    rows = read_records("data/processed/test.jsonl", SplitRecord, what="test split", fix="rerun the clean stage")

Each model names the fields a reader needs; other fields pass through untouched (records stay plain
dicts). A record that lacks a needed field, or holds an empty or null one where a value is needed,
is refused with the file, the line and the fields: `test.jsonl: line 3 lacks ['brand']; rerun the
clean stage`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from brandcap.files.atomic import numbered_jsonl

Text = Annotated[str, StringConstraints(min_length=1)]  # present, a string, not empty


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class SplitRecord(_Record):
    """A product of data/processed/{train,val,test}.jsonl (the clean stage)."""

    product_id: Text
    image: Text
    brand: Text
    caption: Text


class ProductImageRecord(_Record):
    """What the image baselines read of a split: the product, its photo and its brand."""

    product_id: Text
    image: Text
    brand: Text


class ImageCaptionRecord(_Record):
    """An image with its caption (the generic training set)."""

    image: Text
    caption: Text


class GeneralRecord(ImageCaptionRecord):
    """A brand-free image of the forgetting probe's general set, with its id and reference caption."""

    id: Text


class CaptionRecord(_Record):
    """An item of data/interim/captions.jsonl (the caption stage); failed items carry a null text."""

    product_id: Any
    brand: Any
    image: Any
    sha256: Text  # the image's hash dedups products
    text: Any
    finish_reason: Any


def record_problems(record: dict[str, Any], model: type[BaseModel]) -> list[str]:
    """The fields of `model` that `record` lacks or leaves empty; [] when it is fine."""
    try:
        model.model_validate(record)
    except ValidationError as err:
        bad = {str(e["loc"][0]) for e in err.errors() if e["loc"]}
        return [field for field in model.model_fields if field in bad]
    return []


def read_records(
    path: str | Path, model: type[BaseModel], what: str, fix: str, allow_empty: bool = True
) -> list[dict[str, Any]]:
    """The records of a JSONL file, each checked against `model`; errors name the file, the line and `fix`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found; {fix}")
    numbered = list(numbered_jsonl(path))
    if not numbered and not allow_empty:
        raise ValueError(f"{path}: no {what} records; {fix}")
    for line, record in numbered:  # the line in the file, blank lines counted
        problems = record_problems(record, model)
        if problems:
            raise ValueError(
                f"{path}: line {line} lacks {problems}; every {what} record needs {list(model.model_fields)} ({fix})"
            )
    return [record for _, record in numbered]


def check_columns(
    columns: Iterable[str], required: Sequence[str], source: str | Path, fix: str, error: type[Exception] = ValueError
) -> None:
    """Refuse a table (its `columns`) lacking any of `required`, naming `source`, the columns and `fix`."""
    present = set(columns)
    missing = [c for c in required if c not in present]
    if missing:
        raise error(f"{source}: missing column(s) {missing}; {fix}")
