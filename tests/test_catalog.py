"""catalog stage: the synthetic shop and a local DBQ-schema table (parquet and CSV), never the hub."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd
import pytest

from brandcap.config.params import ParamsError, validate_params
from brandcap.files.product_table import DBQ_COLUMNS, product_ids
from brandcap.stages.catalog import CatalogError, run_catalog
from tests.conftest import ONE_UNMIXED_EXPERIMENT

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


# Real-world brand shapes and DBQ's 'N.A.' missing-value marker, as in DBQ/My.Theresa.Product.prices.France.
BRANDS = ["A.P.C.", "Off-White™", "(di)vision", "3.1 Phillip Lim", "Dolce & Gabbana", "Chloé", "See by Chloé"]


def dbq_table() -> pd.DataFrame:
    rows = []
    for i in range(30):
        rows.append(
            {
                "brand": BRANDS[i % len(BRANDS)],
                "product_code": f"P{i:03d}",
                "title": f"bag {i}",
                "imageurl": f"https://img.example/{i}.jpg",
                "category1_code": "WOMEN",
                "category2_code": "BAGS",
                "category3_code": "SHOULDER_BAGS",
                "full_price": 100.0 + i,
            }
        )
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
    rows[12]["brand"] = "N.A."  # DBQ's missing value
    rows[13]["brand"] = "n/a"
    for i in (14, 15, 16):  # three products without a code
        rows[i]["product_code"] = "N.A."
    rows[17] = {**rows[16], "full_price": 90.0}  # ...the third one again, on another date
    rows[18]["title"] = "N.A."
    rows[19].update(category1_code="N.A.", category2_code="N.A.", category3_code="N.A.")
    rows[20]["title"] = "nan"
    rows[21]["title"] = "bag\x00 21"  # a NUL, as a real export once had
    rows[22]["brand"] = "\x07" + BRANDS[22 % len(BRANDS)] + "\x7f"  # a bell and a DEL
    rows[23]["title"] = "bag\n23\tnew"  # line breaks become spaces
    return pd.DataFrame(rows)


DROPPED = 4 + 5 + 2  # 4 placeholder URLs, 5 missing brands, 2 repeated products


def write_table(table: pd.DataFrame, name: str) -> str:
    """`table` saved under data/external/ (relative to the cwd), in the format `name` ends with."""
    path = Path("data/external") / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".parquet"):
        table.to_parquet(path, index=False)
    elif name.endswith(".jsonl"):
        table.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        table.to_csv(path, index=False)  # .csv.gz compressed by its name
    return str(path)


def hf_params(dataset: str, **data) -> object:
    return validate_params(
        {**ONE_UNMIXED_EXPERIMENT, "data": {"source": "hf", "hf_dataset": dataset, "sample_size": 100, **data}}
    )


@pytest.mark.parametrize("name", ["dbq.parquet", "dbq.csv", "dbq.csv.gz", "dbq.jsonl"])
def test_hf_source_on_a_local_table(tmp_path, monkeypatch, name, caplog):
    monkeypatch.chdir(tmp_path)
    params = hf_params(write_table(dbq_table(), name))
    with caplog.at_level(logging.INFO, logger="brandcap.stages.catalog"):
        run_catalog(params, Path("catalog.parquet"), Path("shop"))
    cat = pd.read_parquet("catalog.parquet")
    assert len(cat) == 30 - DROPPED
    assert cat.imageurl.str.match(r"^(https?://|file:)").all()
    assert set(cat.brand) == set(BRANDS)
    assert cat.product_id.is_unique and all(SAFE.match(p) for p in cat.product_id)
    assert {"a_b_1", "a_b_1-2"} <= set(cat.product_id)
    assert (
        not cat.drop(columns="full_price")
        .astype(str)
        .apply(lambda col: col.str.contains(r"[\x00-\x1f\x7f]"))
        .any()
        .any()
    )
    assert {"bag 21", "bag 23 new"} <= set(cat.title)
    assert not Path("shop").exists() or not any(Path("shop").iterdir())
    assert "fewer than data.sample_size=100" in caplog.text
    assert re.search(
        r"30 rows read .*control characters removed from 3 fields, dropped placeholder_url=4, missing_brand=5, duplicate_product=2, sampled 19, 7 brands; "
        r"without product_code 3, without title 2",
        caplog.text,
    )


def test_placeholders_are_missing_in_every_column(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_catalog(hf_params(write_table(dbq_table(), "dbq.parquet")), Path("catalog.parquet"), Path("shop"))
    cat = pd.read_parquet("catalog.parquet").set_index("title", drop=False)
    text = cat.drop(columns="full_price").astype(str)
    assert not text.apply(lambda col: col.str.strip().str.casefold().isin({"n.a.", "n/a", "nan"})).any().any()
    assert (cat.title == "").sum() == 2  # 'N.A.' and 'nan' titles
    uncategorised = cat.loc["bag 19"]
    assert pd.isna(uncategorised.category1_code) and pd.isna(uncategorised.category3_code)
    # products without a code: one id each, from their content; the repeated one kept once
    nocode = cat[cat.product_code == ""]
    assert list(nocode.title) == ["bag 14", "bag 15", "bag 16"]
    assert nocode.product_id.str.match(r"^nocode-[0-9a-f]{16}$").all() and nocode.product_id.is_unique


def test_ids_of_products_without_a_code_come_from_their_content(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table = dbq_table()
    run_catalog(hf_params(write_table(table, "a.parquet")), Path("a.parquet"), Path("shop"))
    shuffled = table.sample(frac=1, random_state=1)
    run_catalog(hf_params(write_table(shuffled, "b.parquet")), Path("b.parquet"), Path("shop"))
    a, b = (pd.read_parquet(p).set_index("title").product_id for p in ("a.parquet", "b.parquet"))
    assert a["bag 14"] == b["bag 14"] and a["bag 16"] == b["bag 16"]


def test_the_caption_prompt_never_says_na(tmp_path, monkeypatch):
    """Catalog -> manifest (the downloader's category) -> the captioner's prompt."""
    from brandcap.files.product_table import category_text
    from brandcap.stages.caption import load_items

    monkeypatch.chdir(tmp_path)
    params = hf_params(write_table(dbq_table(), "dbq.parquet"))
    run_catalog(params, Path("catalog.parquet"), Path("shop"))
    manifest = pd.read_parquet("catalog.parquet")
    manifest["category"] = [category_text(row) for row in manifest.to_dict("records")]
    manifest = manifest.assign(status="ok", image="x.png", sha256="0" * 64)
    manifest.to_parquet("manifest.parquet")
    prompts = {item.title or f"<{item.product_id}>": item.prompt for item in load_items(params, "manifest.parquet")[0]}
    assert not [p for p in prompts.values() if "N.A." in p or "nan" in p or "()" in p]
    assert (
        prompts["bag 19"].startswith("This is a product photo of the brand ")
        and "(category not given)" in prompts["bag 19"]
    )
    untitled = [p for t, p in prompts.items() if t.startswith("<")]
    assert len(untitled) == 2 and all(": an untitled product (shoulder bags)." in p for p in untitled)


def test_hf_sampling_is_seeded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_table(dbq_table(), "dbq.parquet")

    def sample(seed, out):
        params = validate_params(
            {**ONE_UNMIXED_EXPERIMENT, "seed": seed, "data": {"source": "hf", "hf_dataset": path, "sample_size": 10}}
        )
        run_catalog(params, Path(out), Path("shop"))
        return list(pd.read_parquet(out).product_id)

    first, again, other = sample(4, "1.parquet"), sample(4, "2.parquet"), sample(9, "3.parquet")
    assert len(first) == 10 and first == again and first != other


def test_bad_tables_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_table(dbq_table().drop(columns="brand"), "nobrand.parquet")
    with pytest.raises(CatalogError, match=r"missing column\(s\) \['brand'\]"):
        run_catalog(hf_params(path), Path("c.parquet"), Path("shop"))
    with pytest.raises(CatalogError, match="data/external/absent.csv does not exist"):
        run_catalog(hf_params("data/external/absent.csv"), Path("c.parquet"), Path("shop"))
    assert not Path("c.parquet").exists()


@pytest.mark.parametrize(
    "dataset",
    ["../dbq.parquet", "/tmp/dbq.csv", "~/dbq.csv.gz", "data/external/../dbq.jsonl", "data/external/dbq.xlsx"],
)
def test_a_local_table_outside_data_external_fails_before_any_work(tmp_path, monkeypatch, dataset):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(
        ParamsError,
        match=r"data\.hf_dataset: local table .*(lies outside data/external/.*set "
        r"data\.hf_dataset: data/external/dbq|unsupported format)",
    ):
        hf_params(dataset)


def test_home_is_expanded_in_a_local_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    write_table(dbq_table(), "dbq.csv.gz")
    run_catalog(hf_params("~/data/external/dbq.csv.gz"), Path("catalog.parquet"), Path("shop"))
    assert len(pd.read_parquet("catalog.parquet")) == 30 - DROPPED


def test_offline_the_catalog_names_the_dataset_and_the_fix(tmp_path, monkeypatch):
    """The real `datasets` library in offline mode, on a dataset that is in no cache."""
    import datasets
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    params = hf_params("brandcap-tests/not-cached-anywhere", revision="0123abc")
    with pytest.raises(CatalogError) as err:
        run_catalog(params, Path("catalog.parquet"), Path("shop"))
    message = str(err.value)
    assert "brandcap-tests/not-cached-anywhere at revision 0123abc: cannot reach the Hugging Face Hub" in message
    assert "data/external/" in message and "HF_HUB_OFFLINE" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert not Path("catalog.parquet").exists()


def test_the_revision_reaches_the_hub_loader(tmp_path, monkeypatch):
    """Only the call is checked here: tests never reach the Hub."""
    import datasets

    calls = []

    def load_dataset(path, **kwargs):
        calls.append((path, kwargs))
        return datasets.Dataset.from_pandas(dbq_table())

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.chdir(tmp_path)
    run_catalog(
        hf_params("DBQ/My.Theresa.Product.prices.France", revision="0123abc"), Path("catalog.parquet"), Path("shop")
    )
    run_catalog(hf_params("DBQ/My.Theresa.Product.prices.France"), Path("catalog.parquet"), Path("shop"))
    assert [kw["revision"] for _, kw in calls] == ["0123abc", None]
    assert len(pd.read_parquet("catalog.parquet")) == 30 - DROPPED


@pytest.mark.parametrize("name", ["empty.parquet", "header_only.csv", "zero_bytes.csv"])
def test_an_empty_table_fails_before_datasets_reads_it(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    path = Path("data/external") / name
    path.parent.mkdir(parents=True)
    if name.endswith(".parquet"):
        dbq_table().iloc[:0].to_parquet(path, index=False)
    elif name == "header_only.csv":
        dbq_table().iloc[:0].to_csv(path, index=False)
    else:
        path.write_text("")
    params = validate_params({**ONE_UNMIXED_EXPERIMENT, "data": {"source": "hf", "hf_dataset": str(path)}})
    with pytest.raises(
        CatalogError,
        match=rf"data\.hf_dataset: local file {re.escape(str(path))} has no rows; point data\.hf_dataset at",
    ):
        run_catalog(params, tmp_path / "c.parquet", tmp_path / "shop")
    assert not (tmp_path / "c.parquet").exists()


def test_product_ids_are_safe_and_unique():
    ids = product_ids(pd.Series(["A/1", "a_1", "../etc", "", "x" * 200, "A_1"]))
    assert ids[0] == "A_1" and ids[1] == "a_1-2" and ids[5] == "A_1-3"
    assert ids[2] == "etc" and ids[3] == "product" and len(ids[4]) == 80
