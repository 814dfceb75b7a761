"""The tables stage on fixture files: funnel, per-epoch rows, best-epoch mark, metrics.json, plots."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from brandcap.config.params import validate_params
from brandcap.evaluation.metrics import paired_difference
from brandcap.evaluation.selection import best_epoch, combine_seeds, overall_best, verdict
from brandcap.files.atomic import write_json, write_jsonl, write_text
from brandcap.model.training_log import write_training_log
from brandcap.running.provenance import data_sha256, params_sha256
from brandcap.stages.tables import _selection_header, experiment_strategy, run_tables, scalar_metrics, versus_baseline

BRANDS = {"Gucci": 60, "Chloé": 35}
TEST_ITEMS = [(f"t{i:02d}", "Gucci" if i < 10 else "Chloé") for i in range(20)]


def outcomes_with(correct: int) -> list[str]:
    """The first `correct` test items right, the others wrong."""
    return ["correct"] * correct + ["wrong"] * (20 - correct)


def write_system(folder: Path, metrics: dict, outcomes: list[str]) -> None:
    """A system's metrics.json and per-item predictions.jsonl, as the evaluate and baselines stages write them."""
    write_json(folder / "metrics.json", metrics)
    write_jsonl(
        folder / "predictions.jsonl",
        [
            {"product_id": pid, "brand": brand, "prediction": "p", "outcome": o}
            for (pid, brand), o in zip(TEST_ITEMS, outcomes)
        ],
    )


def eval_metrics(
    accuracy: float, test_loss: float, general_cider: float, per_brand: dict[str, float], val_accuracy: float = 0.1
) -> dict:
    return {
        "n_test": 20,
        "n_val": 12,
        "n_general": 8,
        "val_brand_accuracy": val_accuracy,
        "val_loss": test_loss,
        "general_brand_hallucination_rate": 0.125,
        "brand_accuracy": accuracy,
        "macro_brand_accuracy": accuracy - 0.05,
        "brand_accuracy_ci": [accuracy - 0.1, accuracy + 0.1],
        "macro_brand_accuracy_ci": [max(accuracy - 0.15, 0.0), accuracy],
        "hedged_rate": 0.05,
        "wrong_brand_rate": 0.1,
        "no_brand_rate": 0.85 - accuracy,
        "brand_accuracy_lenient": accuracy + 0.05,
        "n_brands": 2,
        "test_loss": test_loss,
        "bleu1": 0.5,
        "bleu2": 0.4,
        "bleu3": 0.3,
        "bleu4": 0.2,
        "meteor": 0.25,
        "rouge_l": 0.45,
        "cider": 0.8,
        **{f"general_{k}": 0.1 for k in ["bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l"]},
        "general_cider": general_cider,
        "generation_seconds": 2.0,
        "samples_per_second": 14.0,
        "per_brand_accuracy": {b: {"accuracy": a, "hedged_rate": 0.1, "n": 10} for b, a in per_brand.items()},
    }


