"""linear_probe stage: a linear probe of the base model's image features, the reference for what they hold.

    python workflow/scripts/linear_probe.py --params params.yaml --base models/base --train data/processed/train.jsonl \
        --test data/processed/test.jsonl --out results/linear_probe --log logs/linear_probe.log

or `run_linear_probe(params, Path("models/base"), train_jsonl, test_jsonl, Path("results/linear_probe"))`: embeds
every training image and the evaluated test items (`brandcap.evaluation.metrics.evaluation_sample`,
the same items as every checkpoint and baseline) with the base model
(`brandcap.evaluation.linear_probe.image_features`), fits a linear probe from the features to the brand on
the training split and scores its answers with the brand metric. Writes `out_dir/predictions.jsonl`
(as the baselines stage does) and `out_dir/metrics.json` (`brand_metrics`, `n_test`, `n_features`,
`train_accuracy`, and `base_knows`: the base model's own record of what it learnt before the study,
from `models/base/brandcap_base.json`, when it is a pretrained stand-in). The tables show it next to
the baselines, outside the verdict: the probe is trained on the brand labels.
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import AutoModelForImageTextToText, AutoProcessor

from brandcap.config.params import Params
from brandcap.evaluation.linear_probe import image_features, linear_probe_predictions
from brandcap.evaluation.metrics import brand_metrics, brand_outcomes, evaluation_sample, named_brands
from brandcap.files.atomic import read_json, write_json, write_jsonl
from brandcap.files.images import open_rgb
from brandcap.files.stage_records import ProductImageRecord, read_records

log = logging.getLogger(__name__)

BASE_INFO = "brandcap_base.json"  # written by the base_model stage


def _split(path: Path, what: str) -> list[dict]:
    return read_records(
        path,
        ProductImageRecord,
        f"{what} split",
        allow_empty=False,
        fix="rerun the clean stage (an empty split: check its report, clean_report.json)",
    )


def run_linear_probe(params: Params, base_dir: Path, train_jsonl: Path, test_jsonl: Path, out_dir: Path) -> None:
    train, all_test = _split(Path(train_jsonl), "train"), _split(Path(test_jsonl), "test")
    test = evaluation_sample(all_test, params.eval.max_test_samples, params.seed)
    model = AutoModelForImageTextToText.from_pretrained(base_dir).eval()
    processor = AutoProcessor.from_pretrained(base_dir)

    def embed(rows: list[dict], split: Path):
        return image_features(
            model, processor, [open_rgb(r["image"], split, fix="rerun the download stage") for r in rows]
        )

    x_train, x_test = embed(train, Path(train_jsonl)), embed(test, Path(test_jsonl))
    answers, train_accuracy = linear_probe_predictions(x_train, [r["brand"] for r in train], x_test, seed=params.seed)
    known_brands = sorted({r["brand"] for r in train + all_test})
    test_brands = [r["brand"] for r in test]
    outcomes = brand_outcomes(answers, test_brands, known_brands)
    write_jsonl(
        Path(out_dir) / "predictions.jsonl",
        (
            {
                "product_id": t["product_id"],
                "brand": t["brand"],
                "prediction": a,
                "brands_named": named_brands(a, known_brands),
                "outcome": o,
            }
            for t, a, o in zip(test, answers, outcomes)
        ),
    )
    base_info = (
        read_json(Path(base_dir) / BASE_INFO, "rerun the base_model stage")
        if (Path(base_dir) / BASE_INFO).exists()
        else {}
    )
    metrics = {
        "n_test": len(test),
        "n_features": int(x_train.shape[1]),
        "train_accuracy": train_accuracy,
        **brand_metrics(answers, test_brands, known_brands),
        "base_knows": base_info.get("standin"),
    }
    write_json(Path(out_dir) / "metrics.json", metrics)
    log.info(
        "linear probe of %s's image features (%d per image): train %.3f, test brand accuracy %.3f on %d items; wrote %s",
        base_dir,
        metrics["n_features"],
        train_accuracy,
        metrics["brand_accuracy"],
        len(test),
        out_dir,
    )
