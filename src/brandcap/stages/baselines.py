"""baselines stage: non-neural baselines on the brand metric, the majority brand and image nearest neighbours.

    python workflow/scripts/baselines.py --params params.yaml --train data/processed/train.jsonl --test data/processed/test.jsonl --out results/baselines --log logs/baselines.log

or from Python: `run_baselines(params, Path("data/processed/train.jsonl"), Path("data/processed/test.jsonl"), Path("results/baselines"))`,
which writes `out_dir/{name}/predictions.jsonl` (`{product_id, brand, prediction, brands_named,
outcome}` per test item, like the evaluate stage's) and `out_dir/{name}/metrics.json`
(`brandcap.evaluation.metrics.brand_metrics`, `n_test`) for each name in `BASELINES`, on the same test items
as the evaluate stage (`brandcap.evaluation.metrics.evaluation_sample`). The parts:

    from brandcap.stages.baselines import image_baseline_predictions, majority_brand_predictions
    guesses = majority_brand_predictions([r["brand"] for r in train], len(test))
    by_name = image_baseline_predictions([r["image"] for r in train], [r["brand"] for r in train],
                                         [r["image"] for r in test])

Each returns one predicted brand per test item, in test order, so the same brand metric scores
them as it scores a model. The image baselines are 1-nearest-neighbour (L2) on features of the
training images: a small RGB thumbnail (pixel lookup) and a colour histogram (colour lookup).
A fine-tuned model that does not beat them has learnt nothing a lookup table would not.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from brandcap.atomic import write_json, write_jsonl
from brandcap.evaluation.metrics import brand_metrics, brand_outcomes, evaluation_sample, named_brands
from brandcap.images import open_rgb
from brandcap.params import Params
from brandcap.record_files import ProductImageRecord, read_records

log = logging.getLogger(__name__)

ImageSource = str | Path | Image.Image
THUMBNAIL_SIDE = 8  # 8x8 RGB = 192 numbers per image
HISTOGRAM_LEVELS = 4  # per channel: 4^3 = 64 colour bins


def majority_brand_predictions(train_brands: Sequence[str], n_test: int) -> list[str]:
    """The most frequent training brand for every test item (ties go to the alphabetically first)."""
    if not train_brands:
        raise ValueError("majority baseline: no training brands; the train split is empty")
    counts = Counter(train_brands)
    top = max(counts.values())
    return [min(b for b, n in counts.items() if n == top)] * n_test


def _rgb(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    return open_rgb(source, "image baseline", fix="rerun the download stage")


def thumbnail_features(images: Sequence[ImageSource], side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """(n, side*side*3) pixel values in 0..1 of each image shrunk to side x side (area average)."""
    rows = [np.asarray(_rgb(s).resize((side, side), Image.Resampling.BOX), dtype=np.float32).ravel() / 255.0 for s in images]
    return np.stack(rows) if rows else np.zeros((0, side * side * 3), np.float32)


def colour_histogram_features(images: Sequence[ImageSource], levels: int = HISTOGRAM_LEVELS) -> np.ndarray:
    """(n, levels**3) fraction of each image's pixels in each RGB colour bin."""
    rows = []
    for source in images:
        quantised = np.asarray(_rgb(source), dtype=np.int64).reshape(-1, 3) * levels // 256
        bins = (quantised[:, 0] * levels + quantised[:, 1]) * levels + quantised[:, 2]
        rows.append(np.bincount(bins, minlength=levels**3).astype(np.float32) / len(bins))
    return np.stack(rows) if rows else np.zeros((0, levels**3), np.float32)


def nearest_neighbour_predictions(train_features: np.ndarray, train_brands: Sequence[str], test_features: np.ndarray) -> list[str]:
    """The brand of each test row's nearest training row (squared L2; ties go to the first row)."""
    if len(train_features) != len(train_brands) or len(train_brands) == 0:
        raise ValueError(f"nearest neighbour: {len(train_features)} training feature rows for {len(train_brands)} brands; need the same, non-zero number")
    train = np.asarray(train_features, dtype=np.float64)
    test = np.asarray(test_features, dtype=np.float64)
    distances = (test**2).sum(1)[:, None] - 2.0 * test @ train.T + (train**2).sum(1)[None, :]
    return [train_brands[i] for i in distances.argmin(axis=1)]


IMAGE_FEATURES: dict[str, Callable[[Sequence[ImageSource]], np.ndarray]] = {
    "thumbnail_nn": thumbnail_features,
    "colour_histogram_nn": colour_histogram_features,
}


def image_baseline_predictions(train_images: Sequence[ImageSource], train_brands: Sequence[str], test_images: Sequence[ImageSource]) -> dict[str, list[str]]:
    """{baseline name: one predicted brand per test image} for every image nearest-neighbour baseline."""
    return {
        name: nearest_neighbour_predictions(features(train_images), train_brands, features(test_images))
        for name, features in IMAGE_FEATURES.items()
    }


# ----------------------------------------------------------------------------- the stage
BASELINES = ("majority", *IMAGE_FEATURES)


def _read_split(path: Path, what: str) -> list[dict[str, Any]]:
    return read_records(path, ProductImageRecord, f"{what} split", allow_empty=False,
                        fix="rerun the clean stage (an empty split: check its report, clean_report.json)")


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
        write_jsonl(Path(out_dir) / name / "predictions.jsonl", (
            {"product_id": t["product_id"], "brand": t["brand"], "prediction": a, "brands_named": named_brands(a, known_brands), "outcome": o}
            for t, a, o in zip(test, answers, outcomes)
        ))
        metrics = {"n_test": len(test), **brand_metrics(answers, test_brands, known_brands)}
        write_json(Path(out_dir) / name / "metrics.json", metrics)
        summary.append(f"{name} {metrics['brand_accuracy']:.3f}")
    log.info("baselines: %d train, %d test items; brand accuracy %s; wrote %s", len(train), len(test), ", ".join(summary), out_dir)
