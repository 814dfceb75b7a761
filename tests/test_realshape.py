"""The real-shaped synthetic shop: real brand-name shapes, `N.A.` everywhere, unsafe codes and
real photo shapes and formats, read back through the local-table reader by the catalog stage."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from brandcap.config.params import validate_params
from brandcap.sim.realshape import HOSTILE_CODES, PHOTO_FORMATS, REAL_SHAPED_BRANDS, photo_bytes
from brandcap.stages.catalog import is_missing, run_catalog
from brandcap.stages.download import normalise_image


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("realshape")
    params = validate_params(
        {"data": {"sample_size": 150, "synthetic": {"n_brands": 12, "real_shapes": True, "placeholder_rate": 0.05}}}
    )
    cwd = Path.cwd()
    try:
        import os

        os.chdir(root)
        run_catalog(params, Path("data/raw/catalog.parquet"), Path("data/raw/shop"))
        frame = pd.read_parquet("data/raw/catalog.parquet")
        frame.attrs["raw"] = pd.read_csv("data/raw/shop/catalog.csv.gz", dtype=str, keep_default_na=False)
        frame.attrs["root"] = root
    finally:
        os.chdir(cwd)
    return frame


def test_brands_have_real_shapes_and_na_rows_are_dropped(catalog):
    assert set(catalog["brand"]) <= set(REAL_SHAPED_BRANDS[:12])
    assert {"A.P.C.", "Off-White™", "(di)vision", "Saint Laurent", "Laurent"} <= set(catalog["brand"])
    raw = catalog.attrs["raw"]
    for column in ("brand", "title", "category1_code", "product_code"):
        assert (raw[column] == "N.A.").any(), column
    assert not catalog["brand"].map(is_missing).any()
    assert not (catalog["title"].fillna("") == "N.A.").any()


def test_unsafe_codes_get_unique_safe_ids(catalog):
    raw_codes = set(catalog.attrs["raw"]["product_code"])
    assert {"../../escape", "a b", "a_b"} <= raw_codes
    assert catalog["product_id"].is_unique
    assert not catalog["product_id"].str.contains(r"[/\\]|\.\.").any()
    assert len(HOSTILE_CODES) > 5


@pytest.mark.parametrize("fmt", PHOTO_FORMATS)
def test_every_photo_format_normalises_upright_in_its_shape(fmt):
    square = Image.new("RGB", (64, 64), (200, 30, 30))
    data = photo_bytes(square, (336, 448), fmt)
    png, width, height = normalise_image(data, validate_params({}).download)
    assert (width, height) == (336, 448)  # portrait stays portrait, EXIF rotation applied
    centre = Image.open(io.BytesIO(png)).convert("RGB").getpixel((168, 224))
    assert centre[0] > 150 and centre[1] < 90


def test_photos_come_in_several_shapes(catalog):
    root = catalog.attrs["root"]
    sizes = {
        Image.open(root / url.removeprefix("file:")).size
        for url in catalog["imageurl"]
        if url.startswith("file:") and "/photos/" in url
    }
    assert {(336, 448), (448, 336)} <= sizes
