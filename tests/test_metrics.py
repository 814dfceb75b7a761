"""Brand metrics on hand-made cases; caption metrics checked against BLEU computed by hand."""

from __future__ import annotations

import math

import pytest

from brandcap.evaluation.caption_metrics import METRIC_NAMES, caption_scores
from brandcap.evaluation.metrics import (
    CORRECT,
    HEDGED,
    NONE,
    WRONG,
    bootstrap_intervals,
    brand_metrics,
    brand_outcome,
    brand_outcomes,
    lenient_brand_accuracy,
    macro_brand_accuracy,
    mean_token_loss,
    named_brands,
    outcome_rate,
    paired_difference,
    per_brand_accuracy,
)

KNOWN = ["Chloé", "Dolce & Gabbana", "Gucci", "Miu Miu", "Celine", "Laurent", "Saint Laurent", "A.P.C."]


@pytest.mark.parametrize(
    ("prediction", "brand", "outcome"),
    [
        ("A cream CHLOE leather bag.", "Chloé", CORRECT),  # accents and case folded
        ("Black dolce and gabbana sandals", "Dolce & Gabbana", CORRECT),  # '&' = 'and'
        ("DOLCE&GABBANA sunglasses", "Dolce & Gabbana", CORRECT),
        ("A navy a.p.c. coat", "A.P.C.", CORRECT),
        ("A Gucci belt in black leather", "Chloé", WRONG),  # another known brand, own absent
        ("A black leather belt", "Chloé", NONE),
        ("A Chloéx bag from Guccio", "Chloé", NONE),  # word boundaries: no partial words
        ("A Miu bag", "Miu Miu", NONE),  # half of a two-word brand is not the brand
        # The table of issue 10: answers that the old rule counted correct.
        ("A Gucci belt like Chloé makes", "Chloé", HEDGED),
        ("Gucci or maybe Celine", "Celine", HEDGED),
        ("Definitely not Gucci.", "Gucci", NONE),
        ("A Saint Laurent bag.", "Laurent", WRONG),  # one name inside another: the longest wins
        ("A Saint Laurent bag.", "Saint Laurent", CORRECT),
    ],
)
def test_brand_outcome(prediction, brand, outcome):
    assert brand_outcome(prediction, brand, KNOWN) == outcome


def test_gold_brand_counts_even_when_missing_from_known_brands():
    assert brand_outcome("A Prada bag", "Prada", KNOWN) == CORRECT
    assert brand_outcome("A Prada or Gucci bag", "Prada", KNOWN) == HEDGED


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        ("Definitely not Gucci.", []),
        ("It isn't Gucci.", []),
        ("It isn’t a Gucci bag.", []),  # typographic apostrophe
        ("This is not made by Gucci.", []),  # 'not' three words before
        ("No Gucci logo on it.", []),
        ("Never Gucci, always Celine.", ["Celine"]),
        ("Neither Gucci nor Celine.", []),
        ("Not Gucci but Celine.", ["Celine"]),  # 'but' ends the negated clause
        ("Not Gucci, Celine.", ["Celine"]),  # so does a comma
        ("No, it is Gucci.", ["Gucci"]),
        ("Not sure it is Gucci.", ["Gucci"]),  # 'not' four words before: too far
        ("Not Gucci or Celine.", ["Celine"]),  # negation reaches back to the previous brand only
        ("Gucci, not Celine.", ["Gucci"]),
        ("A Nothing bag by Gucci.", ["Gucci"]),  # 'Nothing' is not 'not'
    ],
)
def test_negated_brands_are_not_named(answer, named):
    assert named_brands(answer, KNOWN) == named


def test_listing_every_brand_scores_nothing():
    brands = ["Chloé", "Gucci", "Celine", "Laurent", "A.P.C."]
    every_brand = " ".join(KNOWN)
    summary = brand_metrics([every_brand] * len(brands), brands, KNOWN)
    assert summary["brand_accuracy"] == 0.0 and summary["macro_brand_accuracy"] == 0.0
    assert summary["hedged_rate"] == 1.0 and summary["wrong_brand_rate"] == 0.0
    # The older figure is fooled by the list: kept for comparison, never the headline.
    assert summary["brand_accuracy_lenient"] == 1.0


