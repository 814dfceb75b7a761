"""Brand metrics on hand-made cases; caption metrics checked against BLEU computed by hand."""

from __future__ import annotations

import math

import pytest

from brandcap.caption_metrics import METRIC_NAMES, caption_scores
from brandcap.metrics import (
    CORRECT,
    NONE,
    WRONG,
    brand_accuracy,
    brand_metrics,
    brand_outcome,
    macro_brand_accuracy,
    mean_token_loss,
    no_brand_rate,
    per_brand_accuracy,
    wrong_brand_rate,
)

KNOWN = ["Chloé", "Dolce & Gabbana", "Gucci", "Miu Miu"]


@pytest.mark.parametrize(
    ("prediction", "brand", "outcome"),
    [
        ("A cream CHLOE leather bag.", "Chloé", CORRECT),  # accents and case folded
        ("Black dolce and gabbana sandals", "Dolce & Gabbana", CORRECT),  # '&' = 'and'
        ("DOLCE&GABBANA sunglasses", "Dolce & Gabbana", CORRECT),
        ("A Gucci belt in black leather", "Chloé", WRONG),  # another known brand, own absent
        ("A Gucci belt like Chloé makes", "Chloé", CORRECT),  # own brand present wins
        ("A black leather belt", "Chloé", NONE),
        ("A Chloéx bag from Guccio", "Chloé", NONE),  # word boundaries: no partial words
        ("A Miu bag", "Miu Miu", NONE),  # half of a two-word brand is not the brand
    ],
)
def test_brand_outcome(prediction, brand, outcome):
    assert brand_outcome(prediction, brand, KNOWN) == outcome


def test_rates_on_hand_made_set():
    predictions = [
        "A cream chloe bag",  # Chloé correct
        "A Gucci bag",  # Chloé wrong
        "A plain bag",  # Chloé none
        "Dolce and Gabbana heels",  # D&G correct
        "GUCCI loafers",  # Gucci correct
        "Miu Miu skirt",  # Gucci wrong
    ]
    brands = ["Chloé", "Chloé", "Chloé", "Dolce & Gabbana", "Gucci", "Gucci"]
    assert brand_accuracy(predictions, brands) == pytest.approx(3 / 6)
    assert per_brand_accuracy(predictions, brands) == {
        "Chloé": {"accuracy": pytest.approx(1 / 3), "n": 3},
        "Dolce & Gabbana": {"accuracy": 1.0, "n": 1},
        "Gucci": {"accuracy": 0.5, "n": 2},
    }
    # Macro weighs each brand the same: (1/3 + 1 + 1/2) / 3, unlike the micro 1/2.
    assert macro_brand_accuracy(predictions, brands) == pytest.approx((1 / 3 + 1 + 0.5) / 3)
    assert wrong_brand_rate(predictions, brands, KNOWN) == pytest.approx(2 / 6)
    assert no_brand_rate(predictions, brands, KNOWN) == pytest.approx(1 / 6)
    summary = brand_metrics(predictions, brands, KNOWN)
    assert summary["brand_accuracy"] + summary["wrong_brand_rate"] + summary["no_brand_rate"] == pytest.approx(1.0)


def test_unknown_brand_is_not_wrong():
    # "Prada" is not a brand of the test set, so naming it counts as naming no known brand.
    assert wrong_brand_rate(["A Prada bag"], ["Gucci"], KNOWN) == 0.0
    assert no_brand_rate(["A Prada bag"], ["Gucci"], KNOWN) == 1.0


def test_empty_and_mismatched_inputs():
    assert brand_accuracy([], []) is None
    assert macro_brand_accuracy([], []) is None
    assert wrong_brand_rate([], [], KNOWN) is None
    assert per_brand_accuracy([], []) == {}
    with pytest.raises(ValueError, match="2 predictions but 1 brands"):
        brand_accuracy(["a", "b"], ["Gucci"])


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