@pytest.fixture
def study(tmp_path: Path) -> dict:
    params = validate_params(
        {
            "train": {
                "epochs": 4,
                "save_epochs": [2, 4],
                "experiments": {"freeze_llm": {"strategy": "freeze_llm"}, "lora": {"strategy": "lora"}},
            }
        }
    )
    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame({"product_code": [f"p{i}" for i in range(10)], "brand": ["Gucci"] * 10}).to_parquet(
        data / "catalog.parquet"
    )
    pd.DataFrame(
        {
            "product_id": [f"p{i}" for i in range(10)],
            "status": ["ok"] * 7 + ["failed"] * 3,
            "reason": [None] * 7 + ["http_404", "http_404", "truncated"],
        }
    ).to_parquet(data / "manifest.parquet")
    write_jsonl(
        data / "captions.jsonl", [{"product_id": f"p{i}", "text": None if i == 6 else "A bag."} for i in range(7)]
    )
    write_json(
        data / "clean_report.json",
        {
            "input": 100,
            "removed": {"loop": 1, "garbled": 0, "no_brand": 1, "rare_brand": 3},
            "trimmed": 1,
            "brand_case_fixed": 2,
            "after_caption_rules": 98,
            "after_rules": 95,
            "brands_kept": BRANDS,
            "brands_dropped": {"Prada": 3},
            "train": 3,
            "val": 1,
            "test": 1,
        },
    )
    split = [
        {"product_id": f"p{i}", "image": f"images/p{i}.png", "brand": "Gucci", "caption": "A Gucci bag."}
        for i in range(5)
    ]
    write_jsonl(data / "train.jsonl", split[:3])
    write_jsonl(data / "val.jsonl", split[3:4])
    write_jsonl(data / "test.jsonl", split[4:])

    evals = tmp_path / "eval"
    # Validation picks other epochs than test would: freeze_llm 2 (test 0.55 < 0.70), lora 4; lora is the best.
    runs = {
        ("base", 0): eval_metrics(0.10, 3.0, 0.50, {"Gucci": 0.1, "Chloé": 0.1}, val_accuracy=0.10),
        ("freeze_llm", 2): eval_metrics(0.55, 1.2, 0.45, {"Gucci": 0.7, "Chloé": 0.4}, val_accuracy=0.62),
        ("freeze_llm", 4): eval_metrics(0.70, 0.9, 0.40, {"Gucci": 0.9, "Chloé": 0.5}, val_accuracy=0.58),
        ("lora", 2): eval_metrics(0.65, 1.0, 0.48, {"Gucci": 0.8, "Chloé": 0.5}, val_accuracy=0.50),
        ("lora", 4): eval_metrics(0.60, 0.7, 0.47, {"Gucci": 0.7, "Chloé": 0.5}, val_accuracy=0.66),
    }
    for (exp, epoch), m in runs.items():
        folder = evals / exp / f"epoch-{epoch}" if exp == "base" else evals / exp / "seed-4" / f"epoch-{epoch}"
        write_system(folder, m, outcomes_with(round(20 * m["brand_accuracy"])))
    baselines = tmp_path / "baselines"
    majority = {
        "n_test": 20,
        "brand_accuracy": 0.5,
        "macro_brand_accuracy": 0.5,
        "brand_accuracy_ci": [0.3, 0.7],
        "hedged_rate": 0.0,
    }
    write_system(
        baselines / "majority", majority, ["correct" if brand == "Gucci" else "wrong" for _, brand in TEST_ITEMS]
    )
    for name, correct in [("thumbnail_nn", 9), ("colour_histogram_nn", 8)]:
        write_system(baselines / name, {**majority, "brand_accuracy": correct / 20}, outcomes_with(correct))
    write_system(evals / "base" / "prompted", eval_metrics(0.30, 3.0, 0.0, {}), outcomes_with(6))

    train, dvclive, checkpoints = tmp_path / "train", tmp_path / "dvclive", tmp_path / "checkpoints"
    for exp, trainable in [("freeze_llm", 300_000), ("lora", 40_000)]:
        write_json(
            train / exp / "seed-4" / "summary.json",
            {
                "experiment": exp,
                "strategy": exp,
                "trainable_params": trainable,
                "total_params": 1_000_000,
                "peak_memory_bytes": 512_000_000,
                "wall_time_s": 42.5,
                "samples_per_second": 12.3,
                "checkpoint_bytes": {"2": trainable * 4, "4": trainable * 4},
                "full_model_bytes": 4_000_000,
            },
        )
        write_training_log(
            [
                {
                    "step": s,
                    "epoch": s / 5,
                    "loss": 3.0 / s,
                    "learning_rate": 1e-3,
                    "grad_norm": 1.0,
                    "samples_per_second": 10.0,
                }
                for s in range(1, 21)
            ],
            {"wall_time_s": 42.5},
            dvclive / exp / "seed-4",
        )
        for epoch in (2, 4):
            write_json(
                checkpoints / exp / "seed-4" / f"epoch-{epoch}" / "brandcap_checkpoint.json",
                {"strategy": exp, "saved_bytes": trainable * 4},
            )

    study = {
        "params": params,
        "out": tmp_path / "results",
        "paths": (data, train, dvclive, checkpoints, evals, baselines),
    }
    tables(study)
    return study


def tables(study: dict, out: Path | None = None, **options) -> str:
    """Run the tables stage on the study's files (`options`: run_tables' keyword arguments); the markdown it wrote."""
    data, train, dvclive, checkpoints, evals, baselines = study["paths"]
    out = out or study["out"]
    run_tables(
        study["params"],
        data / "catalog.parquet",
        data / "manifest.parquet",
        data / "captions.jsonl",
        data / "clean_report.json",
        train,
        dvclive,
        checkpoints,
        evals,
        baselines,
        out / "tables.md",
        out / "metrics.json",
        out / "plots",
        **options,
    )
    return (out / "tables.md").read_text()


def eval_folder(study: dict, exp: str, epoch: int, seed: int = 4) -> Path:
    return (
        study["paths"][4] / "base" / "epoch-0"
        if exp == "base"
        else study["paths"][4] / exp / f"seed-{seed}" / f"epoch-{epoch}"
    )


def set_metric(study: dict, exp: str, epoch: int, **values) -> None:
    path = eval_folder(study, exp, epoch) / "metrics.json"
    write_json(path, {**json.loads(path.read_text()), **values})


def row_of(markdown: str, *cells: str) -> str:
    """The one table row that starts with these cells."""
    prefix = "| " + " | ".join(cells) + " |"
    rows = [line for line in markdown.splitlines() if line.startswith(prefix)]
    assert len(rows) == 1, f"expected one row starting {prefix!r}, got {rows}"
    return rows[0]