def test_rates_on_hand_made_set():
    predictions = [
        "A cream chloe bag",  # Chloé correct
        "A Gucci bag",  # Chloé wrong
        "A plain bag",  # Chloé none
        "Dolce and Gabbana heels",  # D&G correct
        "GUCCI loafers",  # Gucci correct
        "Miu Miu skirt",  # Gucci wrong
        "Gucci or Celine shoes",  # Gucci hedged
        "Not Gucci.",  # Gucci none
    ]
    brands = ["Chloé", "Chloé", "Chloé", "Dolce & Gabbana", "Gucci", "Gucci", "Gucci", "Gucci"]
    outcomes = brand_outcomes(predictions, brands, KNOWN)
    assert outcomes == [CORRECT, WRONG, NONE, CORRECT, CORRECT, WRONG, HEDGED, NONE]
    assert per_brand_accuracy(outcomes, brands) == {
        "Chloé": {"accuracy": pytest.approx(1 / 3), "hedged_rate": 0.0, "n": 3},
        "Dolce & Gabbana": {"accuracy": 1.0, "hedged_rate": 0.0, "n": 1},
        "Gucci": {"accuracy": 0.25, "hedged_rate": 0.25, "n": 4},
    }
    # Macro weighs each brand the same: (1/3 + 1 + 1/4) / 3, unlike the micro 3/8.
    assert macro_brand_accuracy(outcomes, brands) == pytest.approx((1 / 3 + 1 + 0.25) / 3)
    assert lenient_brand_accuracy(predictions, brands) == pytest.approx(5 / 8)  # hedged and negated count there
    summary = brand_metrics(predictions, brands, KNOWN)
    assert summary["brand_accuracy"] == pytest.approx(3 / 8)
    assert summary["hedged_rate"] == pytest.approx(1 / 8)
    assert summary["wrong_brand_rate"] == pytest.approx(2 / 8)
    assert summary["no_brand_rate"] == pytest.approx(2 / 8)
    assert sum(
        summary[k] for k in ["brand_accuracy", "hedged_rate", "wrong_brand_rate", "no_brand_rate"]
    ) == pytest.approx(1.0)
    assert summary["n_brands"] == 3
    lo, hi = summary["brand_accuracy_ci"]
    assert 0 <= lo <= 3 / 8 <= hi <= 1
    lo, hi = summary["macro_brand_accuracy_ci"]
    assert 0 <= lo <= summary["macro_brand_accuracy"] <= hi <= 1


def test_unknown_brand_is_not_wrong():
    # "Prada" is not a brand of the test set, so naming it counts as naming no known brand.
    assert outcome_rate(brand_outcomes(["A Prada bag"], ["Gucci"], KNOWN), WRONG) == 0.0
    assert outcome_rate(brand_outcomes(["A Prada bag"], ["Gucci"], KNOWN), NONE) == 1.0


def test_empty_and_mismatched_inputs():
    assert outcome_rate([], CORRECT) is None
    assert macro_brand_accuracy([], []) is None
    assert lenient_brand_accuracy([], []) is None
    assert per_brand_accuracy([], []) == {}
    assert bootstrap_intervals([], []) == {"brand_accuracy_ci": None, "macro_brand_accuracy_ci": None}
    with pytest.raises(ValueError, match="2 predictions but 1 brands"):
        brand_outcomes(["a", "b"], ["Gucci"], KNOWN)
    with pytest.raises(ValueError, match="unknown outcome 'right'"):
        outcome_rate([CORRECT], "right")


# ----------------------------------------------------------------------------- bootstrap
def test_bootstrap_interval_matches_the_normal_approximation_and_is_seeded():
    # 100 items, half correct: the 95% interval is about 0.5 +- 1.96 * sqrt(0.25 / 100) = [0.40, 0.60].
    outcomes, brands = [CORRECT, WRONG] * 50, ["Gucci"] * 100
    ci = bootstrap_intervals(outcomes, brands)
    lo, hi = ci["brand_accuracy_ci"]
    assert lo == pytest.approx(0.40, abs=0.02) and hi == pytest.approx(0.60, abs=0.02)
    assert ci["macro_brand_accuracy_ci"] == ci["brand_accuracy_ci"]  # one brand: macro = micro
    assert bootstrap_intervals(outcomes, brands) == ci  # seeded: the same outcomes, the same interval
    mixed, mixed_brands = [CORRECT, WRONG, WRONG] * 7, ["Gucci", "Chloé", "Celine", "Laurent"] * 5 + ["Gucci"]
    assert bootstrap_intervals(mixed, mixed_brands, seed=1) != bootstrap_intervals(mixed, mixed_brands)


def test_bootstrap_resamples_within_each_brand():
    # A brand with one (correct) item and one with 50 wrong ones: every resample keeps one item of
    # each brand's size, so macro accuracy is always (1 + 0) / 2 and micro always 1 / 51.
    outcomes, brands = [CORRECT] + [WRONG] * 50, ["Chloé"] + ["Gucci"] * 50
    ci = bootstrap_intervals(outcomes, brands)
    assert ci["macro_brand_accuracy_ci"] == pytest.approx([0.5, 0.5])
    assert ci["brand_accuracy_ci"] == pytest.approx([1 / 51, 1 / 51])


