"""Baselines that need no model: the majority brand and image nearest neighbours, on the brand metric.

    from brandcap.evaluation.baselines import image_baseline_predictions, majority_brand_predictions
    guesses = majority_brand_predictions([r["brand"] for r in train], len(test))
    by_name = image_baseline_predictions([r["image"] for r in train], [r["brand"] for r in train],
                                         [r["image"] for r in test])

Each returns one predicted brand per test item, in test order, so the same brand metric scores
them as it scores a model. The image baselines are 1-nearest-neighbour (L2) on features of the
training images: a small RGB thumbnail (pixel lookup) and a colour histogram (colour lookup).
A fine-tuned model that does not beat them has learnt nothing a lookup table would not. The
baselines stage (`brandcap.stages.baselines`) writes them; the tables read `BASELINES`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from brandcap.files.images import open_rgb

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
    rows = [
        np.asarray(_rgb(s).resize((side, side), Image.Resampling.BOX), dtype=np.float32).ravel() / 255.0 for s in images
    ]
    return np.stack(rows) if rows else np.zeros((0, side * side * 3), np.float32)


def colour_histogram_features(images: Sequence[ImageSource], levels: int = HISTOGRAM_LEVELS) -> np.ndarray:
    """(n, levels**3) fraction of each image's pixels in each RGB colour bin."""
    rows = []
    for source in images:
        quantised = np.asarray(_rgb(source), dtype=np.int64).reshape(-1, 3) * levels // 256
        bins = (quantised[:, 0] * levels + quantised[:, 1]) * levels + quantised[:, 2]
        rows.append(np.bincount(bins, minlength=levels**3).astype(np.float32) / len(bins))
    return np.stack(rows) if rows else np.zeros((0, levels**3), np.float32)


def nearest_neighbour_predictions(
    train_features: np.ndarray, train_brands: Sequence[str], test_features: np.ndarray
) -> list[str]:
    """The brand of each test row's nearest training row (squared L2; ties go to the first row)."""
    if len(train_features) != len(train_brands) or len(train_brands) == 0:
        raise ValueError(
            f"nearest neighbour: {len(train_features)} training feature rows for {len(train_brands)} brands; need the same, non-zero number"
        )
    train = np.asarray(train_features, dtype=np.float64)
    test = np.asarray(test_features, dtype=np.float64)
    distances = (test**2).sum(1)[:, None] - 2.0 * test @ train.T + (train**2).sum(1)[None, :]
    return [train_brands[i] for i in distances.argmin(axis=1)]


IMAGE_FEATURES: dict[str, Callable[[Sequence[ImageSource]], np.ndarray]] = {
    "thumbnail_nn": thumbnail_features,
    "colour_histogram_nn": colour_histogram_features,
}


def image_baseline_predictions(
    train_images: Sequence[ImageSource], train_brands: Sequence[str], test_images: Sequence[ImageSource]
) -> dict[str, list[str]]:
    """{baseline name: one predicted brand per test image} for every image nearest-neighbour baseline."""
    return {
        name: nearest_neighbour_predictions(features(train_images), train_brands, features(test_images))
        for name, features in IMAGE_FEATURES.items()
    }


BASELINES = ("majority", *IMAGE_FEATURES)