def test_tables_markdown(study):
    md = (study["out"] / "tables.md").read_text()
    assert "never instead of it" in md
    for heading in [
        "## 1. Data funnel",
        "## 2. Baselines",
        "## 3. Best epoch per experiment (chosen on validation, reported on test)",
        "## 4. Results per experiment and epoch",
        "## 5. Resources per experiment",
        "## 6. Per-brand accuracy",
    ]:
        assert heading in md
    # Funnel
    assert row_of(md, "catalog rows") == "| catalog rows | 10 |"
    assert "(failed 3: http_404 2, truncated 1)" in row_of(md, "images downloaded")
    assert row_of(md, "captioned").startswith("| captioned | 6 ")
    assert row_of(md, "removed: loop") == "| removed: loop | -1 |"
    # the brand filter runs after the caption rules: its removals are the "brands dropped" row, after them
    assert row_of(md, "after the caption rules").startswith("| after the caption rules | 98 (")
    assert "removed: rare_brand" not in md
    assert (
        row_of(md, "brands dropped (too few captions)")
        == "| brands dropped (too few captions) | 1 brands, -3 captions |"
    )
    assert (
        md.index("| after the caption rules |")
        < md.index("| brands dropped")
        < md.index("| brands kept")
        < md.index("| train / validation")
    )
    assert row_of(md, "brands kept") == "| brands kept | 2 brands, 95 captions |"
    assert row_of(md, "train / validation / test") == "| train / validation / test | 3 / 1 / 1 |"
    # Baselines, on the same metric; the strongest is named
    assert row_of(md, "majority").startswith(
        "| majority | the most frequent training brand, always | 0.500 [0.30, 0.70] |"
    )
    assert row_of(md, "zero_shot").startswith(
        "| zero_shot | the base model, asked the training instruction (epoch 0) | 0.100 [0.00, 0.20] |"
    )
    assert row_of(md, "prompted").startswith(
        "| prompted | the base model, asked with the candidate brand list (prompt only) | 0.300 "
    )
    assert "Strongest baseline (highest test brand accuracy): `majority`." in md
    # Results: epoch 0 is the base model; best = highest VALIDATION accuracy (freeze_llm 2, lora 4), not test's
    base_row = row_of(md, "freeze_llm", "freeze_llm", "0")
    # val. acc., brand acc. [CI], macro acc. [CI], hedged, wrong brand, lenient acc., test loss
    assert "| 0.100 | 0.100 [0.00, 0.20] | 0.050 [0.00, 0.10] | 0.050 | 0.100 | 0.150 | 3.000 |" in base_row
    assert base_row.endswith("| +0.000 | 0.125 |")
    assert "| 0.620 | 0.550 [0.45, 0.65] | 0.500 [0.40, 0.55] |" in row_of(md, "freeze_llm", "freeze_llm", "2 **best**")
    assert row_of(md, "freeze_llm", "freeze_llm", "2 **best**").endswith("| -0.050 | 0.125 |")
    assert row_of(md, "lora", "lora", "4 **best**")
    assert "**best**" not in row_of(md, "freeze_llm", "freeze_llm", "4") + row_of(md, "lora", "lora", "2")
    assert md.count("**best**") == 2 + 1  # one per experiment, plus the legend sentence
    # Best epochs: test figures of the validation choice, margin over the strongest baseline (majority)
    lora = row_of(md, "lora", "lora", "4", "0.660")
    assert "| 0.600 [0.50, 0.70] | 0.550 [0.45, 0.60] | +0.100 [" in lora and lora.endswith("| -0.030 | 0.125 |")
    assert "**Best**: `lora` epoch 4 (validation brand accuracy 0.660)." in md
    assert "no signal" not in md
    # Resources
    resources = row_of(md, "lora", "lora", "40.0 k (4.0%)")
    assert "| 1.00 M | 160.0 KB (4% of the full model) | 512.0 MB | 42.5 | 12.3 |" in resources
    # Per-brand accuracy of the best checkpoint (lora epoch 4), most captions first
    assert "Best checkpoint: `lora` epoch 4 (brand accuracy 0.600 [0.50, 0.70], macro 0.550 [0.45, 0.60])" in md
    assert "| brand | cleaned captions | test items (n) | base accuracy | lora accuracy |" in md
    assert row_of(md, "Gucci") == "| Gucci | 60 | 10 | 0.100 | 0.700 (hedged 0.100) |"
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
        f"| data sha256 ({data.as_posix()}/train.jsonl, {data.as_posix()}/val.jsonl, {data.as_posix()}/test.jsonl, {data.as_posix()}/clean_report.json) | `{origin['data_sha256']}` |",
    ]


def test_metrics_json_is_flat_scalars(study):
    metrics = json.loads((study["out"] / "metrics.json").read_text())
    assert set(metrics) == {"provenance", "base", "freeze_llm", "lora", "baselines", "selection"}
    metrics.pop("provenance")
    assert metrics.pop("baselines")["majority"]["brand_accuracy_ci_low"] == 0.3
    metrics.pop("selection")
    assert set(metrics["base"]) == {"epoch-0"} and set(metrics["lora"]) == {"epoch-2", "epoch-4"}
    epoch = metrics["freeze_llm"]["epoch-4"]
    assert epoch["brand_accuracy"] == 0.70
    # Intervals are flattened for `dvc exp show`: freeze_llm.epoch-4.brand_accuracy_ci_low, ...
    assert epoch["brand_accuracy_ci_low"] == pytest.approx(0.60) and epoch["brand_accuracy_ci_high"] == pytest.approx(
        0.80
    )
    assert epoch["macro_brand_accuracy_ci_low"] == pytest.approx(0.55) and epoch[
        "macro_brand_accuracy_ci_high"
    ] == pytest.approx(0.70)
    assert "brand_accuracy_ci" not in epoch
    assert epoch["hedged_rate"] == 0.05 and epoch["brand_accuracy_lenient"] == pytest.approx(0.75)
    assert epoch["forgetting_cider_change"] == pytest.approx(-0.10)
    assert "per_brand_accuracy" not in epoch
    # timings vary from run to run: a rerun of the same study must give the same metrics.json
    assert not {"generation_seconds", "samples_per_second"} & set(epoch)
    assert all(
        isinstance(v, (int, float)) or v is None for runs in metrics.values() for m in runs.values() for v in m.values()
    )