def test_paired_difference_resamples_the_same_items():
    # The model gets right every item the baseline gets right, plus 10 more of 200: +0.05. Unpaired,
    # two accuracies near 0.5 on 200 items each have a standard error of 0.035 and the difference's
    # interval would include 0; paired, only the 10 changed items vary.
    brands = ["Gucci", "Chloé"] * 100
    baseline = [CORRECT] * 100 + [WRONG] * 100
    model = [CORRECT] * 110 + [WRONG] * 90
    diff = paired_difference(model, baseline, brands)
    assert diff["brand_accuracy"]["difference"] == pytest.approx(0.05)
    lo, hi = diff["brand_accuracy"]["ci"]
    assert 0 < lo < 0.05 < hi < 0.1
    assert diff["macro_brand_accuracy"]["difference"] == pytest.approx(0.05)
    same = paired_difference(model, model, brands)
    assert same["brand_accuracy"] == {"difference": 0.0, "ci": [0.0, 0.0]}
    with pytest.raises(
        ValueError, match="200 outcomes but 199 baseline outcomes; compare two evaluations of the same test items"
    ):
        paired_difference(model, baseline[:-1], brands)


def test_mean_token_loss_weights_by_tokens():
    assert mean_token_loss([2.0, 6.0], [1, 3]) == pytest.approx(8.0 / 4)
    assert mean_token_loss([], []) is None


# ----------------------------------------------------------------------------- caption metrics
# The Java start-up (PTB tokenizer, METEOR) costs seconds: one scoring call shared by the checks.
@pytest.fixture(scope="module")
def two_sentence_scores():
    references = ["the cat is on the mat", "the cat is on the mat"]
    predictions = ["the cat sat on the mat", "the cat"]
    return caption_scores(references, predictions)


def test_bleu_matches_hand_computation(two_sentence_scores):
    # Corpus BLEU pools n-gram counts over both sentences (references length 6 each):
    #  hyp 1 "the cat sat on the mat": 1-grams 5/6, 2-grams 3/5, 3-grams 1/4, 4-grams 0/3
    #  hyp 2 "the cat":                 1-grams 2/2, 2-grams 1/1
    # pooled: p1 = 7/8, p2 = 4/6, p3 = 1/4, p4 = 0/3; brevity penalty exp(1 - 12/8).
    bp = math.exp(1 - 12 / 8)
    p1, p2, p3 = 7 / 8, 4 / 6, 1 / 4
    scores = two_sentence_scores
    assert scores["bleu1"] == pytest.approx(bp * p1, rel=1e-6)
    assert scores["bleu2"] == pytest.approx(bp * (p1 * p2) ** 0.5, rel=1e-6)
    assert scores["bleu3"] == pytest.approx(bp * (p1 * p2 * p3) ** (1 / 3), rel=1e-6)
    assert scores["bleu4"] == pytest.approx(0.0, abs=1e-3)  # no 4-gram matches


def test_all_caption_metrics_present_and_ordered(two_sentence_scores):
    assert tuple(two_sentence_scores) == METRIC_NAMES
    assert 0 < two_sentence_scores["meteor"] < 1
    assert 0 < two_sentence_scores["rouge_l"] < 1


def test_identical_captions_score_perfectly_with_ptb_tokenisation():
    # The PTB tokenizer lower-cases and strips punctuation, so these are identical to it;
    # the accent and the line break must not shift items.
    refs = ["A red Chloé bag, with a strap.", "Black\nleather shoes!", "A blue silk scarf"]
    preds = ["a red chloé bag with a strap", "black leather shoes", "a blue silk scarf"]
    scores = caption_scores(refs, preds)
    assert scores["bleu1"] == pytest.approx(1.0)
    assert scores["bleu4"] == pytest.approx(1.0)
    assert scores["rouge_l"] == pytest.approx(1.0)
    assert scores["meteor"] > 0.9


def test_empty_prediction_and_empty_set():
    scores = caption_scores(["a red bag", "a blue bag"], ["a red bag", ""])
    assert 0 < scores["bleu1"] < 1
    assert caption_scores([], []) == {name: None for name in METRIC_NAMES}
    with pytest.raises(ValueError, match="1 predictions but 2 references"):
        caption_scores(["a", "b"], ["a"])


def test_brand_hallucination_rate_counts_answers_naming_a_known_brand():
    from brandcap.evaluation.metrics import brand_hallucination_rate

    answers = ["A red bag.", "A Gucci bag.", "Not Gucci, just a bag.", "A bag by Saint Laurent or Celine."]
    assert brand_hallucination_rate(answers, ["Gucci", "Saint Laurent", "Celine"]) == 0.5
    assert brand_hallucination_rate([], ["Gucci"]) is None


def test_evaluation_sample_is_seeded_and_in_file_order():
    from brandcap.evaluation.metrics import evaluation_sample

    records = list(range(20))
    sample = evaluation_sample(records, 5, seed=4)
    assert sample == sorted(sample) and len(sample) == 5 and sample == evaluation_sample(records, 5, seed=4)
    assert evaluation_sample(records, 0, seed=4) == records
