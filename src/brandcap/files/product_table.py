"""What the study's artifacts hold, whatever source filled them: the product table's schema and
how a file path is written inside an artifact.

    from brandcap.files.product_table import DBQ_COLUMNS, artifact_path, category_text, image_file_stem
    artifact_path(Path.cwd() / "data/raw/images/p1.png")   # 'data/raw/images/p1.png'
    category_text({"category3_code": "TOTE BAGS"})          # 'tote bags'
    image_file_stem("../../escape")                         # 'escape-efbf103bcec5'

The real DBQ dataset and the synthetic shop (brandcap.sim.shop) both follow `DBQ_COLUMNS`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path

from brandcap.files.digests import text_sha256

# The columns of the DBQ product-price tables (e.g. DBQ/My.Theresa.Product.prices.France), in order.
DBQ_COLUMNS = [
    "website_name",
    "competence_date",
    "country_code",
    "currency_code",
    "brand",
    "category1_code",
    "category2_code",
    "category3_code",
    "product_code",
    "title",
    "itemurl",
    "imageurl",
    "full_price",
    "price",
    "full_price_eur",
    "price_eur",
    "flg_discount",
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


_NOT_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
SLUG_CHARS = 40  # keeps every name far below the 255-byte file-name limit


def image_file_stem(product_id: str) -> str:
    """A file name stem for any product id, never a path: a readable ASCII slug plus a hash of the exact id.

    `../../escape` -> `escape-efbf103bcec5`, `Sac "Été"/2` -> `Sac_Ete_2-776603eca56c`, `名前` -> `product-...`.
    Ids equal after slugging keep distinct stems, also on case-insensitive file systems (the hash
    is of the id as given).
    """
    ascii_text = unicodedata.normalize("NFKD", product_id).encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub("_", ascii_text).strip("._-")[:SLUG_CHARS].rstrip("._-") or "product"
    digest = text_sha256(product_id)[:12]
    return f"{slug}-{digest}"


_URL_PREFIXES = ("http://", "https://", "file:")
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


def is_image_url(url: object) -> bool:
    """True for http(s):// and file: URLs; placeholders ('N.A.', '', None) are not."""
    if not isinstance(url, str):
        return False
    url = url.strip()
    return url.lower().startswith(_URL_PREFIXES) and len(url) > len("file:")


def product_ids(codes: Iterable[object]) -> list[str]:
    """Filesystem-safe, unique ids derived from product codes, stable for a given table order."""
    out, taken = [], set()
    for code in codes:
        base = _UNSAFE_ID.sub("_", str(code).strip()).strip("._-")[:80] or "product"
        pid, k = base, 1
        while pid.casefold() in taken:  # also unique on case-insensitive file systems
            k += 1
            pid = f"{base}-{k}"
        taken.add(pid.casefold())
        out.append(pid)
    return out