def test_plots_are_images_with_csvs(study):
    plots = study["out"] / "plots"
    for name in ["brand_accuracy.png", "train_loss.png"]:
        with Image.open(plots / name) as img:
            img.verify()
            assert img.format == "PNG" and img.size[0] > 300
    with open(plots / "brand_accuracy.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["experiment"], r["epoch"]) for r in rows] == [
        ("freeze_llm", "0"),
        ("freeze_llm", "2"),
        ("freeze_llm", "4"),
        ("lora", "0"),
        ("lora", "2"),
        ("lora", "4"),
    ]
    assert float(rows[0]["brand_accuracy"]) == 0.10 and float(rows[2]["macro_brand_accuracy"]) == pytest.approx(0.65)
    assert float(rows[2]["brand_accuracy_ci_low"]) == pytest.approx(0.60) and float(
        rows[2]["brand_accuracy_ci_high"]
    ) == pytest.approx(0.80)
    assert float(rows[2]["hedged_rate"]) == 0.05 and float(rows[2]["brand_accuracy_lenient"]) == pytest.approx(0.75)
    with open(plots / "train_loss.csv") as f:
        loss_rows = list(csv.DictReader(f))
    assert (
        len(loss_rows) == 40
        and list(loss_rows[0]) == ["experiment", "seed", "step", "epoch", "loss"]
        and loss_rows[0]["seed"] == "4"
    )
    assert not list(study["out"].rglob("*.tmp"))  # atomic writes leave no temporaries


