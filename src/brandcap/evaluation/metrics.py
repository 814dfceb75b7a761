"""Brand metrics of generated answers, with bootstrap confidence intervals.

    from brandcap.evaluation.metrics import brand_metrics
    brand_metrics(["A red Chloé bag"], ["Chloé"], known_brands=["Chloé", "Gucci"])

Which brands an answer names (`named_brands`): the known brands that `brandcap.text.brands.find_brands`
finds in it (case, accents, punctuation and '&'/'and' folded, word boundaries, the longest of
overlapping names: 'A Saint Laurent bag' names `Saint Laurent`, not `Laurent`), except a
**negated** occurrence: one with "not", "no", "never", "neither", "nor" or a "...n't" word among
the 3 words before it in the same clause (a clause ends at `, . ; : ! ? ( )`, at the word "but"
and at the brand named before it). So "Definitely not Gucci." names no brand, "Not Gucci but
Celine." names Celine, and "No, it is Gucci." names Gucci.

Every answer lands in exactly one outcome, so the four rates sum to 1:
- correct: the gold brand is the one brand the answer names (the headline `brand_accuracy`);
- hedged: the gold brand is named together with other known brands (`hedged_rate`): listing
  every brand cannot score;
- wrong: the gold brand is not named, another known brand is;
- none: no known brand is named.
On a brand-free image any named brand is invented: `brand_hallucination_rate` is the fraction of
such answers that name a known brand (the forgetting probe's second figure).

`brand_accuracy_lenient` is the older, gameable figure (the gold brand occurs anywhere, even
inside a longer name or after "not"), kept to compare with the reference study.

Confidence intervals are 95% percentile bootstrap intervals over the test items, resampled
**within each brand** (each resample keeps every brand's number of test items): the clean stage
splits stratified by brand, so those counts are fixed by design, and every brand is present in
every resample, which macro accuracy needs. `paired_difference` resamples the same items for two
systems evaluated on the same test set (model minus baseline).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from brandcap.text.brands import find_brands, mentions

CORRECT, HEDGED, WRONG, NONE = "correct", "hedged", "wrong", "none"
OUTCOMES = (CORRECT, HEDGED, WRONG, NONE)

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed: the same outcomes always get the same interval
CONFIDENCE = 0.95

NEGATION_WINDOW = 3  # words before a brand that may negate it
_NEGATIONS = frozenset(
    {"not", "no", "never", "neither", "nor", "cannot", "isnt", "arent", "wasnt", "werent", "doesnt", "dont", "didnt"}
)
_CLAUSE_END = re.compile(r"[,.;:!?()]|\bbut\b", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


# ----------------------------------------------------------------------------- one answer
def _is_negation(word: str) -> bool:
    word = word.casefold().replace("’", "'")
    return word in _NEGATIONS or word.endswith("n't")


def _negated(before: str) -> bool:
    """True when the text right before a brand (from the previous brand on) negates it."""
    clause = _CLAUSE_END.split(before)[-1]
    return any(_is_negation(w) for w in _WORD.findall(clause)[-NEGATION_WINDOW:])


def named_brands(answer: str, known_brands: Iterable[str]) -> list[str]:
    """The known brands `answer` names (longest match, negated occurrences left out), in order."""
    named, previous_end = [], 0
    for match in find_brands(answer, known_brands):
        if not _negated(answer[previous_end : match.start]):
            named.append(match.brand)
        previous_end = match.end
    return list(dict.fromkeys(named))


def candidate_brands(test: Iterable[dict], val: Iterable[dict]) -> list[str]:
    """The known brands answers are scored against: every brand of the test and validation records."""
    return sorted({r["brand"] for r in [*test, *val]})


def brand_outcome(prediction: str, brand: str, known_brands: Iterable[str]) -> str:
    """'correct', 'hedged', 'wrong' or 'none' (see the module docstring)."""
    named = named_brands(prediction, [*known_brands, brand])
    if brand in named:
        return CORRECT if len(named) == 1 else HEDGED
    return WRONG if named else NONE


def _check_lengths(predictions: Sequence, brands: Sequence[str]) -> None:
    if len(predictions) != len(brands):
        raise ValueError(f"{len(predictions)} predictions but {len(brands)} brands; pass one brand per prediction")


def brand_outcomes(predictions: Sequence[str], brands: Sequence[str], known_brands: Iterable[str]) -> list[str]:
    """The outcome of each prediction against its gold brand."""
    _check_lengths(predictions, brands)
    known = list(dict.fromkeys(known_brands))
    return [brand_outcome(p, b, known) for p, b in zip(predictions, brands)]


# ----------------------------------------------------------------------------- rates
def outcome_rate(outcomes: Sequence[str], outcome: str) -> float | None:
    """Fraction of `outcomes` equal to `outcome`; None for no outcomes."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}; use one of {OUTCOMES}")
    return sum(o == outcome for o in outcomes) / len(outcomes) if outcomes else None


