"""The linear probe: it reads a brand that is linearly in the features, and not one that is not."""

from __future__ import annotations

import numpy as np
import pytest

from brandcap.evaluation.linear_probe import linear_probe_predictions


def features(brands: list[str], signal: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    names = sorted(set(brands))
    x = rng.normal(size=(len(brands), 40))
    for row, brand in zip(x, brands):
        row[names.index(brand)] += signal  # the brand sits on its own axis, `signal` standard deviations out
    return x


@pytest.mark.parametrize(("signal", "low", "high"), [(4.0, 0.9, 1.0), (0.0, 0.0, 0.5)])
def test_the_probe_reads_the_brand_only_when_the_features_hold_it(signal, low, high):
    brands = ["A.P.C.", "Off-White™", "3.1 Phillip Lim", "Saint Laurent"]
    train = [brands[i % 4] for i in range(200)]
    test = [brands[i % 4] for i in range(80)]
    guesses, train_accuracy = linear_probe_predictions(features(train, signal, 1), train, features(test, signal, 2))
    accuracy = np.mean([g == b for g, b in zip(guesses, test)])
    assert low <= accuracy <= high and set(guesses) <= set(brands)
    assert (
        guesses == linear_probe_predictions(features(train, signal, 1), train, features(test, signal, 2))[0]
    )  # seeded


def test_mismatched_features_and_brands_are_refused_with_the_counts():
    with pytest.raises(ValueError, match="3 training feature rows for 2 brands"):
        linear_probe_predictions(np.zeros((3, 4)), ["a", "b"], np.zeros((1, 4)))
