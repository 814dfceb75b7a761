"""Caption metrics with pycocoevalcap: PTB tokenizer, BLEU-1..4, METEOR, ROUGE_L, CIDEr.

    from brandcap.evaluation.caption_metrics import caption_scores
    caption_scores(references=["a red bag"], predictions=["a red leather bag"])
    # {"bleu1": ..., "bleu2": ..., "bleu3": ..., "bleu4": ..., "meteor": ..., "rouge_l": ..., "cider": ...}

SPICE is left out (it needs Stanford models downloaded at run time). The PTB tokenizer and
METEOR are Java programs shipped inside pycocoevalcap, so a Java runtime must be on PATH.
METEOR takes several seconds to start (it loads its paraphrase tables), so one METEOR process
is started lazily and shared by every call in this process.

These scores measure closeness to the training-caption distribution, not correctness: they
are always reported next to brand accuracy, never instead of it.
"""

from __future__ import annotations

import locale
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

METRIC_NAMES = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")

_meteor: Meteor | None = None
_meteor_lock = threading.Lock()


def _require_java() -> None:
    if shutil.which("java") is None:
        raise RuntimeError(
            "java not found on PATH: pycocoevalcap's PTB tokenizer and METEOR are Java programs; "
            "install a Java runtime (e.g. `apt-get install default-jre-headless`)"
        )


@contextmanager
def _utf8_java() -> Iterator[None]:
    """Make Java read and write UTF-8 even under a non-UTF-8 locale (brands carry accents)."""
    if locale.getpreferredencoding(False).lower().replace("-", "") == "utf8":
        yield  # Java follows the locale; setting the option would only print a notice.
        return
    previous = os.environ.get("JAVA_TOOL_OPTIONS")
    os.environ["JAVA_TOOL_OPTIONS"] = f"{previous or ''} -Dfile.encoding=UTF-8 -Dsun.stdout.encoding=UTF-8".strip()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("JAVA_TOOL_OPTIONS", None)
        else:
            os.environ["JAVA_TOOL_OPTIONS"] = previous


def _shared_meteor() -> Meteor:
    global _meteor
    with _meteor_lock:
        if _meteor is None:
            with _utf8_java():
                _meteor = Meteor()
        return _meteor


def _one_line(text: str) -> str:
    # The PTB tokenizer works line by line: any line break inside a caption would shift every
    # later caption onto the wrong item.
    return " ".join(text.split())


def start_meteor() -> None:
    """Start the shared METEOR process now, so its slow start-up overlaps other work (generation)."""
    _require_java()
    _shared_meteor()


def _tokenize(sets: Sequence[tuple[list[list[str]], Sequence[str]]]) -> list[tuple[dict, dict]]:
    """One Java call for every set and both sides; per set ({i: [refs]}, {i: [prediction]}) PTB-tokenised."""
    items: dict = {}
    for s, (_, predictions) in enumerate(sets):
        items.update({("p", s, i): [{"caption": _one_line(p)}] for i, p in enumerate(predictions)})
    # References go last: a trailing empty prediction could otherwise fall off the output.
    for s, (references, _) in enumerate(sets):
        items.update({("r", s, i): [{"caption": _one_line(r)} for r in refs] for i, refs in enumerate(references)})
    with _utf8_java():
        tokenized = PTBTokenizer().tokenize(items)
    out = []
    for s, (references, predictions) in enumerate(sets):
        gts = {i: tokenized.get(("r", s, i), [""] * len(refs)) for i, refs in enumerate(references)}
        res = {i: tokenized.get(("p", s, i), [""]) for i in range(len(predictions))}
        out.append((gts, res))
    return out


def _as_reference_lists(references: Sequence[str | Sequence[str]], predictions: Sequence[str]) -> list[list[str]]:
    if len(references) != len(predictions):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; pass one reference (or list) per prediction"
        )
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    if any(not r for r in refs):
        raise ValueError(
            "a prediction has an empty reference list; give every prediction at least one reference caption"
        )
    return refs


def caption_scores_many(
    sets: Sequence[tuple[Sequence[str | Sequence[str]], Sequence[str]]],
) -> list[dict[str, float | None]]:
    """`caption_scores` of several (references, predictions) sets with a single tokenizer run."""
    checked = [(_as_reference_lists(refs, preds), preds) for refs, preds in sets]
    scored = [(refs, preds) for refs, preds in checked if preds]
    if scored:
        _require_java()
    tokenized = iter(_tokenize(scored) if scored else [])
    results = []
    for _, predictions in checked:
        if not predictions:
            results.append({name: None for name in METRIC_NAMES})
            continue
        gts, res = next(tokenized)
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        meteor, _ = _shared_meteor().compute_score(gts, res)
        rouge_l, _ = Rouge().compute_score(gts, res)
        cider, _ = Cider().compute_score(gts, res)
        results.append({name: float(v) for name, v in zip(METRIC_NAMES, [*bleu, meteor, rouge_l, cider])})
    return results


def caption_scores(references: Sequence[str | Sequence[str]], predictions: Sequence[str]) -> dict[str, float | None]:
    """Corpus-level caption metrics of `predictions` against one or more references each.

    All metric values are None when there are no predictions (e.g. an empty general set).
    """
    return caption_scores_many([(references, predictions)])[0]
