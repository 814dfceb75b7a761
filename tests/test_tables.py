"""The tables stage on fixture files: funnel, per-epoch rows, best-epoch mark, metrics.json, plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from brandcap.atomic import write_json, write_jsonl
from brandcap.params import validate_params
from brandcap.provenance import data_sha256, params_sha256
from brandcap.tables import best_epoch, run_tables, scalar_metrics

BRANDS = {"Gucci": 60, "Chloé": 35}


def eval_metrics(accuracy: float, test_loss: float, general_cider: float, per_brand: dict[str, float]) -> dict:
    return {
        "n_test": 20, "n_general": 8,
        "brand_accuracy": accuracy, "macro_brand_accuracy": accuracy - 0.05,
        "brand_accuracy_ci": [accuracy - 0.1, accuracy + 0.1], "macro_brand_accuracy_ci": [max(accuracy - 0.15, 0.0), accuracy],
        "hedged_rate": 0.05, "wrong_brand_rate": 0.1, "no_brand_rate": 0.85 - accuracy,
        "brand_accuracy_lenient": accuracy + 0.05, "n_brands": 2, "test_loss": test_loss,
        "bleu1": 0.5, "bleu2": 0.4, "bleu3": 0.3, "bleu4": 0.2, "meteor": 0.25, "rouge_l": 0.45, "cider": 0.8,
        **{f"general_{k}": 0.1 for k in ["bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l"]},
        "general_cider": general_cider,
        "generation_seconds": 2.0, "samples_per_second": 14.0,
        "per_brand_accuracy": {b: {"accuracy": a, "hedged_rate": 0.1, "n": 10} for b, a in per_brand.items()},
    }


@pytest.fixture
def study(tmp_path: Path) -> dict:
    params = validate_params({
        "train": {
            "epochs": 4, "save_epochs": [2, 4],
            "experiments": {"freeze_llm": {"strategy": "freeze_llm"}, "lora": {"strategy": "lora"}},
        }
    })
    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame({"product_code": [f"p{i}" for i in range(10)], "brand": ["Gucci"] * 10}).to_parquet(data / "catalog.parquet")
    pd.DataFrame({
        "product_id": [f"p{i}" for i in range(10)],
        "status": ["ok"] * 7 + ["failed"] * 3,
        "reason": [None] * 7 + ["http_404", "http_404", "truncated"],
    }).to_parquet(data / "manifest.parquet")
    write_jsonl(data / "captions.jsonl", [{"product_id": f"p{i}", "text": None if i == 6 else "A bag."} for i in range(7)])
    write_json(data / "clean_report.json", {
        "input": 6, "removed": {"loop": 1, "garbled": 0, "no_brand": 1}, "trimmed": 1, "brand_case_fixed": 2,
        "after_rules": 4, "brands_kept": BRANDS, "brands_dropped": {"Prada": 3}, "train": 3, "test": 1,
    })
    split = [{"product_id": f"p{i}", "image": f"images/p{i}.png", "brand": "Gucci", "caption": "A Gucci bag."} for i in range(4)]
    write_jsonl(data / "train.jsonl", split[:3])
    write_jsonl(data / "test.jsonl", split[3:])

    evals = tmp_path / "eval"
    runs = {
        ("base", 0): eval_metrics(0.10, 3.0, 0.50, {"Gucci": 0.1, "Chloé": 0.1}),
        ("freeze_llm", 2): eval_metrics(0.55, 1.2, 0.45, {"Gucci": 0.7, "Chloé": 0.4}),
        ("freeze_llm", 4): eval_metrics(0.70, 0.9, 0.40, {"Gucci": 0.9, "Chloé": 0.5}),
        ("lora", 2): eval_metrics(0.65, 1.0, 0.48, {"Gucci": 0.8, "Chloé": 0.5}),
        ("lora", 4): eval_metrics(0.60, 0.7, 0.47, {"Gucci": 0.7, "Chloé": 0.5}),
    }
    for (exp, epoch), m in runs.items():
        write_json(evals / exp / f"epoch-{epoch}" / "metrics.json", m)

    train, checkpoints = tmp_path / "train", tmp_path / "checkpoints"
    for exp, trainable in [("freeze_llm", 300_000), ("lora", 40_000)]:
        write_json(train / exp / "summary.json", {
            "experiment": exp, "strategy": exp, "trainable_params": trainable, "total_params": 1_000_000,
            "peak_memory_bytes": 512_000_000, "wall_time_s": 42.5, "samples_per_second": 12.3,
            "checkpoint_bytes": {"2": trainable * 4, "4": trainable * 4}, "full_model_bytes": 4_000_000,
        })
        write_jsonl(train / exp / "log.jsonl", [
            {"step": s, "epoch": s / 5, "loss": 3.0 / s, "learning_rate": 1e-3, "grad_norm": 1.0, "samples_per_second": 10.0}
            for s in range(1, 21)
        ])
        for epoch in (2, 4):
            write_json(checkpoints / exp / f"epoch-{epoch}" / "brandcap_checkpoint.json", {"strategy": exp, "saved_bytes": trainable * 4})

    out = tmp_path / "results"
    run_tables(
        params, data / "catalog.parquet", data / "manifest.parquet", data / "captions.jsonl", data / "clean_report.json",
        train, checkpoints, evals, out / "tables.md", out / "metrics.json", out / "plots",
    )
    return {"params": params, "out": out, "paths": (data, train, checkpoints, evals)}


def row_of(markdown: str, *cells: str) -> str:
    """The one table row that starts with these cells."""
    prefix = "| " + " | ".join(cells) + " |"
    rows = [line for line in markdown.splitlines() if line.startswith(prefix)]
    assert len(rows) == 1, f"expected one row starting {prefix!r}, got {rows}"
    return rows[0]


def test_tables_markdown(study):
    md = (study["out"] / "tables.md").read_text()
    assert "never instead of it" in md
    for heading in ["## 1. Data funnel", "## 2. Results per experiment and epoch", "## 3. Resources per experiment", "## 4. Per-brand accuracy"]:
        assert heading in md
    # Funnel
    assert row_of(md, "catalog rows") == "| catalog rows | 10 |"
    assert "(failed 3: http_404 2, truncated 1)" in row_of(md, "images downloaded")
    assert row_of(md, "captioned").startswith("| captioned | 6 ")
    assert row_of(md, "removed: loop") == "| removed: loop | -1 |"
    assert row_of(md, "brands kept") == "| brands kept | 2 brands, 95 captions |"
    assert row_of(md, "train / test") == "| train / test | 3 / 1 |"
    # Results: epoch 0 is the base model; best = highest accuracy (freeze_llm 4, lora 2, not lora's lower loss)
    base_row = row_of(md, "freeze_llm", "freeze_llm", "0")
    # brand acc. [CI], macro acc. [CI], hedged, wrong brand, lenient acc., test loss
    assert "| 0.100 [0.00, 0.20] | 0.050 [0.00, 0.10] | 0.050 | 0.100 | 0.150 | 3.000 |" in base_row
    assert base_row.endswith("| +0.000 |")
    assert "| 0.700 [0.60, 0.80] | 0.650 [0.55, 0.70] |" in row_of(md, "freeze_llm", "freeze_llm", "4 **best**")
    assert row_of(md, "freeze_llm", "freeze_llm", "4 **best**").endswith("| -0.100 |")
    assert row_of(md, "lora", "lora", "2 **best**")
    assert "**best**" not in row_of(md, "lora", "lora", "4")
    assert md.count("**best**") == 2 + 1  # one per experiment, plus the legend sentence
    # Resources
    resources = row_of(md, "lora", "lora", "40.0 k (4.0%)")
    assert "| 1.00 M | 160.0 KB (4% of the full model) | 512.0 MB | 42.5 | 12.3 |" in resources
    # Per-brand accuracy of the best checkpoint (freeze_llm epoch 4), most captions first
    assert "Best checkpoint: `freeze_llm` epoch 4 (brand accuracy 0.700 [0.60, 0.80], macro 0.650 [0.55, 0.70])" in md
    assert "| brand | cleaned captions | test items (n) | base accuracy | best accuracy | best hedged |" in md
    assert row_of(md, "Gucci") == "| Gucci | 60 | 10 | 0.100 | 0.900 | 0.100 |"
    assert md.index("| Gucci |") < md.index("| Chloé |")


def test_tables_and_metrics_begin_with_their_provenance(study):
    data = study["paths"][0]
    metrics = json.loads((study["out"] / "metrics.json").read_text())
    assert list(metrics)[0] == "provenance"
    origin = metrics["provenance"]
    assert origin["params_sha256"] == params_sha256(study["params"]) and origin["data_sha256"] == data_sha256(data)
    assert origin["commit"] == "unknown" or len(origin["commit"].removesuffix("+dirty")) == 40
    md = (study["out"] / "tables.md").read_text().splitlines()
    assert md[0] == "# brandcap results"
    assert md[2:7] == [
        "| made from | value |",
        "|:---|:---|",
        f"| commit | `{origin['commit']}` |",
        f"| params sha256 (resolved parameters, canonical JSON) | `{origin['params_sha256']}` |",
        f"| data sha256 ({data.as_posix()}/train.jsonl, {data.as_posix()}/test.jsonl, {data.as_posix()}/clean_report.json) | `{origin['data_sha256']}` |",
    ]


def test_metrics_json_is_flat_scalars(study):
    metrics = json.loads((study["out"] / "metrics.json").read_text())
    assert set(metrics) == {"provenance", "base", "freeze_llm", "lora"}
    metrics.pop("provenance")
    assert set(metrics["base"]) == {"epoch-0"} and set(metrics["lora"]) == {"epoch-2", "epoch-4"}
    epoch = metrics["freeze_llm"]["epoch-4"]
    assert epoch["brand_accuracy"] == 0.70
    # Intervals are flattened for `dvc exp show`: freeze_llm.epoch-4.brand_accuracy_ci_low, ...
    assert epoch["brand_accuracy_ci_low"] == pytest.approx(0.60) and epoch["brand_accuracy_ci_high"] == pytest.approx(0.80)
    assert epoch["macro_brand_accuracy_ci_low"] == pytest.approx(0.55) and epoch["macro_brand_accuracy_ci_high"] == pytest.approx(0.70)
    assert "brand_accuracy_ci" not in epoch
    assert epoch["hedged_rate"] == 0.05 and epoch["brand_accuracy_lenient"] == pytest.approx(0.75)
    assert epoch["forgetting_cider_change"] == pytest.approx(-0.10)
    assert "per_brand_accuracy" not in epoch
    assert all(isinstance(v, (int, float)) or v is None for runs in metrics.values() for m in runs.values() for v in m.values())


def test_plots_are_images_with_csvs(study):
    plots = study["out"] / "plots"
    for name in ["brand_accuracy.png", "train_loss.png"]:
        with Image.open(plots / name) as img:
            img.verify()
            assert img.format == "PNG" and img.size[0] > 300
    with open(plots / "brand_accuracy.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["experiment"], r["epoch"]) for r in rows] == [
        ("freeze_llm", "0"), ("freeze_llm", "2"), ("freeze_llm", "4"), ("lora", "0"), ("lora", "2"), ("lora", "4")
    ]
    assert float(rows[0]["brand_accuracy"]) == 0.10 and float(rows[2]["macro_brand_accuracy"]) == pytest.approx(0.65)
    assert float(rows[2]["brand_accuracy_ci_low"]) == pytest.approx(0.60) and float(rows[2]["brand_accuracy_ci_high"]) == pytest.approx(0.80)
    assert float(rows[2]["hedged_rate"]) == 0.05 and float(rows[2]["brand_accuracy_lenient"]) == pytest.approx(0.75)
    with open(plots / "train_loss.csv") as f:
        loss_rows = list(csv.DictReader(f))
    assert len(loss_rows) == 40 and list(loss_rows[0]) == ["experiment", "step", "epoch", "loss"]
    assert not list(study["out"].rglob("*.tmp"))  # atomic writes leave no temporaries


def test_missing_evaluation_names_the_file_and_fix(study, tmp_path):
    data, train, checkpoints, evals = study["paths"]
    (evals / "lora" / "epoch-4" / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"lora/epoch-4/metrics.json: not found; run the evaluate stage for lora epoch 4"):
        run_tables(
            study["params"], data / "catalog.parquet", data / "manifest.parquet", data / "captions.jsonl",
            data / "clean_report.json", train, checkpoints, evals, tmp_path / "t.md", tmp_path / "m.json", tmp_path / "plots",
        )


def test_best_epoch_ties_prefer_lower_loss_then_earlier():
    runs = {0: {"brand_accuracy": 0.9}, 2: {"brand_accuracy": 0.5, "test_loss": 1.0}, 4: {"brand_accuracy": 0.5, "test_loss": 0.8}}
    assert best_epoch(runs) == 4  # epoch 0 (the base model) is never the best checkpoint
    runs[4]["test_loss"] = 1.0
    assert best_epoch(runs) == 2


def test_scalar_metrics_flattens_intervals_and_tolerates_older_files():
    evaluations = {"lora": {2: {"brand_accuracy": None, "brand_accuracy_ci": None, "per_brand_accuracy": {}}, 4: {"brand_accuracy": 0.5}}}
    assert scalar_metrics(evaluations) == {
        "lora": {
            "epoch-2": {"brand_accuracy": None, "brand_accuracy_ci_low": None, "brand_accuracy_ci_high": None},
            "epoch-4": {"brand_accuracy": 0.5},  # written before intervals existed: no interval keys
        }
    }
