"""Brand metrics of generated captions: pure functions over (prediction, brand) pairs.

    from brandcap.metrics import brand_metrics
    brand_metrics(["A red Chloé bag"], ["Chloé"], known_brands=["Chloé", "Gucci"])

A prediction names a brand when `brandcap.brands.mentions` finds it (case, accents,
punctuation and '&'/'and' folded, word boundaries): the same normalisation the clean stage
uses, so a caption that passed cleaning would also count as correct here.

Every prediction lands in exactly one outcome, so the three rates sum to 1:
- correct: the right brand is named (other brands may be named too);
- wrong: the right brand is absent and another known brand is named;
- none: no known brand is named.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from brandcap.brands import brands_mentioned, mentions

CORRECT, WRONG, NONE = "correct", "wrong", "none"


def brand_outcome(prediction: str, brand: str, known_brands: Iterable[str]) -> str:
    """'correct', 'wrong' (another known brand named, the right one absent) or 'none'."""
    if mentions(prediction, brand):
        return CORRECT
    others = [b for b in known_brands if b != brand]
    return WRONG if brands_mentioned(prediction, others) else NONE


def _check_lengths(predictions: Sequence[str], brands: Sequence[str]) -> None:
    if len(predictions) != len(brands):
        raise ValueError(f"{len(predictions)} predictions but {len(brands)} brands; pass one brand per prediction")


def brand_accuracy(predictions: Sequence[str], brands: Sequence[str]) -> float | None:
    """Fraction of predictions that name their own brand; None for no predictions."""
    _check_lengths(predictions, brands)
    if not predictions:
        return None
    return sum(mentions(p, b) for p, b in zip(predictions, brands)) / len(predictions)


def per_brand_accuracy(predictions: Sequence[str], brands: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """{brand: {"accuracy": fraction correct, "n": test samples}}, brands sorted by name."""
    _check_lengths(predictions, brands)
    hits: dict[str, list[bool]] = defaultdict(list)
    for p, b in zip(predictions, brands):
        hits[b].append(mentions(p, b))
    return {b: {"accuracy": sum(h) / len(h), "n": len(h)} for b, h in sorted(hits.items())}


def macro_brand_accuracy(predictions: Sequence[str], brands: Sequence[str]) -> float | None:
    """Mean of the per-brand accuracies: every brand weighs the same, however rare."""
    per_brand = per_brand_accuracy(predictions, brands)
    if not per_brand:
        return None
    return sum(v["accuracy"] for v in per_brand.values()) / len(per_brand)


def _outcome_rate(predictions: Sequence[str], brands: Sequence[str], known_brands: Iterable[str], outcome: str) -> float | None:
    _check_lengths(predictions, brands)
    if not predictions:
        return None
    known = list(dict.fromkeys(known_brands))
    return sum(brand_outcome(p, b, known) == outcome for p, b in zip(predictions, brands)) / len(predictions)


def wrong_brand_rate(predictions: Sequence[str], brands: Sequence[str], known_brands: Iterable[str]) -> float | None:
    """Fraction of predictions that name another known brand and not their own."""
    return _outcome_rate(predictions, brands, known_brands, WRONG)


def no_brand_rate(predictions: Sequence[str], brands: Sequence[str], known_brands: Iterable[str]) -> float | None:
    """Fraction of predictions that name no known brand at all."""
    return _outcome_rate(predictions, brands, known_brands, NONE)


def brand_metrics(predictions: Sequence[str], brands: Sequence[str], known_brands: Iterable[str]) -> dict:
    """All brand metrics of one evaluation, as stored in metrics.json."""
    known = list(dict.fromkeys(known_brands))
    return {
        "brand_accuracy": brand_accuracy(predictions, brands),
        "macro_brand_accuracy": macro_brand_accuracy(predictions, brands),
        "wrong_brand_rate": wrong_brand_rate(predictions, brands, known),
        "no_brand_rate": no_brand_rate(predictions, brands, known),
        "per_brand_accuracy": per_brand_accuracy(predictions, brands),
    }


def mean_token_loss(loss_sums: Iterable[float], token_counts: Iterable[int]) -> float | None:
    """Token-weighted mean of per-sample summed next-token losses; None when no tokens."""
    total, tokens = 0.0, 0
    for s, n in zip(loss_sums, token_counts):
        total += s
        tokens += n
    return total / tokens if tokens else None
