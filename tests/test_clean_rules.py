"""Each clean rule on captions it must remove and look-alikes it must keep.

.venv/bin/python -m pytest tests/test_clean_rules.py -q
"""

from __future__ import annotations

import pytest

from brandcap.config.params import CleanParams
from brandcap.text.clean_rules import (
    compression_ratio,
    count_mojibake,
    duplicate_key,
    has_plausible_length,
    is_garbled,
    is_repetition_loop,
    strip_after_last_period,
    trim_cut_off,
    with_canonical_brand,
)

CLEAN = CleanParams()

GOOD = (
    "This Maison Éclat shoulder bag is made of smooth black calfskin with a gold-tone "
    "chain strap. The front flap closes with a magnetic snap and carries the Maison Éclat "
    "emblem, embossed in the centre. Inside, a single compartment is lined in red suede, "
    "with one slip pocket for a phone and cards. It measures 22 x 14 x 7 cm."
)

LONG_VARIED = (
    "The Rossi & Figli trench coat is cut from a water-resistant cotton gabardine in a warm "
    "camel shade. It has notched lapels, a double-breasted front with horn buttons, storm "
    "flaps at the shoulders and a belted waist with a tortoiseshell buckle. The sleeves end "
    "in adjustable straps, and two deep welt pockets sit at the hips. A check lining in "
    "beige, black and red runs through the body, and a back vent keeps the stride free. "
    "Topstitching traces every seam with precision, giving the piece a crisp structure that "
    "suits both city commutes and countryside weekends. Under the collar, a hidden throat "
    "latch fastens against wind and rain. The model wears size 38 and is 178 cm tall; the "
    "length from shoulder to hem is about 105 cm. Dry clean only; made in Italy by Rossi & "
    "Figli, whose tailoring workshop has produced outerwear since 1952."
)


# --------------------------------------------------------------------------- loops
@pytest.mark.parametrize(
    "text",
    [
        "The bag is black. The bag is black. The bag is black. The bag is black. The bag is black.",
        "A black Maison Éclat bag with a strap, " + "and a strap, " * 20,
        "The Maison Éclat dress is red " + "very " * 30 + "red.",
        "The Maison Éclat sneaker is white lalalalalalalalalalalalalalala",
        "Maison Éclat boots!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        # a loop that wanders: no single 4-gram repeats often, but it compresses like one
        " ".join(f"The Maison Éclat scarf in silk number {i} with fringes and a printed border." for i in range(1, 8)),
    ],
)
def test_repetition_loops_are_found(text):
    assert is_repetition_loop(text, CLEAN)


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        LONG_VARIED,
        # a legitimate list of colours is not a loop
        "The Maison Éclat sweater comes in red, blue, green, black, white, navy, beige, grey, "
        "pink, brown, yellow, orange, purple, olive, teal, burgundy, cream and charcoal.",
        "Striped Maison Éclat shirt: red and white, blue and white, green and white, "
        "black and white, pink and white stripes alternate down the front.",
        # the brand named three times is not a loop
        "Maison Éclat sandals. Maison Éclat straps in leather. Maison Éclat gold buckle. "
        "Maison Éclat logo on the insole.",
        "A bag... with an ellipsis... and 1000000 sequins.",
        "",
    ],
)
def test_look_alikes_are_not_loops(text):
    assert not is_repetition_loop(text, CLEAN)


def test_loop_thresholds_come_from_params():
    three_times = "The bag is black. The bag is black. The bag is black. Nothing else here."
    assert not is_repetition_loop(three_times, CLEAN)
    assert is_repetition_loop(three_times, CleanParams(loop_max_ngram_repeats=2))
    assert compression_ratio(LONG_VARIED) > 0.45
    assert is_repetition_loop(LONG_VARIED, CleanParams(loop_min_compression_ratio=0.9))
    assert not is_repetition_loop(
        LONG_VARIED, CleanParams(loop_min_compression_ratio=0.9, loop_compression_min_chars=5000)
    )
    excited = "The Maison Éclat bag is here, finally!!!!! It is black with a gold chain."
    assert not is_repetition_loop(excited, CLEAN)
    assert is_repetition_loop(excited, CleanParams(loop_max_consecutive_repeats=4))