def test_missing_evaluation_names_the_file_and_fix(study, tmp_path):
    evals, baselines = study["paths"][4], study["paths"][5]
    metrics = evals / "lora" / "seed-4" / "epoch-4" / "metrics.json"
    kept = metrics.read_bytes()
    metrics.unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"lora/seed-4/epoch-4/metrics.json: not found; run the evaluate stage for lora seed 4 epoch 4",
    ):
        tables(study, tmp_path)
    metrics.write_bytes(kept)
    (baselines / "thumbnail_nn" / "predictions.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"thumbnail_nn/predictions.jsonl: not found; run the baselines stage"):
        tables(study, tmp_path)


def test_best_epoch_is_chosen_on_validation_and_must_beat_the_base_model():
    base = {"val_brand_accuracy": 0.3, "brand_accuracy": 0.0}
    runs = {
        2: {"val_brand_accuracy": 0.5, "brand_accuracy": 0.1},
        4: {"val_brand_accuracy": 0.4, "brand_accuracy": 0.9},
    }
    assert best_epoch(runs, base) == 2  # not the test set's favourite
    runs[4]["val_brand_accuracy"] = 0.5
    assert best_epoch(runs, base) == 2  # a tie within an experiment: the earlier epoch
    assert best_epoch(runs, {"val_brand_accuracy": 0.5}) is None  # equal to the base model: no learning
    assert (
        best_epoch({2: {"val_brand_accuracy": 0.0}, 4: {"val_brand_accuracy": 0.0}}, {"val_brand_accuracy": 0.0})
        is None
    )


def test_ties_between_experiments_are_ties_and_no_learning_names_no_best():
    evaluations = {
        "a": {2: {"val_brand_accuracy": 0.5}},
        "b": {2: {"val_brand_accuracy": 0.5}},
        "c": {2: {"val_brand_accuracy": 0.4}},
    }
    assert overall_best(evaluations, {"a": 2, "b": 2, "c": 2}) == ["a", "b"] and verdict(["a", "b"]) == "tie"
    assert overall_best(evaluations, {"a": None, "b": None, "c": 2}) == ["c"] and verdict(["c"]) == "best"
    assert overall_best(evaluations, {"a": None, "b": None, "c": None}) == [] and verdict([]) == "no learning"


def test_tables_report_a_tie_between_experiments(study, tmp_path):
    set_metric(study, "freeze_llm", 2, val_brand_accuracy=0.66, val_brand_accuracy_ci=[0.50, 0.80])  # lora's has none
    md = tables(study, tmp_path)
    # the tie shares the value only: one experiment's interval is not the others'
    assert "**Tie** on validation brand accuracy (0.660): `freeze_llm` epoch 2, `lora` epoch 4." in md
    assert "Best checkpoints (tied): `freeze_llm` epoch 2" in md
    assert "| brand | cleaned captions | test items (n) | base accuracy | freeze_llm accuracy | lora accuracy |" in md
    selection = json.loads((tmp_path / "metrics.json").read_text())["selection"]
    assert selection["verdict"] == "tie" and selection["best"] == "freeze_llm, lora"


def test_baselines_tied_with_the_strongest_are_named(study, tmp_path):
    baselines = study["paths"][5]
    for name in ("thumbnail_nn", "colour_histogram_nn"):
        folder = baselines / name
        write_system(
            folder, {**json.loads((folder / "metrics.json").read_text()), "brand_accuracy": 0.5}, outcomes_with(10)
        )
    md = tables(study, tmp_path)
    assert (
        "Strongest baseline (highest test brand accuracy): `majority` (tied with `thumbnail_nn`, `colour_histogram_nn`; "
        "the margins are taken over the first in table order)."
    ) in md
    assert "(tied with" not in (study["out"] / "tables.md").read_text()  # the study as built: majority alone


def test_no_learning_is_said_and_marks_no_best(study, tmp_path):
    """The smoke profile's case: nothing beats the base model on validation, so nothing is 'best'."""
    for exp, epoch in [("freeze_llm", 2), ("freeze_llm", 4), ("lora", 2), ("lora", 4)]:
        set_metric(study, exp, epoch, val_brand_accuracy=0.10)  # equal to the base model's
    md = tables(study, tmp_path)
    assert "**best**" not in md.replace("**best** marks", "")
    assert "**No learning**: no experiment beats the base model on validation" in md
    assert row_of(md, "lora", "lora", "no learning", "0.100 (epoch 2)")
    assert row_of(md, "freeze_llm", "freeze_llm", "0 (base model, still best: no learning)")
    selection = json.loads((tmp_path / "metrics.json").read_text())["selection"]
    assert selection["verdict"] == "no learning" and selection["best"] == "" and selection["lora"]["epoch"] is None
    assert (
        selection["versus_strongest_baseline"] == "no best checkpoint" == selection["lora"]["versus_strongest_baseline"]
    )
    assert "strongest baseline**" not in md


def test_margin_over_the_strongest_baseline_is_paired_by_product(study):
    selection = json.loads((study["out"] / "metrics.json").read_text())["selection"]
    assert selection["strongest_baseline"] == "majority"
    expected = paired_difference(outcomes_with(12), ["correct"] * 10 + ["wrong"] * 10, [b for _, b in TEST_ITEMS])[
        "brand_accuracy"
    ]
    lora = selection["lora"]
    assert lora["epoch"] == 4 and lora["brand_accuracy"] == 0.60 and lora["val_brand_accuracy"] == 0.66
    assert lora["margin_brand_accuracy"] == pytest.approx(expected["difference"]) == pytest.approx(0.10)
    assert [lora["margin_brand_accuracy_ci_low"], lora["margin_brand_accuracy_ci_high"]] == pytest.approx(
        expected["ci"]
    )


def test_a_best_checkpoint_beats_the_strongest_baseline_only_when_its_whole_interval_lies_above_zero():
    assert versus_baseline({"difference": 0.10, "ci": [0.02, 0.18]}) == "above"
    assert versus_baseline({"difference": 0.10, "ci": [-0.01, 0.21]}) == "not above"
    assert versus_baseline({"difference": 0.0, "ci": [0.0, 0.0]}) == "not above"  # the majority answer itself
    assert versus_baseline({"difference": -0.10, "ci": [-0.18, -0.02]}) == "below"
    two_seeds = {
        "difference": 0.1,
        "difference_sd": 0.05,
        "ci": None,
        "per_seed": {4: {"difference": 0.15, "ci": [0.05, 0.25]}, 5: {"difference": 0.05, "ci": [-0.05, 0.15]}},
    }
    assert versus_baseline(two_seeds) == "not above"  # every seed must clear it
    two_seeds["per_seed"][5]["ci"] = [0.01, 0.09]
    assert versus_baseline(two_seeds) == "above"


def test_the_tables_say_whether_fine_tuning_beats_the_strongest_baseline(study, tmp_path):
    md = (study["out"] / "tables.md").read_text()
    selection = json.loads((study["out"] / "metrics.json").read_text())["selection"]
    # lora's margin over the majority, +0.100, has an interval that includes zero
    assert (
        "**Fine-tuning does not beat the strongest baseline** (`majority`): the margin's 95% interval of the best checkpoint does not lie above zero."
        in md
    )
    assert selection["versus_strongest_baseline"] == "not above" == selection["lora"]["versus_strongest_baseline"]
    folder = eval_folder(study, "lora", 4)
    write_system(folder, json.loads((folder / "metrics.json").read_text()), outcomes_with(20))  # every test item right
    md = tables(study, tmp_path)
    selection = json.loads((tmp_path / "metrics.json").read_text())["selection"]
    assert (
        "**Fine-tuning beats the strongest baseline** (`majority`): the margin's 95% interval of the best checkpoint lies above zero."
        in md
    )
    assert selection["versus_strongest_baseline"] == "above" == selection["lora"]["versus_strongest_baseline"]


def test_other_test_items_than_the_baselines_are_refused(study, tmp_path):
    path = study["paths"][4] / "lora" / "seed-4" / "epoch-4" / "predictions.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(
        ValueError,
        match=r"lora/seed-4/epoch-4/predictions.jsonl: scored 19 test items, the baseline 20, not the same ones",
    ):
        tables(study, tmp_path)


