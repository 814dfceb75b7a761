"""Baselines: majority brand and image nearest neighbours on sets whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from brandcap.evaluation.baselines import (
    colour_histogram_features,
    image_baseline_predictions,
    majority_brand_predictions,
    nearest_neighbour_predictions,
    thumbnail_features,
)


def square(colour, corner: str, size: int = 32) -> Image.Image:
    """A light image with a coloured quarter in one corner."""
    img = Image.new("RGB", (size, size), (240, 240, 240))
    x0 = 0 if "left" in corner else size // 2
    y0 = 0 if "top" in corner else size // 2
    ImageDraw.Draw(img).rectangle([x0, y0, x0 + size // 2 - 1, y0 + size // 2 - 1], fill=colour)
    return img


def test_majority_is_the_most_frequent_brand_and_ties_are_stable():
    assert majority_brand_predictions(["B", "A", "B", "C"], 3) == ["B", "B", "B"]
    assert majority_brand_predictions(["Z", "A", "Z", "A"], 2) == ["A", "A"]
    with pytest.raises(ValueError, match="train split is empty"):
        majority_brand_predictions([], 2)


def test_nearest_neighbour_picks_the_closest_training_row():
    train = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    assert nearest_neighbour_predictions(train, ["a", "b", "c"], np.array([[9.0, 1.0], [1.0, 8.0], [0.5, 0.5]])) == [
        "b",
        "c",
        "a",
    ]
    with pytest.raises(ValueError, match="3 training feature rows for 2 brands"):
        nearest_neighbour_predictions(train, ["a", "b"], train)


def test_thumbnail_nn_reads_where_the_colour_is_and_histogram_nn_only_which_colour(tmp_path):
    red, blue = (200, 30, 40), (40, 90, 215)
    # Brand = corner; colour varies. Thumbnails see the corner, histograms cannot.
    train = [square(red, "top-left"), square(blue, "bottom-right")]
    test = [square(red, "bottom-right"), square(blue, "top-left")]
    test[0].save(tmp_path / "t0.png")  # paths and PIL images are both accepted
    out = image_baseline_predictions(train, ["TL", "BR"], [tmp_path / "t0.png", test[1]])
    thumbs = thumbnail_features(train + test, side=4)
    assert thumbs.shape == (4, 48) and thumbs.max() <= 1.0
    hist = colour_histogram_features(train + test)
    assert hist.shape == (4, 64) and np.allclose(hist.sum(1), 1.0)
    assert np.allclose(hist[0], hist[2]) and np.allclose(hist[1], hist[3])  # histograms ignore placement
    assert out["colour_histogram_nn"] == ["TL", "BR"]  # it follows the colour, not the corner
    assert set(out) == {"thumbnail_nn", "colour_histogram_nn"}


def test_thumbnail_nn_follows_placement_when_colours_agree():
    red = (200, 30, 40)
    train = [square(red, "top-left"), square(red, "bottom-right")]
    test = [square(red, "bottom-right"), square(red, "top-left"), square(red, "top-left")]
    assert image_baseline_predictions(train, ["TL", "BR"], test)["thumbnail_nn"] == ["BR", "TL", "TL"]


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"<html>not an image</html>")
    with pytest.raises(
        ValueError, match=r"image baseline: image .*broken\.png. cannot be read .*rerun the download stage"
    ):
        thumbnail_features([bad])


def test_the_stage_scores_every_baseline_on_the_evaluated_test_items(tmp_path):
    """run_baselines: fitted on train, scored with the brand metric on the items the evaluate stage scores."""
    import json

    from brandcap.config.params import validate_params
    from brandcap.evaluation.baselines import BASELINES
    from brandcap.evaluation.metrics import evaluation_sample
    from brandcap.files.atomic import read_jsonl, write_jsonl
    from brandcap.stages.baselines import run_baselines

    red, blue = (200, 30, 40), (40, 90, 215)

    def split(name, corners):
        records = []
        for i, (corner, colour) in enumerate(corners):
            path = tmp_path / f"{name}{i}.png"
            square(colour, corner).save(path)
            records.append(
                {
                    "product_id": f"{name}{i}",
                    "image": str(path),
                    "brand": "Saint Laurent" if corner == "top-left" else "Laurent",
                    "caption": "c",
                }
            )
        write_jsonl(tmp_path / f"{name}.jsonl", records)
        return records

    split("train", [("top-left", red), ("top-left", blue), ("bottom-right", red)])
    test = split(
        "test",
        [("top-left", red), ("bottom-right", blue), ("bottom-right", red), ("top-left", blue), ("top-left", red)],
    )
    params = validate_params({"eval": {"max_test_samples": 4}})
    run_baselines(params, tmp_path / "train.jsonl", tmp_path / "test.jsonl", tmp_path / "out")

    evaluated = [r["product_id"] for r in evaluation_sample(test, 4, params.seed)]
    for name in BASELINES:
        predictions = read_jsonl(tmp_path / "out" / name / "predictions.jsonl")
        metrics = json.loads((tmp_path / "out" / name / "metrics.json").read_text())
        assert [p["product_id"] for p in predictions] == evaluated
        assert metrics["n_test"] == 4
        assert metrics["brand_accuracy"] == sum(p["outcome"] == "correct" for p in predictions) / 4
    majority = read_jsonl(tmp_path / "out" / "majority" / "predictions.jsonl")
    # 'Saint Laurent' names Saint Laurent only (longest match), never also 'Laurent'
    assert {p["prediction"] for p in majority} == {"Saint Laurent"}
    assert all(p["brands_named"] == ["Saint Laurent"] for p in majority)
    assert [p["outcome"] for p in majority] == [
        "correct" if p["brand"] == "Saint Laurent" else "wrong" for p in majority
    ]
    thumbnail = read_jsonl(tmp_path / "out" / "thumbnail_nn" / "predictions.jsonl")
    assert all(p["outcome"] == "correct" for p in thumbnail)  # the corner decides the brand here
