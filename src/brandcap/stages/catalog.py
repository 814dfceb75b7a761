"""catalog stage: read the product table, drop unusable rows, sample, write data/raw/catalog.parquet.

    from brandcap.stages.catalog import run_catalog
    run_catalog(params, Path("data/raw/catalog.parquet"), Path("data/raw/shop"))

Sources (`params.data.source`):
- `synthetic`: the built-in shop (`brandcap.sim.shop`) writes its product images into `shop_dir`
  and a table in the DBQ schema whose image URLs are `file:` URLs into it.
- `hf`: `params.data.hf_dataset` is a Hugging Face dataset id (read with `datasets`, split
  `params.data.hf_split`, pinned with `params.data.revision`) or a local `.parquet`, `.csv`,
  `.csv.gz` or `.jsonl` table in the DBQ schema under data/external/ (which the stage depends on).

Placeholders ('N.A.', 'N/A', 'nan', '-', blank: `MISSING_MARKERS`) count as missing in every
text column; control characters (NUL included) are removed from every text field and counted, tabs and
line breaks become spaces. Rows without an image URL (or with one that is not http(s)/file) or without a brand,
and rows that repeat an earlier product (the same product on another date: kept once, so a
product never lands in both train and test) are dropped and counted; then `sample_size` rows are
sampled with the seed. A `product_id` column (unique, filesystem-safe) is added: from
`product_code`, or, where that is missing, from a hash of the image URL and title.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from brandcap.config.params import EXTERNAL_DATA_DIR, DataParams, Params, local_table_path
from brandcap.files.atomic import atomic_path, write_parquet
from brandcap.files.digests import text_sha256
from brandcap.files.product_table import DBQ_COLUMNS, is_image_url, product_ids
from brandcap.files.stage_records import check_columns

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ["brand", "product_code", "title", "imageurl"]
TEXT_COLUMNS = REQUIRED_COLUMNS + ["category1_code", "category2_code", "category3_code"]
# Values that mean "missing", compared stripped and case-folded.
MISSING_MARKERS = frozenset({"", "n.a.", "n.a", "na", "n/a", "nan", "none", "null", "-", "--"})


class CatalogError(ValueError):
    """The product table is unusable; the message names the input and the fix."""


def is_missing(value: object) -> bool:
    """True for None/NaN and the placeholders product tables use for a missing value
    (DBQ writes 'N.A.'): the one list of them, applied to every text column of the catalog."""
    if isinstance(value, str):
        return value.strip().casefold() in MISSING_MARKERS
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def read_local_table(path: Path) -> pd.DataFrame:
    """A .parquet, .csv, .csv.gz or .jsonl table; text columns stay text ('00123' is no number)."""
    if not path.exists():
        raise CatalogError(f"data.hf_dataset: local file {path} does not exist; put the table there or fix the path")
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            frame = pd.read_parquet(path)
        elif name.endswith(".jsonl"):
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS})  # .csv and .csv.gz
    except pd.errors.EmptyDataError:  # not even a header
        frame = pd.DataFrame()
    if frame.empty:
        raise CatalogError(
            f"data.hf_dataset: local file {path} has no rows; point data.hf_dataset at a table of products"
        )
    return frame


def read_hub_dataset(dataset_id: str, split: str, revision: str) -> pd.DataFrame:
    """A dataset from the Hugging Face Hub (or its local cache); offline, an error that says what to do."""
    from datasets import load_dataset  # heavy import, only for this source

    try:
        return load_dataset(dataset_id, split=split, revision=revision or None).to_pandas()
    except ConnectionError as err:  # no network, or HF_HUB_OFFLINE=1, and the dataset is not cached
        at = f" at revision {revision}" if revision else ""
        raise CatalogError(
            f"data.hf_dataset {dataset_id}{at}: cannot reach the Hugging Face Hub and the dataset is not in the "
            f"local cache ({err}). Go online (and unset HF_HUB_OFFLINE) to download it once, or save the table "
            f"under {EXTERNAL_DATA_DIR}/ (e.g. {EXTERNAL_DATA_DIR}/dbq.parquet) and set data.hf_dataset to that path"
        ) from None


def read_hf_table(data: DataParams) -> pd.DataFrame:
    """The DBQ-schema table of `data.hf_dataset`: a local file under data/external/ or a Hub dataset id."""
    try:
        path = local_table_path(data.hf_dataset)
    except ValueError as err:
        raise CatalogError(f"data.hf_dataset: {err}") from None
    if path is None:
        frame = read_hub_dataset(data.hf_dataset, data.hf_split, data.revision)
    else:
        if data.revision:
            log.warning(
                "data.revision=%s is ignored for the local table %s (git or DVC versions it)", data.revision, path
            )
        frame = read_local_table(path)
    check_columns(
        frame.columns,
        REQUIRED_COLUMNS,
        f"data.hf_dataset {data.hf_dataset}",
        f"the table must follow the DBQ schema (at least {REQUIRED_COLUMNS})",
        error=CatalogError,
    )
    return frame


def blank_placeholders(frame: pd.DataFrame) -> pd.DataFrame:
    """Every placeholder ('N.A.', 'N/A', 'nan', '-', blank, ...) in a text column becomes missing (None)."""
    frame = frame.copy()
    for col in frame.columns:
        if pd.api.types.is_object_dtype(frame[col]) or pd.api.types.is_string_dtype(frame[col]):
            frame[col] = frame[col].astype(object).mask(frame[col].map(is_missing), None)
    return frame


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # C0/C1 controls, NUL included; not \t \n \r
_LINE_BREAKS = re.compile(r"[\t\n\r]+")


def remove_control_characters(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Every text field without control characters (a NUL once reached train.jsonl); tabs and line breaks
    become spaces. Returns the table and how many fields changed."""
    frame, changed = frame.copy(), 0
    for col in frame.columns:
        if pd.api.types.is_object_dtype(frame[col]) or pd.api.types.is_string_dtype(frame[col]):
            text = frame[col].map(lambda v: _LINE_BREAKS.sub(" ", _CONTROL.sub("", v)) if isinstance(v, str) else v)
            changed += int((text != frame[col]).where(frame[col].map(lambda v: isinstance(v, str)), False).sum())
            frame[col] = text
    return frame, changed


