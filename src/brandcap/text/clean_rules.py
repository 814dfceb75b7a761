"""The clean stage's rules, one named function each, thresholds from `CleanParams`.

    from brandcap.text.clean_rules import is_repetition_loop, is_garbled
    is_repetition_loop(text, params.clean)   # True -> drop (or re-ask, in the caption stage)

The caption stage imports the two detectors for its loop-aware retry, so a caption it
accepts is one the clean stage keeps as far as loops and garbling go.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

from brandcap.config.params import CleanParams
from brandcap.text.brands import canonicalize, normalize

# --------------------------------------------------------------------------- 1. loops
_WORD = re.compile(r"[^\W_]+")


def max_ngram_repeats(text: str, n: int) -> int:
    """How often the most frequent word n-gram occurs (case-folded, punctuation ignored)."""
    words = _WORD.findall(text.casefold())
    if len(words) < n:
        return 0
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return max(grams.values())


def compression_ratio(text: str) -> float:
    """zlib-compressed size / raw UTF-8 size; repetitive text compresses far below prose."""
    raw = text.encode("utf-8")
    return len(zlib.compress(raw, 9)) / len(raw) if raw else 1.0


@lru_cache(maxsize=16)
def _back_to_back(max_repeats: int) -> re.Pattern[str]:
    return re.compile(rf"(.{{1,12}}?)\1{{{max_repeats},}}", re.DOTALL)


def has_back_to_back_run(text: str, max_repeats: int) -> bool:
    """Some unit of 1..12 characters occurs more than `max_repeats` times in a row ('lalala', '!!!!')."""
    return _back_to_back(max_repeats).search(text) is not None


def is_repetition_loop(text: str, clean: CleanParams) -> bool:
    """A generation stuck in a loop: a repeated word n-gram, a back-to-back repeated
    unit, or (for long captions) text that compresses like a repeated pattern."""
    if not text:
        return False
    if max_ngram_repeats(text, clean.loop_ngram) > clean.loop_max_ngram_repeats:
        return True
    if has_back_to_back_run(text, clean.loop_max_consecutive_repeats):
        return True
    if len(text) >= clean.loop_compression_min_chars and compression_ratio(text) < clean.loop_min_compression_ratio:
        return True
    return False


# --------------------------------------------------------------------------- 2. garbled
# Text in any script is text: garbled means replacement, control and unassigned characters, mojibake,
# and tokens that are not words of their own script (a captioner that answers in another script than
# the prompt's is a separate rule, `is_other_script`, off unless clean.expected_script is set).
# Format characters that scripts need: zero-width (non-)joiners (Persian, Indic, emoji), direction marks.
_SCRIPT_FORMAT_CHARS = set("\u200c\u200d\u200e\u200f\u061c")


def is_bad_char(c: str) -> bool:
    """Replacement, control, private-use, unassigned or stray format characters, and box drawing."""
    if c in "\n\t\r" or c in _SCRIPT_FORMAT_CHARS:
        return False
    if c == "\ufffd" or 0x2500 <= ord(c) <= 0x259F:
        return True
    return unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs", "Cn")


# Scripts written without spaces between words: a whitespace token there can be a whole sentence.
_UNSPACED_SCRIPTS = {"CJK", "THAI", "LAO", "KHMER", "MYANMAR", "TIBETAN"}
# One family per writing system: Japanese mixes kanji and kana in a word, Korean Hangul and Hanja.
_SCRIPT_FAMILY = {
    "HIRAGANA": "CJK",
    "KATAKANA": "CJK",
    "HANGUL": "CJK",
    "IDEOGRAPHIC": "CJK",
    "HALFWIDTH": "CJK",
    "FULLWIDTH": "CJK",
}


@lru_cache(maxsize=1 << 14)
def script_of(c: str) -> str | None:
    """The writing system of a letter ('LATIN', 'CYRILLIC', 'ARABIC', 'CJK', ...), None for anything else."""
    if not unicodedata.category(c).startswith("L"):
        return None
    if c in "µªº":  # Latin-1's letters that Unicode files under Greek or as ordinals
        return "LATIN"
    first = unicodedata.name(c, "UNKNOWN").split()[0]
    return _SCRIPT_FAMILY.get(first, first)


def dominant_script(text: str) -> str | None:
    """The script most of the text's letters are written in (None without letters)."""
    counts = Counter(s for c in text if (s := script_of(c)))
    return counts.most_common(1)[0][0] if counts else None


