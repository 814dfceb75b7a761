"""What the study's artifacts hold, whatever source filled them: the product table's schema and
how a file path is written inside an artifact.

    from brandcap.records import DBQ_COLUMNS, artifact_path, category_text
    artifact_path(Path.cwd() / "data/raw/images/p1.png")   # 'data/raw/images/p1.png'
    category_text({"category3_code": "TOTE BAGS"})          # 'tote bags'

The real DBQ dataset and the synthetic shop (brandcap.sim.shop) both follow `DBQ_COLUMNS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# The columns of the DBQ product-price tables (e.g. DBQ/My.Theresa.Product.prices.France), in order.
DBQ_COLUMNS = [
    "website_name", "competence_date", "country_code", "currency_code", "brand",
    "category1_code", "category2_code", "category3_code", "product_code", "title",
    "itemurl", "imageurl", "full_price", "price", "full_price_eur", "price_eur", "flg_discount",
]

# The file in every checkpoint directory that says what it holds (written by brandcap.model.checkpoints).
CHECKPOINT_META = "brandcap_checkpoint.json"

# Most specific first: a product's category in words is its category3, else category2, else category1.
CATEGORY_COLUMNS = ("category3_code", "category2_code", "category1_code")


def category_text(row: Mapping) -> str:
    """A product row's most specific category in words ('TOTE_BAGS' -> 'tote bags'; mixed case is
    kept); '' when the row has none."""
    for column in CATEGORY_COLUMNS:
        value = row.get(column)
        if isinstance(value, str) and value.strip():
            text = value.strip().replace("_", " ")
            return text.lower() if text.isupper() else text
    return ""


def artifact_path(path: str | Path) -> str:
    """A path as stored inside artifacts: relative to the cwd when it lies under it."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()
