"""Finding brand names in free text: the one brand matcher of the clean stage and the metrics.

    from brandcap.text.brands import brands_named, canonicalize
    brands_named("A Saint Laurent bag", ["Laurent", "Saint Laurent"])  # ['Saint Laurent']
    canonicalize("an OFF WHITE hoodie", "Off-White™")                  # 'an Off-White™ hoodie'

How names are compared, so that real catalogue names (`A.P.C.`, `Off-White™`, `(di)vision`,
`3.1 Phillip Lim`, `Dolce & Gabbana`, `Chloé`) are found however a caption spells them:
- case, accents ('é' = 'e', 'ø' = 'o', 'ß' = 'ss'), ™/®/© and '&'/'and' are folded;
- punctuation and spaces between a name's parts do not matter: `A.P.C.` = `APC` = `a p c`,
  `Off-White™` = `OFF WHITE` = `offwhite`; but a name is never put together from words the
  name itself does not separate ('a men' does not name `Amen`);
- a match starts and ends at word boundaries ('Maisonette' does not name `Maison`), also when
  the name starts or ends with punctuation;
- where names overlap, the longest wins ('See by Chloé' names `See by Chloé`, not `Chloé`).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

# Words of a text: letters and digits (with any combining accents), and '&' on its own.
_WORD = re.compile(r"(?:[^\W_]|[\u0300-\u036f])+|&")
# Latin letters that Unicode does not decompose into a base letter and an accent.
_UNDECOMPOSED = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "đ": "d", "ł": "l", "ı": "i", "ð": "d", "þ": "th"})


def fold_word(word: str) -> str:
    """One word as compared: case and accents folded, '&' read as 'and'."""
    if word == "&":
        return "and"
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if c.isalnum()).translate(_UNDECOMPOSED)


@dataclass(frozen=True)
class _Folded:
    """A text's folded words run together (`joined`), with the way back to the original text."""

    joined: str
    starts: dict[int, int]  # offset in `joined` where a word starts -> its start in the text
    ends: dict[int, int]  # offset in `joined` where a word ends -> its end in the text
    spaced: tuple[int, ...]  # sorted offsets of words that whitespace separates from the word before


@lru_cache(maxsize=8192)  # metrics ask about the same prediction once per known brand
def _fold(text: str) -> _Folded:
    joined, starts, ends, spaced = "", {}, {}, []
    previous_end = 0
    for m in _WORD.finditer(text):
        word = fold_word(m.group())
        if not word:
            continue
        if joined and any(c.isspace() for c in text[previous_end : m.start()]):
            spaced.append(len(joined))
        starts[len(joined)] = m.start()
        joined += word
        ends[len(joined)] = previous_end = m.end()
    return _Folded(joined, starts, ends, tuple(spaced))


def normalize(text: str) -> str:
    """Folded words separated by single spaces: 'Dolce&Gabbana' -> 'dolce and gabbana'."""
    words = (fold_word(m.group()) for m in _WORD.finditer(text))
    return " ".join(w for w in words if w)


def _folded_spans(text: _Folded, name: _Folded) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) offsets in `text.joined` where `name` occurs, left to right."""
    key, inner = name.joined, set(name.starts) - {0}
    spans: list[tuple[int, int]] = []
    i = text.joined.find(key) if key else -1
    while i != -1:
        j = i + len(key)
        lo, hi = bisect.bisect_right(text.spaced, i), bisect.bisect_left(text.spaced, j)
        if i in text.starts and j in text.ends and all(k - i in inner for k in text.spaced[lo:hi]):
            spans.append((i, j))
            i = text.joined.find(key, j)
        else:
            i = text.joined.find(key, i + 1)
    return spans


def _original_span(text: str, folded: _Folded, span: tuple[int, int], name: str) -> tuple[int, int]:
    """The span in `text`, widened over the name's own leading/trailing punctuation where the text
    has it too ('A.P.C.' covers the last '.', 'Off-White™' the '™')."""
    start, end = folded.starts[span[0]], folded.ends[span[1]]
    name_folded = _fold(name)
    lead = name[: name_folded.starts[0]]
    trail = name[name_folded.ends[len(name_folded.joined)] :]
    if lead and text[max(0, start - len(lead)) : start].casefold() == lead.casefold():
        start -= len(lead)
    if trail and text[end : end + len(trail)].casefold() == trail.casefold():
        end += len(trail)
    return start, end


@dataclass(frozen=True)
class BrandMatch:
    brand: str
    start: int  # the match is text[start:end]
    end: int


def find_brands(text: str, brands: Iterable[str]) -> list[BrandMatch]:
    """Every occurrence of every brand in `text`, left to right. Where occurrences overlap, the
    longest wins ('Saint Laurent' over 'Laurent'); on equal length, the brand listed first."""
    folded = _fold(text)
    candidates = [
        (i, j, rank, brand)
        for rank, brand in enumerate(dict.fromkeys(brands))
        for i, j in _folded_spans(folded, _fold(brand))
    ]
    chosen: list[tuple[int, int, int, str]] = []
    for cand in sorted(candidates, key=lambda c: (c[0] - c[1], c[0], c[2])):
        if all(cand[1] <= c[0] or cand[0] >= c[1] for c in chosen):
            chosen.append(cand)
    return [BrandMatch(b, *_original_span(text, folded, (i, j), b)) for i, j, _, b in sorted(chosen)]


def brands_named(text: str, brands: Iterable[str]) -> list[str]:
    """The brands `text` names, in order of first appearance, longest match winning."""
    return list(dict.fromkeys(m.brand for m in find_brands(text, brands)))


def brand_span(text: str, brand: str) -> tuple[int, int] | None:
    """(start, end) of the first occurrence of `brand` in `text`, or None."""
    matches = find_brands(text, [brand])
    return (matches[0].start, matches[0].end) if matches else None


def mentions(text: str, brand: str) -> bool:
    """True when `brand` occurs in `text`, even inside a longer brand name."""
    return bool(_folded_spans(_fold(text), _fold(brand)))


def brands_mentioned(text: str, brands: Iterable[str]) -> list[str]:
    """Every brand of `brands` (in that order) that occurs in `text`, overlaps allowed."""
    return [b for b in brands if mentions(text, b)]


def canonicalize(text: str, brand: str, known_brands: Iterable[str] = ()) -> str | None:
    """`text` with every occurrence of `brand` written the catalog's way; None if it names no
    `brand`. An occurrence inside a longer name from `known_brands` ('Chloé' in 'See by Chloé')
    is not one."""
    matches = [m for m in find_brands(text, [brand, *known_brands]) if m.brand == brand]
    if not matches:
        return None
    out, previous = [], 0
    for m in matches:
        out += [text[previous : m.start], brand]
        previous = m.end
    return "".join(out + [text[previous:]])