# --------------------------------------------------------------------------- garbled
@pytest.mark.parametrize(
    "text",
    [
        "The Maison \ufffd\ufffdclat bag is bl\ufffd\ufffdck with a g\ufffdld strap and a fl\ufffdp.",
        "The Maison Ã‰clat bag is made of smooth calfskin with a gold-tone chain strap.",
        "The Rossi & Figli coatâ€™s lapels are notched and its buttons are made of horn.",
        "The bag\x00\x01 is\x02 black\x03 with\x04 a\x05 strap\x06 and\x07 a\x08 flap.",
        "Maison Éclat xkq#7 zzv@9 qrtpl!8 mm$%2 wq^&3 tt*(4 bag vv)_5 pp+=6 kk{}7 strap.",
        "Maison Éclat 这是一个黑色的皮革\ufffd\ufffd手提包，带有金色\ufffd链条肩带和磁性\ufffd按扣。",  # replacement characters in Chinese
        "Maison Éclat Сумка из гладкой чeрнoй тeлячьeй кoжи с цeпoчкoй зoлoтoгo цвeтa.",  # Latin look-alikes inside Cyrillic words
        "صنع بواسطة دار الأزياء \x00\x01\x02\x03\x04\x05 هذه الساعة القطنية\x06\x07",  # control characters in Arabic
        "Maison Éclat ╬╬╬ bag ▓▓▓ with ░░ a ▒▒ strap.",
        "The Maison Éclat hElLoWoRlD bAgGiNg sTrApPeD cLaSpInG bag.",
    ],
)
def test_garbled_captions_are_found(text):
    assert is_garbled(text, CLEAN)


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        LONG_VARIED,
        # French accented words are not garbled
        "Ce sac Maison Éclat en cuir noir, à la fois élégant et pratique, est doté d'une "
        "chaîne dorée et d'une fermeture à pression ; idéal pour l'été, c'est-à-dire "
        "jusqu'à la rentrée. Pièce façonnée à la main, cœur de la collection « Été ».",
        "Der Rossi & Figli Mantel aus Baumwolle: größer, für Männer, mit Gürtel und Knöpfen.",
        "The McQueen-style DKNY tee costs €250 (about $270), is 100% cotton, size XL, 70×50 cm, "
        "model RS-200, No5 print, Brand™ tag, 3.5 cm heel, 1980s look — timeless.",
        "The µ-thin 2ª edición strap, 3º model, in São Paulo's Ãgua collection.",
        "",
        # text in any script is text
        "Made by دار الأزياء الملكية, this Logo cotton watch has a round dial and a leather strap.",
        "صنعت دار الأزياء الملكية هذه الساعة القطنية ذات القرص الدائري والحزام الجلدي البني.",
        "Maison Éclat 这是一个黑色的皮革手提包，带有金色链条肩带和磁性按扣。",
        "Maison Éclat のバッグは、ゴールドのチェーンが付いた黒いレザーのトートバッグです。",
        "Maison Éclat 가방은 금색 체인이 달린 검은색 가죽 토트백입니다.",
        "Maison Éclat Сумка из гладкой черной телячьей кожи с цепочкой золотого цвета.",
        "Η τσάντα Maison Éclat είναι από μαύρο δέρμα με χρυσή αλυσίδα.",
        "تم تصميم این کیف\u200cها توسط Maison Éclat با بند چرمی.",  # Persian with a zero-width non-joiner
    ],
)
def test_look_alikes_are_not_garbled(text):
    assert not is_garbled(text, CLEAN)


def test_a_caption_in_another_script_than_the_expected_one_is_its_own_rule_off_by_default():
    from brandcap.text.clean_rules import dominant_script, is_other_script

    chinese = "Maison Éclat 这是一个黑色的皮革手提包，带有金色链条肩带和磁性按扣。"
    assert dominant_script(chinese) == "CJK" and dominant_script(GOOD) == "LATIN"
    assert dominant_script("Maison Éclat のバッグは、ゴールドのチェーンが付いた黒いレザーのトートバッグです。") == "CJK"
    assert not is_other_script(chinese, CLEAN)  # off by default
    latin_only = CleanParams(expected_script="LATIN")
    assert is_other_script(chinese, latin_only) and not is_other_script(GOOD, latin_only)
    assert not is_other_script(chinese, CleanParams(expected_script="cjk"))


def test_mojibake_counts_only_broken_sequences():
    assert count_mojibake("cafÃ© â€™ Ã¨") == 3
    assert count_mojibake("café « Été » Éclat, SÃO PAULO, Ä°C") == 1  # 'Ä°' is 'İ' mis-decoded
    assert count_mojibake("café « Été » Éclat, SÃO PAULO") == 0


