"""Finding a brand in free text, shared by the clean stage and the evaluation metrics.

Normalisation folds case, accents, punctuation and '&'/'and', so "Dolce & Gabbana",
"DOLCE AND GABBANA" and "dolce-gabbana" are one brand; matches respect word boundaries.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_AND = re.compile(r"\s*&\s*|\band\b", re.IGNORECASE)
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalize(text: str) -> str:
    """Lower-case ASCII words separated by single spaces; '&' and 'and' become 'and'."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = _AND.sub(" and ", text.lower())
    return _NON_WORD.sub(" ", text).strip()


def brand_span(text: str, brand: str) -> tuple[int, int] | None:
    """(start, end) of the first occurrence of `brand` in `text`, compared normalised, or None."""
    target = normalize(brand).split()
    if not target:
        return None
    # Tokenise the original text, keeping each token's span, and compare normalised tokens.
    tokens: list[tuple[str, int, int]] = []
    for m in re.finditer(r"[^\W_]+|&", text):
        for part in normalize(m.group()).split():
            tokens.append((part, m.start(), m.end()))
    n = len(target)
    for i in range(len(tokens) - n + 1):
        if [t[0] for t in tokens[i : i + n]] == target:
            return tokens[i][1], tokens[i + n - 1][2]
    return None


def mentions(text: str, brand: str) -> bool:
    return brand_span(text, brand) is not None


def canonicalize(text: str, brand: str) -> str | None:
    """`text` with every spelling of `brand` rewritten to the canonical one; None if absent."""
    out, found = text, False
    while (span := brand_span(out, brand)) is not None:
        start, end = span
        if out[start:end] == brand:
            # Already canonical: look further on.
            rest = canonicalize(out[end:], brand)
            return out[:end] + (rest if rest is not None else out[end:])
        out = out[:start] + brand + out[end:]
        found = True
    return out if found else None


def brands_mentioned(text: str, brands: Iterable[str]) -> list[str]:
    return [b for b in brands if mentions(text, b)]