def product_keys(frame: pd.DataFrame) -> pd.Series:
    """The product code, or for rows without one an id derived from their content (image URL and
    title), so products without a code stay apart and the same one on another date stays one."""
    content = frame["imageurl"] + "\n" + frame["title"]
    derived = content.map(lambda text: "nocode-" + text_sha256(text)[:16])
    return frame["product_code"].where(frame["product_code"] != "", derived)


def filter_and_sample(
    frame: pd.DataFrame, sample_size: int, seed: int, source: str, warn_if_short: bool = True
) -> pd.DataFrame:
    """Placeholders made missing; rows without an image URL or brand and repeated products dropped;
    a seeded sample; a product_id added."""
    n_read = len(frame)
    frame, n_control = remove_control_characters(frame)
    frame = blank_placeholders(frame)
    for col in ("product_code", "title", "brand", "imageurl"):
        frame[col] = frame[col].fillna("").astype(str).str.strip()

    placeholder = ~frame["imageurl"].map(is_image_url)
    missing_brand = ~placeholder & (frame["brand"] == "")
    keep = ~placeholder & ~missing_brand
    frame["product_key"] = product_keys(frame)
    duplicate = keep & frame["product_key"].where(keep).duplicated(keep="first")
    keep &= ~duplicate
    dropped = {
        "placeholder_url": int(placeholder.sum()),
        "missing_brand": int(missing_brand.sum()),
        "duplicate_product": int(duplicate.sum()),
    }
    usable = frame[keep]

    if len(usable) == 0:
        raise CatalogError(
            f"{source}: no usable rows ({n_read} read, dropped {dropped}); check the imageurl and brand columns"
        )
    if len(usable) < sample_size:
        log.log(
            logging.WARNING if warn_if_short else logging.INFO,
            "%s: only %d usable rows, fewer than data.sample_size=%d; taking all of them",
            source,
            len(usable),
            sample_size,
        )
        sampled = usable
    else:
        sampled = usable.sample(n=sample_size, random_state=seed).sort_index()
    sampled = sampled.reset_index(drop=True)
    sampled.insert(0, "product_id", product_ids(sampled.pop("product_key")))
    log.info(
        "catalog: %d rows read from %s, control characters removed from %d fields, dropped %s, sampled %d, %d brands; "
        "without product_code %d, without title %d",
        n_read,
        source,
        n_control,
        ", ".join(f"{k}={v}" for k, v in dropped.items()),
        len(sampled),
        sampled["brand"].nunique(),
        int((sampled["product_code"] == "").sum()),
        int((sampled["title"] == "").sum()),
    )
    return sampled


def dressed_table(frame: pd.DataFrame, shop_dir: Path, params: Params) -> pd.DataFrame:
    """The shop dressed as a real catalogue, written as a DBQ-schema CSV.gz and read back like a user's table."""
    from brandcap.sim.realshape import dress_as_real_catalogue

    dressed = dress_as_real_catalogue(frame, shop_dir, params.seed, params.data.synthetic.placeholder_rate)
    table = shop_dir / "catalog.csv.gz"
    with atomic_path(table) as tmp:
        dressed.to_csv(tmp, index=False, compression="gzip")
    return read_local_table(table)


def run_catalog(params: Params, catalog_path: Path, shop_dir: Path) -> None:
    """Write catalog_path (the sampled product table with product_id); shop_dir holds synthetic images."""
    data = params.data
    shop_dir = Path(shop_dir)
    shop_dir.mkdir(parents=True, exist_ok=True)
    if data.source == "synthetic":
        from brandcap.sim.shop import generate_shop  # the simulated world, only where the profile selects it

        frame = generate_shop(data.synthetic, data.sample_size, params.seed, shop_dir)
        source = "the synthetic shop"
        if data.synthetic.real_shapes:
            frame = dressed_table(frame, shop_dir, params)
            source = "the real-shaped synthetic shop"
    else:
        frame = read_hf_table(data)
        source = data.hf_dataset
    # the shop's injected placeholders are meant to be dropped: no warning for those
    catalog = filter_and_sample(frame, data.sample_size, params.seed, source, warn_if_short=data.source != "synthetic")
    ordered = ["product_id"] + [c for c in DBQ_COLUMNS if c in catalog.columns]
    catalog = catalog[ordered + [c for c in catalog.columns if c not in ordered]]
    write_parquet(catalog_path, catalog)