def test_a_probe_the_base_model_cannot_answer_has_no_signal(study, tmp_path):
    set_metric(study, "base", 0, general_cider=0.0)
    md = tables(study, tmp_path)
    assert row_of(md, "lora", "lora", "4 **best**").endswith("| no signal | 0.125 |")
    assert "+0.000" not in md and "The forgetting probe has **no signal**" in md
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["lora"]["epoch-4"]["forgetting_cider_change"] is None


def test_scalar_metrics_flattens_intervals_and_tolerates_older_files():
    evaluations = {
        "lora": {
            2: {"brand_accuracy": None, "brand_accuracy_ci": None, "per_brand_accuracy": {}},
            4: {"brand_accuracy": 0.5},
        }
    }
    assert scalar_metrics(evaluations) == {
        "lora": {
            "epoch-2": {"brand_accuracy": None, "brand_accuracy_ci_low": None, "brand_accuracy_ci_high": None},
            "epoch-4": {"brand_accuracy": 0.5},  # written before intervals existed: no interval keys
        }
    }


# ----------------------------------------------------------------------------- several training seeds
def test_several_seeds_combine_into_mean_and_sd_and_choose_epochs_on_the_mean():
    """Seed 4 alone would pick epoch 2 (validation 0.62); the mean over seeds 4 and 5 picks epoch 4."""
    seed_4 = {
        2: eval_metrics(0.55, 1.2, 0.45, {"Gucci": 0.7}, val_accuracy=0.62),
        4: eval_metrics(0.70, 0.9, 0.40, {"Gucci": 0.9}, val_accuracy=0.58),
    }
    seed_5 = {
        2: eval_metrics(0.45, 1.4, 0.45, {"Gucci": 0.5}, val_accuracy=0.40),
        4: eval_metrics(0.60, 1.1, 0.40, {"Gucci": 0.7}, val_accuracy=0.70),
    }
    assert best_epoch(seed_4, {"val_brand_accuracy": 0.1}) == 2
    combined = {epoch: combine_seeds([seed_4[epoch], seed_5[epoch]]) for epoch in (2, 4)}
    assert best_epoch(combined, {"val_brand_accuracy": 0.1}) == 4
    four = combined[4]
    assert four["n_seeds"] == 2
    assert four["brand_accuracy"] == pytest.approx(0.65) and four["brand_accuracy_sd"] == pytest.approx(
        statistics.stdev([0.70, 0.60])
    )
    assert four["macro_brand_accuracy"] == pytest.approx(0.60) and four["macro_brand_accuracy_sd"] == pytest.approx(
        statistics.stdev([0.65, 0.55])
    )
    assert four["val_brand_accuracy"] == pytest.approx(0.64) and four["val_brand_accuracy_sd"] == pytest.approx(
        statistics.stdev([0.58, 0.70])
    )
    assert (
        four["test_loss"] == pytest.approx(1.0) and four["n_test"] == 20
    )  # other figures: means; shared counts stay ints
    assert four["per_brand_accuracy"]["Gucci"] == {"accuracy": pytest.approx(0.8), "hedged_rate": 0.1, "n": 10}
    assert "brand_accuracy_ci" not in four  # one seed's bootstrap interval says nothing about the mean
    assert combine_seeds([seed_4[4]]) is seed_4[4]  # one seed: its figures as they are


@pytest.fixture
def two_seed_study(study: dict) -> dict:
    """The study with train.seeds [4, 5]: seed 5 moves freeze_llm's best epoch to 4 and makes it the best experiment."""
    params = study["params"].model_dump(mode="json")
    params["train"]["seeds"] = [4, 5]
    study["params"] = validate_params(params)
    data, train, dvclive, checkpoints, evals, baselines = study["paths"]
    seed_5 = {
        ("freeze_llm", 2): eval_metrics(0.45, 1.4, 0.45, {"Gucci": 0.5, "Chloé": 0.3}, val_accuracy=0.40),
        ("freeze_llm", 4): eval_metrics(0.60, 1.1, 0.40, {"Gucci": 0.7, "Chloé": 0.3}, val_accuracy=0.70),
        ("lora", 2): eval_metrics(0.55, 1.0, 0.48, {"Gucci": 0.6, "Chloé": 0.5}, val_accuracy=0.60),
        ("lora", 4): eval_metrics(0.50, 0.8, 0.47, {"Gucci": 0.6, "Chloé": 0.4}, val_accuracy=0.56),
    }
    for (exp, epoch), m in seed_5.items():
        write_system(eval_folder(study, exp, epoch, seed=5), m, outcomes_with(round(20 * m["brand_accuracy"])))
    for exp in ("freeze_llm", "lora"):
        (train / exp / "seed-5").mkdir(parents=True, exist_ok=True)
        (train / exp / "seed-5" / "summary.json").write_bytes((train / exp / "seed-4" / "summary.json").read_bytes())
        shutil.copytree(dvclive / exp / "seed-4", dvclive / exp / "seed-5")
    tables(study)
    return study