def is_other_script(text: str, clean: CleanParams) -> bool:
    """The `other_script` rule: the caption is mostly written in another script than
    `clean.expected_script` (the prompt's, e.g. LATIN); off when that is empty."""
    if not clean.expected_script or not text:
        return False
    return dominant_script(text) not in (None, clean.expected_script.upper())


_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def bad_char_fraction(text: str) -> float:
    if not text:
        return 0.0
    # Only control characters can be bad in ASCII; judge the rest one by one.
    bad = len(_ASCII_CONTROL.findall(text)) + sum(map(is_bad_char, _NON_ASCII.findall(text)))
    return bad / len(text)


def _as_single_byte(c: str) -> int | None:
    """The byte a Windows-1252 (else Latin-1) decoder would have turned into `c`."""
    try:
        return c.encode("cp1252")[0]
    except UnicodeEncodeError:
        return ord(c) if ord(c) < 256 else None


_MOJIBAKE_LEAD = re.compile("[\u00c2-\u00f4]")


def count_mojibake(text: str) -> int:
    """Sequences that are UTF-8 bytes decoded as cp1252/Latin-1 ('Ã©' for 'é', 'â€™' for '’').

    Legitimate accented text never forms them: an accented letter is a lead byte only
    when the next characters are continuation bytes that, together, decode as UTF-8."""
    count, n, resume = 0, len(text), 0
    # Lead bytes 0xC2..0xF4 read as cp1252 or Latin-1 are the characters 'Â'..'ô'.
    for m in _MOJIBAKE_LEAD.finditer(text):
        i = m.start()
        if i < resume:
            continue
        lead = ord(text[i])
        need = 1 if lead < 0xE0 else 2 if lead < 0xF0 else 3
        if i + need >= n:
            continue
        tail = [_as_single_byte(c) for c in text[i + 1 : i + 1 + need]]
        if all(b is not None and 0x80 <= b <= 0xBF for b in tail):
            try:
                bytes([lead, *tail]).decode("utf-8")
            except UnicodeDecodeError:
                continue
            count += 1
            resume = i + need + 1
    return count


_LETTERS = r"[^\W\d_]+"
_WORD_LIKE = re.compile(rf"{_LETTERS}(?:['’\-]{_LETTERS})*")
_NUMBER_LIKE = re.compile(r"[\d.,/:×x\-–+%]*\d[\d.,/:×x\-–+%]*[A-Za-z]{0,3}")  # 3.5, 10x20cm, 100%, 1980s
_MODEL_LIKE = re.compile(r"[A-Za-z]{1,4}-?\d{1,5}")  # A4, No5, RS-200
_VOWELS = set("aeiouyàáâãäåæèéêëìíîïòóôõöøœùúûüýÿ")
_LOWER_TO_UPPER = re.compile(r"[a-zà-ÿ][A-ZÀ-Þ]")


def looks_like_word(core: str, clean: CleanParams) -> bool:
    """A token (punctuation already stripped) that could appear in a product caption, judged in its
    own script: one script per word ('bаg' with a Cyrillic 'а' is not a word), the length bound only
    where words are spaced, the vowel and case tests only for Latin."""
    if _NUMBER_LIKE.fullmatch(core) or _MODEL_LIKE.fullmatch(core):
        return len(core) <= clean.garbled_max_word_length
    if not _WORD_LIKE.fullmatch(core) or any(is_bad_char(c) for c in core):
        return False
    scripts = {s for c in core if (s := script_of(c))}
    if len(scripts) > 1:
        return False
    script = scripts.pop() if scripts else None
    if len(core) > clean.garbled_max_word_length and script not in _UNSPACED_SCRIPTS:
        return False
    if script != "LATIN":
        return True
    if len(_LOWER_TO_UPPER.findall(core)) > 1:  # 'McQueen' fine, 'hElLo' not
        return False
    letters = core.casefold()
    if len(core) >= 6 and not core.isupper() and not _VOWELS.intersection(letters):
        return False
    return True


