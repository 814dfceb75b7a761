"""catalog stage: read the product table, drop unusable rows, sample, write data/raw/catalog.parquet.

    from brandcap.catalog import run_catalog
    run_catalog(params, Path("data/raw/catalog.parquet"), Path("data/raw/shop"))

Sources (`params.data.source`):
- `synthetic`: the built-in shop (`brandcap.shop`) writes its product images into `shop_dir`
  and a table in the DBQ schema whose image URLs are `file:` URLs into it.
- `hf`: `params.data.hf_dataset` is a Hugging Face dataset id (read with `datasets`, split
  `params.data.hf_split`) or a local `.parquet` / `.csv` file in the DBQ schema.

Rows whose `imageurl` is a placeholder ('N.A.', empty, not an http(s)/file URL), whose brand
is empty, or that repeat an earlier `product_code` (the same product on another date: kept
once, so a product never lands in both train and test) are dropped; then `sample_size` rows
are sampled with the seed. A `product_id` column (unique, filesystem-safe, from
`product_code`) is added.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

import pandas as pd

from brandcap.atomic import write_parquet
from brandcap.params import Params
from brandcap.shop import DBQ_COLUMNS, generate_shop

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ["brand", "product_code", "title", "imageurl"]
_URL_PREFIXES = ("http://", "https://", "file:")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class CatalogError(ValueError):
    """The product table is unusable; the message names the input and the fix."""


def is_image_url(url: object) -> bool:
    """True for http(s):// and file: URLs; placeholders ('N.A.', '', None) are not."""
    if not isinstance(url, str):
        return False
    url = url.strip()
    return url.lower().startswith(_URL_PREFIXES) and len(url) > len("file:")


def product_ids(codes: pd.Series) -> list[str]:
    """Filesystem-safe, unique ids derived from product codes, stable for a given table order."""
    out, taken = [], set()
    for code in codes:
        base = _UNSAFE.sub("_", str(code).strip()).strip("._-")[:80] or "product"
        pid, k = base, 1
        while pid.casefold() in taken:  # also unique on case-insensitive file systems
            k += 1
            pid = f"{base}-{k}"
        taken.add(pid.casefold())
        out.append(pid)
    return out


def _has_no_rows(path: Path) -> bool:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_metadata(path).num_rows == 0
    try:
        return pd.read_csv(path, nrows=1).empty
    except pd.errors.EmptyDataError:  # not even a header
        return True


def read_hf_table(source: str, split: str) -> pd.DataFrame:
    """A DBQ-schema table from a local .parquet/.csv file or a Hugging Face dataset id."""
    from datasets import load_dataset  # heavy import, only for this source

    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".csv"):
        if not path.exists():
            raise CatalogError(f"data.hf_dataset: local file {source} does not exist; fix the path or use a dataset id")
        if _has_no_rows(path):  # `datasets` would fail with ArrowInvalid / "corresponds to no data"
            raise CatalogError(f"data.hf_dataset: local file {source} has no rows; point data.hf_dataset at a table of products")
        # A throw-away cache: local files need no persistent Arrow copy in ~/.cache.
        with tempfile.TemporaryDirectory(prefix="brandcap-datasets-") as cache:
            ds = load_dataset(suffix[1:], data_files=str(path), split="train", cache_dir=cache)
            frame = ds.to_pandas()
    else:
        frame = load_dataset(source, split=split).to_pandas()
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise CatalogError(
            f"data.hf_dataset {source}: missing column(s) {missing}; the table must follow the DBQ schema "
            f"(at least {REQUIRED_COLUMNS})"
        )
    return frame


def filter_and_sample(frame: pd.DataFrame, sample_size: int, seed: int, source: str, warn_if_short: bool = True) -> pd.DataFrame:
    """Drop placeholder URLs, empty brands and repeated products; sample; add product_id."""
    n_read = len(frame)
    frame = frame.copy()
    for col in ("product_code", "title"):
        frame[col] = frame[col].fillna("").astype(str)
    frame["brand"] = frame["brand"].fillna("").astype(str).str.strip()
    frame["imageurl"] = frame["imageurl"].where(frame["imageurl"].notna(), "").astype(str).str.strip()

    placeholder = ~frame["imageurl"].map(is_image_url)
    empty_brand = ~placeholder & (frame["brand"] == "")
    keep = ~placeholder & ~empty_brand
    duplicate = keep & frame.loc[:, "product_code"].where(keep).duplicated(keep="first") & (frame["product_code"] != "")
    keep &= ~duplicate
    dropped = {"placeholder_url": int(placeholder.sum()), "empty_brand": int(empty_brand.sum()), "duplicate_product": int(duplicate.sum())}
    usable = frame[keep]

    if len(usable) == 0:
        raise CatalogError(f"{source}: no usable rows ({n_read} read, dropped {dropped}); check the imageurl and brand columns")
    if len(usable) < sample_size:
        log.log(logging.WARNING if warn_if_short else logging.INFO,
                "%s: only %d usable rows, fewer than data.sample_size=%d; taking all of them", source, len(usable), sample_size)
        sampled = usable
    else:
        sampled = usable.sample(n=sample_size, random_state=seed).sort_index()
    sampled = sampled.reset_index(drop=True)
    sampled.insert(0, "product_id", product_ids(sampled["product_code"]))
    log.info(
        "catalog: %d rows read from %s, dropped %s, sampled %d, %d brands",
        n_read, source, ", ".join(f"{k}={v}" for k, v in dropped.items()), len(sampled), sampled["brand"].nunique(),
    )
    return sampled


def run_catalog(params: Params, catalog_path: Path, shop_dir: Path) -> None:
    """Write catalog_path (the sampled product table with product_id); shop_dir holds synthetic images."""
    data = params.data
    shop_dir = Path(shop_dir)
    shop_dir.mkdir(parents=True, exist_ok=True)
    if data.source == "synthetic":
        frame = generate_shop(data.synthetic, data.sample_size, params.seed, shop_dir)
        source = "the synthetic shop"
    else:
        frame = read_hf_table(data.hf_dataset, data.hf_split)
        source = data.hf_dataset
    # the shop's injected placeholders are meant to be dropped: no warning for those
    catalog = filter_and_sample(frame, data.sample_size, params.seed, source, warn_if_short=data.source != "synthetic")
    ordered = ["product_id"] + [c for c in DBQ_COLUMNS if c in catalog.columns]
    catalog = catalog[ordered + [c for c in catalog.columns if c not in ordered]]
    write_parquet(catalog_path, catalog)