def per_brand_accuracy(outcomes: Sequence[str], brands: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """{brand: {"accuracy", "hedged_rate", "n": test items}}, brands sorted by name."""
    _check_lengths(outcomes, brands)
    by_brand: dict[str, list[str]] = defaultdict(list)
    for o, b in zip(outcomes, brands):
        by_brand[b].append(o)
    return {
        b: {"accuracy": outcome_rate(os, CORRECT), "hedged_rate": outcome_rate(os, HEDGED), "n": len(os)}
        for b, os in sorted(by_brand.items())
    }


def macro_brand_accuracy(outcomes: Sequence[str], brands: Sequence[str]) -> float | None:
    """Mean of the per-brand accuracies: every brand weighs the same, however rare."""
    per_brand = per_brand_accuracy(outcomes, brands)
    return sum(v["accuracy"] for v in per_brand.values()) / len(per_brand) if per_brand else None


def lenient_brand_accuracy(predictions: Sequence[str], brands: Sequence[str]) -> float | None:
    """Fraction of predictions in which the gold brand occurs anywhere (the gameable older figure)."""
    _check_lengths(predictions, brands)
    return sum(mentions(p, b) for p, b in zip(predictions, brands)) / len(predictions) if predictions else None


def brand_hallucination_rate(predictions: Sequence[str], known_brands: Iterable[str]) -> float | None:
    """Fraction of answers about brand-free images that name a known brand; None for no answers."""
    known = list(dict.fromkeys(known_brands))
    return sum(bool(named_brands(p, known)) for p in predictions) / len(predictions) if predictions else None


def evaluation_sample(records: list, limit: int, seed: int) -> list:
    """The records an evaluation scores: at most `limit` (0 = all), a seeded sample kept in file
    order (no brand cut off because the file is sorted by brand). The model evaluations and the
    baselines take the same one, so they are scored on the same items."""
    if not limit or len(records) <= limit:
        return records
    keep = sorted(random.Random(seed).sample(range(len(records)), limit))
    return [records[i] for i in keep]


# ----------------------------------------------------------------------------- bootstrap
def _resampled_accuracies(correct: np.ndarray, brands: Sequence[str], resamples: int, seed: int) -> np.ndarray:
    """(2, resamples, systems): micro and macro accuracy of each resample, items resampled within
    each brand. `correct` is (items, systems); all systems share the resampled items (paired)."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, b in enumerate(brands):
        groups[b].append(i)
    hits = []  # per brand: (resamples, systems) correct counts
    for _, rows in sorted(groups.items()):
        picks = rng.integers(0, len(rows), size=(resamples, len(rows)))
        hits.append(correct[np.asarray(rows)][picks].sum(axis=1))
    hits = np.stack(hits)  # (brands, resamples, systems)
    sizes = np.array([len(rows) for _, rows in sorted(groups.items())], dtype=float)[:, None, None]
    return np.stack([hits.sum(axis=0) / sizes.sum(), (hits / sizes).mean(axis=0)])


def _interval(samples: np.ndarray) -> list[float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return [float(lo), float(hi)]


def bootstrap_intervals(
    outcomes: Sequence[str], brands: Sequence[str], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> dict[str, list[float] | None]:
    """95% percentile bootstrap intervals: {"brand_accuracy_ci": [lo, hi], "macro_brand_accuracy_ci": [lo, hi]}."""
    _check_lengths(outcomes, brands)
    if not outcomes:
        return {"brand_accuracy_ci": None, "macro_brand_accuracy_ci": None}
    correct = (np.asarray(outcomes) == CORRECT)[:, None].astype(float)
    micro, macro = _resampled_accuracies(correct, brands, resamples, seed)
    return {"brand_accuracy_ci": _interval(micro[:, 0]), "macro_brand_accuracy_ci": _interval(macro[:, 0])}


def paired_difference(
    outcomes: Sequence[str],
    baseline_outcomes: Sequence[str],
    brands: Sequence[str],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, dict[str, float | list[float]] | None]:
    """Accuracy of a system minus a baseline's, on the same test items in the same order, with a
    95% paired bootstrap interval: {"brand_accuracy": {"difference", "ci"}, "macro_brand_accuracy": ...}."""
    if len(outcomes) != len(baseline_outcomes):
        raise ValueError(
            f"{len(outcomes)} outcomes but {len(baseline_outcomes)} baseline outcomes; "
            "compare two evaluations of the same test items, in the same order"
        )
    _check_lengths(outcomes, brands)
    if not outcomes:
        return {"brand_accuracy": None, "macro_brand_accuracy": None}
    correct = np.stack([np.asarray(outcomes) == CORRECT, np.asarray(baseline_outcomes) == CORRECT], axis=1).astype(
        float
    )
    micro, macro = _resampled_accuracies(correct, brands, resamples, seed)
    point = {
        "brand_accuracy": outcome_rate(outcomes, CORRECT) - outcome_rate(baseline_outcomes, CORRECT),
        "macro_brand_accuracy": macro_brand_accuracy(outcomes, brands)
        - macro_brand_accuracy(baseline_outcomes, brands),
    }
    return {
        "brand_accuracy": {"difference": point["brand_accuracy"], "ci": _interval(micro[:, 0] - micro[:, 1])},
        "macro_brand_accuracy": {
            "difference": point["macro_brand_accuracy"],
            "ci": _interval(macro[:, 0] - macro[:, 1]),
        },
    }


# ----------------------------------------------------------------------------- one evaluation
def brand_metrics(predictions: Sequence[str], brands: Sequence[str], known_brands: Iterable[str]) -> dict:
    """All brand metrics of one evaluation, as stored in metrics.json."""
    outcomes = brand_outcomes(predictions, brands, known_brands)
    return {
        "brand_accuracy": outcome_rate(outcomes, CORRECT),
        "macro_brand_accuracy": macro_brand_accuracy(outcomes, brands),
        **bootstrap_intervals(outcomes, brands),
        "hedged_rate": outcome_rate(outcomes, HEDGED),
        "wrong_brand_rate": outcome_rate(outcomes, WRONG),
        "no_brand_rate": outcome_rate(outcomes, NONE),
        "brand_accuracy_lenient": lenient_brand_accuracy(predictions, brands),
        "n_brands": len(set(brands)),
        "per_brand_accuracy": per_brand_accuracy(outcomes, brands),
    }


def mean_token_loss(loss_sums: Iterable[float], token_counts: Iterable[int]) -> float | None:
    """Token-weighted mean of per-sample summed next-token losses; None when no tokens."""
    total, tokens = 0.0, 0
    for s, n in zip(loss_sums, token_counts):
        total += s
        tokens += n
    return total / tokens if tokens else None
