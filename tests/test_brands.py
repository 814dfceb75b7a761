"""Brand matching shared by the clean stage and the evaluation metrics."""

from brandcap.brands import brand_span, brands_mentioned, canonicalize, mentions, normalize


def test_normalize_folds_case_accents_punctuation_and_ampersand():
    assert normalize("Maison  ÉCLAT!") == "maison eclat"
    assert normalize("Rossi & Figli") == normalize("ROSSI AND FIGLI") == "rossi and figli"
    assert normalize("Dolce&Gabbana") == "dolce and gabbana"


def test_mentions_respects_word_boundaries():
    assert mentions("A bag by maison eclat, in red.", "Maison Éclat")
    assert mentions("Made by Rossi and Figli.", "Rossi & Figli")
    assert not mentions("A bag by Maisonette.", "Maison")
    assert not mentions("An eclat of colour.", "Maison Éclat")
    assert mentions("The ACNE-studios logo", "Acne Studios")


def test_brand_span_points_at_the_original_text():
    text = "Shoes by ROSSI & FIGLI with laces."
    start, end = brand_span(text, "Rossi & Figli")
    assert text[start:end] == "ROSSI & FIGLI"


def test_canonicalize_rewrites_every_spelling_and_reports_absence():
    assert canonicalize("GUCCIO bag; guccio again.", "Guccio") == "Guccio bag; Guccio again."
    assert canonicalize("rossi and figli and Rossi & Figli", "Rossi & Figli") == "Rossi & Figli and Rossi & Figli"
    assert canonicalize("No brand here.", "Guccio") is None


def test_brands_mentioned_lists_all_known_brands_named():
    assert brands_mentioned("Guccio next to Maison Eclat", ["Maison Éclat", "Guccio", "Prado"]) == ["Maison Éclat", "Guccio"]
