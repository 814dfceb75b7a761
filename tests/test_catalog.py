"""catalog stage: the synthetic shop and a local DBQ-schema table (parquet and CSV), never the hub."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd
import pytest

from brandcap.catalog import CatalogError, product_ids, run_catalog
from brandcap.params import validate_params
from brandcap.shop import DBQ_COLUMNS

SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


def synthetic_params(seed=4, n=200):
    return validate_params({"seed": seed, "data": {"sample_size": n, "synthetic": {"n_brands": 8, "n_general": 0}}})


def test_synthetic_catalog_is_reproducible_and_filtered(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_catalog(synthetic_params(), Path("a/catalog.parquet"), Path("a/shop"))
    run_catalog(synthetic_params(), Path("b/catalog.parquet"), Path("a/shop"))  # same shop dir: same URLs
    run_catalog(synthetic_params(seed=5), Path("c/catalog.parquet"), Path("c/shop"))
    a, b, c = (pd.read_parquet(f"{x}/catalog.parquet") for x in "abc")
    assert Path("a/catalog.parquet").read_bytes() == Path("b/catalog.parquet").read_bytes()
    assert list(a.columns) == ["product_id"] + DBQ_COLUMNS
    assert len(a) == 198  # 200 generated, the 2 placeholder URLs dropped by the filter
    assert not (a.imageurl == "N.A.").any()
    assert a.product_id.is_unique and all(SAFE.match(p) for p in a.product_id)
    assert a.imageurl.str.startswith("file:a/shop/").all()  # relative to the cwd
    assert all(Path(u.removeprefix("file:")).exists() for u in a.imageurl)
    assert a.brand.nunique() == 8
    assert not a.drop(columns="imageurl").equals(c.drop(columns="imageurl"))


def dbq_table() -> pd.DataFrame:
    rows = []
    for i in range(30):
        rows.append({"brand": ["Maison Éclat", "Rossi & Figli", "Luna"][i % 3], "product_code": f"P{i:03d}",
                     "title": f"bag {i}", "imageurl": f"https://img.example/{i}.jpg", "category3_code": "BAGS"})
    rows[0]["imageurl"] = "N.A."
    rows[1]["imageurl"] = ""
    rows[2]["imageurl"] = None
    rows[3]["imageurl"] = "ftp://img.example/3.jpg"
    rows[4]["brand"] = ""
    rows[5]["brand"] = "   "
    rows[6]["brand"] = None
    rows[7]["product_code"] = "P008"  # the same product on another date
    rows[9]["product_code"] = "a/b 1"
    rows[10]["product_code"] = "a_b_1"  # sanitises to the same id
    rows[11]["imageurl"] = "file:local/11.png"
    return pd.DataFrame(rows)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_hf_source_on_a_local_table(tmp_path, fmt, caplog):
    table = dbq_table()
    path = tmp_path / f"dbq.{fmt}"
    table.to_parquet(path, index=False) if fmt == "parquet" else table.to_csv(path, index=False)
    params = validate_params({"data": {"source": "hf", "hf_dataset": str(path), "sample_size": 100}})
    with caplog.at_level(logging.INFO, logger="brandcap.catalog"):
        run_catalog(params, tmp_path / "catalog.parquet", tmp_path / "shop")
    cat = pd.read_parquet(tmp_path / "catalog.parquet")
    assert len(cat) == 30 - 8  # 4 placeholder URLs, 3 empty brands, 1 repeated product
    assert cat.imageurl.str.match(r"^(https?://|file:)").all()
    assert (cat.brand.str.strip() != "").all()
    assert cat.product_code.is_unique
    assert cat.product_id.is_unique and all(SAFE.match(p) for p in cat.product_id)
    assert {"a_b_1", "a_b_1-2"} <= set(cat.product_id)
    assert (tmp_path / "shop").is_dir() and not any((tmp_path / "shop").iterdir())
    assert "fewer than data.sample_size=100" in caplog.text
    assert re.search(r"30 rows read .*placeholder_url=4, empty_brand=3, duplicate_product=1, sampled 22, 3 brands", caplog.text)


def test_hf_sampling_is_seeded(tmp_path):
    path = tmp_path / "dbq.parquet"
    dbq_table().to_parquet(path, index=False)

    def sample(seed, out):
        params = validate_params({"seed": seed, "data": {"source": "hf", "hf_dataset": str(path), "sample_size": 10}})
        run_catalog(params, tmp_path / out, tmp_path / "shop")
        return list(pd.read_parquet(tmp_path / out).product_id)

    first, again, other = sample(4, "1.parquet"), sample(4, "2.parquet"), sample(9, "3.parquet")
    assert len(first) == 10 and first == again and first != other


def test_bad_tables_fail_clearly(tmp_path):
    path = tmp_path / "nobrand.parquet"
    dbq_table().drop(columns="brand").to_parquet(path, index=False)
    params = validate_params({"data": {"source": "hf", "hf_dataset": str(path)}})
    with pytest.raises(CatalogError, match=r"missing column\(s\) \['brand'\]"):
        run_catalog(params, tmp_path / "c.parquet", tmp_path / "shop")
    params = validate_params({"data": {"source": "hf", "hf_dataset": str(tmp_path / "absent.csv")}})
    with pytest.raises(CatalogError, match="does not exist"):
        run_catalog(params, tmp_path / "c.parquet", tmp_path / "shop")
    assert not (tmp_path / "c.parquet").exists()


@pytest.mark.parametrize("name", ["empty.parquet", "header_only.csv", "zero_bytes.csv"])
def test_an_empty_table_fails_before_datasets_reads_it(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".parquet"):
        dbq_table().iloc[:0].to_parquet(path, index=False)
    elif name == "header_only.csv":
        dbq_table().iloc[:0].to_csv(path, index=False)
    else:
        path.write_text("")
    params = validate_params({"data": {"source": "hf", "hf_dataset": str(path)}})
    with pytest.raises(CatalogError, match=rf"data\.hf_dataset: local file {re.escape(str(path))} has no rows; point data\.hf_dataset at"):
        run_catalog(params, tmp_path / "c.parquet", tmp_path / "shop")
    assert not (tmp_path / "c.parquet").exists()


def test_product_ids_are_safe_and_unique():
    ids = product_ids(pd.Series(["A/1", "a_1", "../etc", "", "x" * 200, "A_1"]))
    assert ids[0] == "A_1" and ids[1] == "a_1-2" and ids[5] == "A_1-3"
    assert ids[2] == "etc" and ids[3] == "product" and len(ids[4]) == 80
