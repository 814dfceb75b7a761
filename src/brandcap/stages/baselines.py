"""baselines stage: non-neural baselines on the brand metric, the majority brand and image nearest neighbours.

    python workflow/scripts/baselines.py --params params.yaml --train data/processed/train.jsonl --test data/processed/test.jsonl --out results/baselines --log logs/baselines.log

or from Python: `run_baselines(params, Path("data/processed/train.jsonl"), Path("data/processed/test.jsonl"), Path("results/baselines"))`,
which writes `out_dir/{name}/predictions.jsonl` (`{product_id, brand, prediction, brands_named,
outcome}` per test item, like the evaluate stage's) and `out_dir/{name}/metrics.json`
(`brandcap.evaluation.metrics.brand_metrics`, `n_test`) for each name in `BASELINES`, on the same test items
as the evaluate stage (`brandcap.evaluation.metrics.evaluation_sample`). The baselines themselves
(majority brand, image nearest neighbours) live in `brandcap.evaluation.baselines`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from brandcap.config.params import Params
from brandcap.evaluation.baselines import BASELINES, image_baseline_predictions, majority_brand_predictions
from brandcap.evaluation.metrics import brand_metrics, brand_outcomes, evaluation_sample, named_brands
from brandcap.files.atomic import write_json, write_jsonl
from brandcap.files.stage_records import ProductImageRecord, read_records

log = logging.getLogger(__name__)


def _read_split(path: Path, what: str) -> list[dict[str, Any]]:
    return read_records(
        path,
        ProductImageRecord,
        f"{what} split",
        allow_empty=False,
        fix="rerun the clean stage (an empty split: check its report, clean_report.json)",
    )


def run_baselines(params: Params, train_jsonl: Path, test_jsonl: Path, out_dir: Path) -> None:
    """Fit every baseline on the training split, score it on the evaluated test items; see the module docstring."""
    train = _read_split(Path(train_jsonl), "train")
    all_test = _read_split(Path(test_jsonl), "test")
    test = evaluation_sample(all_test, params.eval.max_test_samples, params.seed)
    known_brands = sorted({r["brand"] for r in train + all_test})
    train_brands, test_brands = [r["brand"] for r in train], [r["brand"] for r in test]
    guesses = {
        "majority": majority_brand_predictions(train_brands, len(test)),
        **image_baseline_predictions([r["image"] for r in train], train_brands, [r["image"] for r in test]),
    }
    summary = []
    for name in BASELINES:
        answers = guesses[name]
        outcomes = brand_outcomes(answers, test_brands, known_brands)
        write_jsonl(
            Path(out_dir) / name / "predictions.jsonl",
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
        metrics = {"n_test": len(test), **brand_metrics(answers, test_brands, known_brands)}
        write_json(Path(out_dir) / name / "metrics.json", metrics)
        summary.append(f"{name} {metrics['brand_accuracy']:.3f}")
    log.info(
        "baselines: %d train, %d test items; brand accuracy %s; wrote %s",
        len(train),
        len(test),
        ", ".join(summary),
        out_dir,
    )