def test_tables_with_several_seeds_show_mean_and_sd_and_choose_on_the_mean(two_seed_study):
    md = (two_seed_study["out"] / "tables.md").read_text()
    sd = statistics.stdev
    assert "learning rate 0.003, seed 4 (data), training seeds 4, 5." in md
    assert "**2 training seeds** (4, 5)" in md
    # results per epoch: n seeds, then val., brand and macro accuracy as mean ± sd
    assert (
        "| experiment | strategy | epoch | seeds (n) | val. acc. (mean ± sd, 2 seeds) | brand acc. (mean ± sd, 2 seeds) "
        "| macro acc. (mean ± sd, 2 seeds) | hedged |"
    ) in md
    row = row_of(md, "freeze_llm", "freeze_llm", "4 **best**", "2")
    assert (
        f"| 0.640 ± {sd([0.58, 0.70]):.3f} | 0.650 ± {sd([0.70, 0.60]):.3f} | 0.600 ± {sd([0.65, 0.55]):.3f} |" in row
    )
    assert "**best**" not in row_of(md, "freeze_llm", "freeze_llm", "2")  # seed 4 alone would choose epoch 2
    assert row_of(
        md, "freeze_llm", "freeze_llm", "0", "n/a (base model)", "0.100", "0.100 [0.00, 0.20]"
    )  # the base model is one model
    # best epoch per experiment: on the mean validation accuracy; margin = mean ± sd of the seeds' margins
    assert (
        "| experiment | strategy | best epoch | val. brand acc. (mean ± sd, 2 seeds) | test brand acc. (mean ± sd, 2 seeds) |"
        in md
    )
    assert (
        f"| 0.650 ± {sd([0.70, 0.60]):.3f} | 0.600 ± {sd([0.65, 0.55]):.3f} | +0.150 ± {sd([0.20, 0.10]):.3f} |"
        in row_of(md, "freeze_llm", "freeze_llm", "4", f"0.640 ± {sd([0.58, 0.70]):.3f}")
    )
    assert f"**Best**: `freeze_llm` epoch 4 (validation brand accuracy 0.640 ± {sd([0.58, 0.70]):.3f})." in md
    assert "the margin's 95% interval of the best checkpoint does not lie above zero in every seed." in md
    # resources per run, per-brand accuracy as the mean over seeds
    assert row_of(md, "lora (seed 5)", "lora")
    assert row_of(md, "Gucci") == "| Gucci | 60 | 10 | 0.100 | 0.800 (hedged 0.100) |"
    assert "| freeze_llm accuracy (mean over 2 seeds) |" in md


def test_metrics_json_with_several_seeds_keeps_each_seeds_figures(two_seed_study):
    metrics = json.loads((two_seed_study["out"] / "metrics.json").read_text())
    freeze_llm = metrics["freeze_llm"]
    assert set(freeze_llm) == {"epoch-2", "epoch-4", "seed-4", "seed-5"}
    mean = freeze_llm["epoch-4"]
    assert mean["brand_accuracy"] == pytest.approx(0.65) and mean["brand_accuracy_sd"] == pytest.approx(
        statistics.stdev([0.70, 0.60])
    )
    assert mean["n_seeds"] == 2 and "brand_accuracy_ci_low" not in mean
    assert freeze_llm["seed-5"]["epoch-4"]["brand_accuracy"] == 0.60
    assert freeze_llm["seed-5"]["epoch-4"]["brand_accuracy_ci_low"] == pytest.approx(0.50)
    assert freeze_llm["seed-4"]["epoch-2"]["val_brand_accuracy"] == 0.62
    selection = metrics["selection"]
    assert selection["best"] == "freeze_llm" and selection["freeze_llm"]["epoch"] == 4
    assert selection["freeze_llm"]["margin_brand_accuracy"] == pytest.approx(0.15)
    assert selection["freeze_llm"]["margin_brand_accuracy_sd"] == pytest.approx(statistics.stdev([0.20, 0.10]))
    assert selection["freeze_llm"]["seeds"]["seed-5"]["margin_brand_accuracy"] == pytest.approx(0.10)
    with open(two_seed_study["out"] / "plots" / "train_loss.csv") as f:
        assert {(r["experiment"], r["seed"]) for r in csv.DictReader(f)} == {
            (e, s) for e in ("freeze_llm", "lora") for s in ("4", "5")
        }


def test_a_missing_seed_names_its_run(two_seed_study, tmp_path):
    (eval_folder(two_seed_study, "lora", 2, seed=5) / "metrics.json").unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"lora/seed-5/epoch-2/metrics.json: not found; run the evaluate stage for lora seed 5 epoch 2",
    ):
        tables(two_seed_study, tmp_path)