def test_garbled_thresholds_come_from_params():
    one_bad = GOOD.replace("red suede", "red su\ufffdde")
    assert not is_garbled(one_bad, CLEAN)
    assert is_garbled(one_bad, CleanParams(garbled_max_bad_char_fraction=0.0))
    one_mojibake = GOOD.replace("Inside", "InsidÃ©")
    assert is_garbled(one_mojibake, CLEAN)
    assert not is_garbled(one_mojibake, CleanParams(garbled_max_mojibake=1))
    assert is_garbled(GOOD, CleanParams(garbled_max_word_length=3, garbled_max_nonword_fraction=0.1))


# --------------------------------------------------------------------------- cut-off
def test_cut_off_caption_is_trimmed_at_the_last_period():
    cut = "The Maison Éclat bag is black calfskin. It has a 3.5 cm handle drop. The strap is adjus"
    assert strip_after_last_period(cut) == "The Maison Éclat bag is black calfskin. It has a 3.5 cm handle drop."
    assert trim_cut_off(cut, "length", CLEAN) == "The Maison Éclat bag is black calfskin. It has a 3.5 cm handle drop."


def test_finished_caption_is_not_trimmed():
    finished = "The Maison Éclat bag is black calfskin. Made in Italy, about 3.5"
    assert trim_cut_off(finished, "stop", CLEAN) == finished


def test_decimal_point_is_not_a_sentence_end():
    assert strip_after_last_period("The Maison Éclat heel is 3.5 cm high and the sole is 1.") == (
        "The Maison Éclat heel is 3.5 cm high and the sole is 1."
    )
    assert strip_after_last_period("A heel of 3.5 cm and a sole of 1.2 cm and") == ""


def test_cut_off_caption_with_too_little_left_is_dropped():
    assert trim_cut_off("Maison Éclat bag. It is made of black calfskin with a gold", "length", CLEAN) is None
    assert trim_cut_off("No period at all in this long cut-off caption about a bag", "length", CLEAN) is None
    short_ok = CleanParams(min_chars_after_trim=10)
    assert (
        trim_cut_off("Maison Éclat bag. It is made of black calfskin with a gold", "length", short_ok)
        == "Maison Éclat bag."
    )


# --------------------------------------------------------------------------- brand
@pytest.mark.parametrize(
    ("caption", "brand", "expected"),
    [
        ("A black bag by MAISON ECLAT with a chain.", "Maison Éclat", "A black bag by Maison Éclat with a chain."),
        (
            "A black bag by maison éclat; maison-eclat on the tag.",
            "Maison Éclat",
            "A black bag by Maison Éclat; Maison Éclat on the tag.",
        ),
        (
            "A camel coat from rossi and figli, lined in check.",
            "Rossi & Figli",
            "A camel coat from Rossi & Figli, lined in check.",
        ),
        ("A camel coat from ROSSI&FIGLI.", "Rossi & Figli", "A camel coat from Rossi & Figli."),
        ("A Rossi & Figli coat.", "Rossi & Figli", "A Rossi & Figli coat."),
    ],
)
def test_brand_is_found_and_canonicalised(caption, brand, expected):
    assert with_canonical_brand(caption, brand) == expected


@pytest.mark.parametrize(
    ("caption", "brand"),
    [
        ("A black leather bag with a gold chain.", "Maison Éclat"),
        ("A black bag from the maison of eclat designers.", "Maison Éclat"),  # words apart
        ("A coat from Rossi, not Figli.", "Rossi & Figli"),
        ("A dress by Celinea.", "Celine"),  # no match inside a longer word
    ],
)
def test_caption_without_the_brand_is_dropped(caption, brand):
    assert with_canonical_brand(caption, brand) is None


# --------------------------------------------------------------------------- length, duplicates
def test_length_bounds():
    clean = CleanParams(min_words=3, max_words=6)
    assert not has_plausible_length("Maison Éclat.", clean)
    assert has_plausible_length("Maison Éclat black bag.", clean)
    assert has_plausible_length("one two three four five six", clean)
    assert not has_plausible_length("one two three four five six seven", clean)


def test_duplicates_ignore_case_spacing_and_punctuation():
    assert duplicate_key("A black  Maison Éclat bag.") == duplicate_key("a black maison eclat bag")
    assert duplicate_key("A black Maison Éclat bag.") != duplicate_key("A red Maison Éclat bag.")