def _is_punct_or_symbol(c: str) -> bool:
    return unicodedata.category(c)[0] in "PS"


@lru_cache(maxsize=1 << 16)
def _token_verdict(token: str, clean: CleanParams) -> int | None:
    """1 = not a word, 0 = a word, None = not judged (short punctuation such as '-' or '&')."""
    edge = "".join(c for c in token if _is_punct_or_symbol(c))
    core = token.strip(edge)
    if not core:
        if len(token) < 3 or all(unicodedata.category(c)[0] == "P" for c in token):
            return None
        return 1
    return 0 if looks_like_word(core, clean) else 1


_INNER_PUNCTUATION = re.compile(
    r"[\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\u0e2f\u0e46\u0e5a\u0e5b]+"
)  # CJK and Thai punctuation


def _tokens(text: str) -> list[str]:
    """Whitespace tokens; in scripts written without spaces, also cut at their own punctuation ('，', '。')."""
    out = []
    for token in text.split():
        if any(script_of(c) in _UNSPACED_SCRIPTS for c in token):
            out += [part for part in _INNER_PUNCTUATION.split(token) if part]
        else:
            out.append(token)
    return out


def nonword_fraction(text: str, clean: CleanParams) -> float:
    """Fraction of whitespace tokens that do not look like words. Punctuation and symbols
    around a word are ignored ('"bag,"', '€250', 'Brand™'); short punctuation tokens ('-',
    '&') are skipped; symbol runs ('#$%^') count as non-words."""
    verdicts = [v for token in _tokens(text) if (v := _token_verdict(token, clean)) is not None]
    return sum(verdicts) / len(verdicts) if verdicts else 0.0


def is_garbled(text: str, clean: CleanParams) -> bool:
    """Broken text: too many bad characters, any broken-encoding sequence beyond the
    tolerance, or too many tokens that do not look like words."""
    if not text:
        return False
    if bad_char_fraction(text) > clean.garbled_max_bad_char_fraction:
        return True
    if count_mojibake(text) > clean.garbled_max_mojibake:
        return True
    return nonword_fraction(text, clean) > clean.garbled_max_nonword_fraction


# --------------------------------------------------------------------------- 3. cut-off
_SENTENCE_END = re.compile(r"\.(?!\d)")  # a period, not a decimal point ('3.5 cm')


def strip_after_last_period(text: str) -> str:
    """`text` up to and including its last sentence-ending '.', or '' if it has none."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].rstrip() if ends else ""


def trim_cut_off(text: str, finish_reason: str | None, clean: CleanParams) -> str | None:
    """A caption stopped at max_tokens loses its unfinished last sentence; None when
    fewer than `min_chars_after_trim` characters remain. Finished captions pass as they are."""
    if finish_reason != "length":
        return text
    trimmed = strip_after_last_period(text)
    return trimmed if len(trimmed) >= clean.min_chars_after_trim else None


# --------------------------------------------------------------------------- 4. brand
def with_canonical_brand(text: str, brand: str, other_brands: Iterable[str] = ()) -> str | None:
    """`text` with every spelling of `brand` (case, accents, punctuation, ™/®, '&'/'and')
    rewritten to the catalog's spelling; None when the caption does not name the brand.
    A mention inside a longer name of `other_brands` ('Chloé' in 'See by Chloé') does not count."""
    return canonicalize(text, brand, other_brands)


# --------------------------------------------------------------------------- 5. length
def word_count(text: str) -> int:
    return len(text.split())


def has_plausible_length(text: str, clean: CleanParams) -> bool:
    return clean.min_words <= word_count(text) <= clean.max_words


# --------------------------------------------------------------------------- 6. duplicates
def duplicate_key(text: str) -> str:
    """Captions that differ only in case, accents, punctuation or spacing are duplicates."""
    return normalize(text)