def test_tables_link_the_review_page_relatively(study, tmp_path):
    review_dir = tmp_path / "results" / "review"
    assert "review/index.html" not in tables(study)
    with pytest.raises(FileNotFoundError, match=r"review/index\.html: not found; run the review stage"):
        tables(study, review_dir=review_dir)
    write_text(review_dir / "index.html", "<!DOCTYPE html>")
    tables(study, review_dir=review_dir)
    assert (
        "Review page: [review/index.html](review/index.html), each test item's photo"
        in (study["out"] / "tables.md").read_text()
    )


def test_a_mixing_experiment_says_so_beside_its_strategy():
    params = validate_params(
        {
            "train": {
                "general_mix": 0.0,
                "experiments": {
                    "plain": {"strategy": "freeze_vision"},
                    "mixed": {"strategy": "freeze_vision", "general_mix": 1.0},
                    "tenfold": {"strategy": "lora", "general_mix": 10},
                },
            }
        }
    )
    assert [experiment_strategy(params, exp) for exp in ("plain", "mixed", "tenfold")] == [
        "freeze_vision",
        "freeze_vision + generic 1:1",
        "lora + generic 10:1",
    ]


def test_the_selection_note_warns_that_synthetic_generic_captions_share_the_probes_style():
    base, selection = {"general_brand_hallucination_rate": 0.0}, {"strongest_baseline": "majority"}
    mixed = validate_params({})  # the default matrix has freeze_vision_mix
    unmixed = validate_params({"train": {"experiments": {"lora": {"strategy": "lora"}}}})
    assert "same templates as the probe's" in "".join(_selection_header(mixed, selection, base))
    assert "same templates" not in "".join(_selection_header(unmixed, selection, base))


def test_the_linear_probe_and_what_the_base_knew_sit_beside_the_baselines_outside_the_verdict(study, tmp_path):
    probe_dir = tmp_path / "linear_probe"
    knows = {
        "held_out_attribute_accuracy": {"emblem": 0.91, "pattern": 0.62},
        "vocabulary_images": 400_000,
        "stopped": "plateau",
        "drawing_code_current": True,
        "seed": 4,
    }
    write_json(
        probe_dir / "metrics.json",
        {"n_test": 20, "brand_accuracy": 0.95, "brand_accuracy_ci": [0.85, 1.0], "base_knows": knows},
    )
    out = tmp_path / "with_probe"
    tables(study, out, linear_probe_dir=probe_dir)
    md = (out / "tables.md").read_text()
    section = md.split("## 2. Baselines")[1].split("## 3.")[0]
    assert "linear probe on the base model's image tokens" in section and "0.950 [0.85, 1.00]" in section
    assert (
        "400,000 drawn images" in section
        and "emblem 0.91, pattern 0.62" in section
        and "never shown which combination" in section
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["linear_probe"]["brand_accuracy"] == 0.95 and metrics["linear_probe"]["base_knows"] == knows
    # the probe is stronger than every baseline, yet the verdict is taken over the baselines only
    assert metrics["selection"]["strongest_baseline"] != "linear_probe"
    assert metrics["selection"] == json.loads((study["out"] / "metrics.json").read_text())["selection"]

    write_json(
        probe_dir / "metrics.json",
        {"n_test": 20, "brand_accuracy": 0.95, "base_knows": {**knows, "drawing_code_current": False}},
    )
    tables(study, out, linear_probe_dir=probe_dir)
    assert "the stand-in was made from other drawing code" in (out / "tables.md").read_text()


def test_the_funnel_names_a_brand_that_lost_every_caption_with_its_rule(study, tmp_path):
    report_path = study["paths"][0] / "clean_report.json"
    report = json.loads(report_path.read_text())
    write_json(report_path, {**report, "brands_lost": {"دار الأزياء الملكية": {"rule": "garbled", "captions": 57}}})
    try:
        md = tables(study, tmp_path / "lost")
    finally:
        write_json(report_path, report)
    assert row_of(
        md, "brands that lost every caption to the caption rules", "1 brands: دار الأزياء الملكية (garbled, -57)"
    )


def test_an_experiment_within_the_rounding_spread_of_the_best_is_named_as_not_a_stable_ranking(study, tmp_path):
    """lora is best on validation (0.66) and freeze_llm 0.04 behind: within 0.06 the ranking is not stable."""
    md = (study["out"] / "tables.md").read_text()
    assert "**Not a stable ranking**: `freeze_llm` is within 0.06 of it on validation" in md
    assert (
        json.loads((study["out"] / "metrics.json").read_text())["selection"]["within_rounding_of_best"] == "freeze_llm"
    )
    narrow = {
        **study,
        "params": study["params"].model_copy(
            update={"tables": study["params"].tables.model_copy(update={"rounding_spread": 0.03})}
        ),
    }
    md = tables(narrow, tmp_path / "narrow")
    assert "Not a stable ranking" not in md and "**Best**: `lora` epoch 4" in md
    assert json.loads((tmp_path / "narrow" / "metrics.json").read_text())["selection"]["within_rounding_of_best"] == ""
