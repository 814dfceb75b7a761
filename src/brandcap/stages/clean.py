"""clean stage: captions.jsonl -> train.jsonl, val.jsonl, test.jsonl, clean_report.json, clean_examples.md.

    python workflow/scripts/clean.py --params params.yaml --captions data/interim/captions.jsonl --out data/processed

or from Python: `run_clean(load_params("params.yaml"), "data/interim/captions.jsonl", "data/processed")`.

Rules, in order (each removed caption is counted under the first rule it fails):
no_caption (the caption stage got no text), repetition_loop, garbled (in the text's own script:
any script is text), other_script (off unless clean.expected_script is set), cut_off (a caption
stopped at max_tokens loses its unfinished sentence; dropped if too little is left),
no_brand (the brand is found with normalisation and rewritten to the catalog's spelling),
length, duplicate (same normalised text, or the same product twice; the first is kept),
duplicate_image (the same photo, by the sha256 of the stored image, under another product code:
the first is kept, so one photo can never sit in both train and test), rare_brand (brands with
fewer than clean.min_brand_samples captions). A brand that loses every caption to the caption rules
is listed in the report's `brands_lost` with the rule that took most of them. The survivors, `{product_id, image, sha256, brand,
caption}`, are split train/validation/test per brand, by product, with the seed: each brand's
products in a seeded order, the first `n_test_products` to test, the next `n_val_products` to
validation (the best epoch and experiment are chosen there, never on test), the rest to train.
Every kept brand has at least one test product, one validation product when two or more remain
after test, and one training product.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from brandcap.config.params import CleanParams, Params
from brandcap.files.atomic import write_json, write_jsonl, write_text
from brandcap.files.stage_records import CaptionRecord, read_records
from brandcap.text.brands import normalize
from brandcap.text.clean_rules import (
    duplicate_key,
    has_plausible_length,
    is_garbled,
    is_other_script,
    is_repetition_loop,
    trim_cut_off,
    with_canonical_brand,
)

log = logging.getLogger(__name__)

RULES = (
    "no_caption",
    "repetition_loop",
    "garbled",
    "other_script",
    "cut_off",
    "no_brand",
    "length",
    "duplicate",
    "duplicate_image",
    "rare_brand",
)
EXAMPLES_PER_RULE = 3


class CleanError(ValueError):
    """The clean stage cannot produce a usable train/test split; the message says which param to change."""


@dataclass
class CleanResult:
    kept: list[dict[str, Any]] = field(default_factory=list)  # {product_id, image, sha256, brand, caption}
    removed: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    trimmed: list[tuple[str, str]] = field(default_factory=list)  # (before, after)
    brand_fixed: list[tuple[str, str]] = field(default_factory=list)
    n_trimmed: int = 0
    n_brand_fixed: int = 0
    brands_kept: dict[str, int] = field(default_factory=dict)
    brands_dropped: dict[str, int] = field(default_factory=dict)
    # brands that lost every caption to the caption rules: {brand: {"rule": the rule that took most, "captions": n}}
    brands_lost: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed_by_brand: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))


def canonical_brand_names(records: list[dict[str, Any]]) -> dict[str, str]:
    """Catalog brand string -> canonical spelling: the most frequent spelling among
    brands that normalise alike ('MAISON ECLAT' and 'Maison Éclat' are one brand)."""
    spellings: dict[str, Counter] = defaultdict(Counter)
    for rec in records:
        brand = rec.get("brand") or ""
        spellings[normalize(brand)][brand] += 1
    canonical = {}
    for counts in spellings.values():
        best = min(counts, key=lambda s: (-counts[s], s))
        canonical.update({s: best for s in counts})
    return canonical


def _remove(result: CleanResult, rule: str, rec: dict[str, Any], text: str | None) -> None:
    result.removed[rule] += 1
    result.removed_by_brand[rec["brand"] or ""][rule] += 1
    if len(result.examples[rule]) < EXAMPLES_PER_RULE:
        result.examples[rule].append(
            {"product_id": rec["product_id"], "brand": rec["brand"], "text": text, "error": rec.get("error")}
        )


def _count_rewrites(result: CleanResult, text: str, trimmed: str, caption: str) -> None:
    """Rewrites are counted among the captions that pass every caption rule."""
    if trimmed != text:
        result.n_trimmed += 1
        if len(result.trimmed) < EXAMPLES_PER_RULE:
            result.trimmed.append((text, trimmed))
    if caption != trimmed:
        result.n_brand_fixed += 1
        if len(result.brand_fixed) < EXAMPLES_PER_RULE:
            result.brand_fixed.append((trimmed, caption))


def apply_caption_rules(records: list[dict[str, Any]], clean: CleanParams) -> CleanResult:
    """The caption rules (all but rare_brand) on each caption, in input order; the survivors in `kept`."""
    result = CleanResult()
    canonical = canonical_brand_names(records)
    known_brands = sorted(set(canonical.values()))
    seen_texts: set[str] = set()
    seen_products: set[Any] = set()
    seen_images: set[str] = set()
    for rec in tqdm(records, desc="clean", unit="caption", mininterval=2.0, leave=False):
        text = rec.get("text")
        if text is None or not text.strip():
            _remove(result, "no_caption", rec, text)
            continue
        if is_repetition_loop(text, clean):
            _remove(result, "repetition_loop", rec, text)
            continue
        if is_garbled(text, clean):
            _remove(result, "garbled", rec, text)
            continue
        if is_other_script(text, clean):
            _remove(result, "other_script", rec, text)
            continue
        text = " ".join(text.split())  # newlines and double spaces carry nothing for training
        trimmed = trim_cut_off(text, rec.get("finish_reason"), clean)
        if trimmed is None:
            _remove(result, "cut_off", rec, text)
            continue
        brand = canonical.get(rec["brand"] or "", rec["brand"] or "")
        caption = with_canonical_brand(trimmed, brand, known_brands)
        if caption is None:
            _remove(result, "no_brand", rec, trimmed)
            continue
        if not has_plausible_length(caption, clean):
            _remove(result, "length", rec, caption)
            continue
        key = duplicate_key(caption)
        if key in seen_texts or rec["product_id"] in seen_products:
            _remove(result, "duplicate", rec, caption)
            continue
        if rec["sha256"] in seen_images:
            _remove(result, "duplicate_image", rec, caption)
            continue
        _count_rewrites(result, text, trimmed, caption)
        seen_texts.add(key)
        seen_products.add(rec["product_id"])
        seen_images.add(rec["sha256"])
        result.kept.append(
            {
                "product_id": rec["product_id"],
                "image": rec["image"],
                "sha256": rec["sha256"],
                "brand": brand,
                "caption": caption,
            }
        )
    result.brands_lost = lost_brands(result, {canonical.get(r["brand"] or "", r["brand"] or "") for r in records})
    return result


def lost_brands(result: CleanResult, brands: set[str]) -> dict[str, dict[str, Any]]:
    """The brands none of whose captions passed the caption rules, with the rule that removed most of them."""
    survivors = {r["brand"] for r in result.kept}
    lost = {}
    for brand in sorted(brands - survivors):
        removed = Counter()
        for spelling, counts in result.removed_by_brand.items():
            if normalize(spelling) == normalize(brand):
                removed.update(counts)
        rule, _ = min(removed.items(), key=lambda kv: (-kv[1], RULES.index(kv[0]))) if removed else ("no_caption", 0)
        lost[brand] = {"rule": rule, "captions": sum(removed.values())}
    return lost


def drop_rare_brands(result: CleanResult, min_samples: int) -> None:
    """The rare_brand rule: keep only brands with at least `min_samples` captions."""
    counts = Counter(r["brand"] for r in result.kept)
    by_size = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    result.brands_kept = {b: n for b, n in by_size if n >= min_samples}
    result.brands_dropped = {b: n for b, n in by_size if n < min_samples}
    for rec in result.kept:
        if rec["brand"] in result.brands_dropped:
            _remove(result, "rare_brand", rec, rec["caption"])
    result.kept = [r for r in result.kept if r["brand"] in result.brands_kept]


def n_test_products(n: int, test_fraction: float) -> int:
    """Products of one brand held out: the rounded fraction, at least 1, and at least one left to train on."""
    if n < 2:
        return n
    return min(n - 1, max(1, int(n * test_fraction + 0.5)))


def n_val_products(n: int, test_fraction: float, val_fraction: float) -> int:
    """Products of one brand for validation, after test: the rounded fraction of all n, at least 1
    when two or more remain after test, and always one left to train on."""
    remaining = n - n_test_products(n, test_fraction)
    if remaining < 2:
        return 0
    return min(remaining - 1, max(1, int(n * val_fraction + 0.5)))


Split = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]


def split_by_brand(records: list[dict[str, Any]], seed: int, test_fraction: float, val_fraction: float) -> Split:
    """(train, val, test): per brand, a seeded shuffle of its products; the first `n_test_products`
    go to test, the next `n_val_products` to validation. Each brand has its own generator, so adding
    or dropping a brand leaves the others' splits alone, and the test part does not depend on
    `val_fraction`."""
    products: dict[str, list[Any]] = defaultdict(list)
    for rec in records:
        products[rec["brand"]].append(rec["product_id"])
    test_ids: set[Any] = set()
    val_ids: set[Any] = set()
    for brand, ids in products.items():
        ids = sorted(set(ids), key=str)
        random.Random(f"{seed}:{normalize(brand)}").shuffle(ids)
        n_test = n_test_products(len(ids), test_fraction)
        test_ids.update(ids[:n_test])
        val_ids.update(ids[n_test : n_test + n_val_products(len(ids), test_fraction, val_fraction)])
    train = [r for r in records if r["product_id"] not in test_ids | val_ids]
    val = [r for r in records if r["product_id"] in val_ids]
    test = [r for r in records if r["product_id"] in test_ids]
    return train, val, test


def require_both_splits(
    captions_path: Path, train: list[dict[str, Any]], test: list[dict[str, Any]], clean: CleanParams
) -> None:
    """A split with no training (or no test) record cannot feed the study: fail here, not in training."""
    if train and test:
        return
    counts = Counter(r["brand"] for r in train + test)
    brands = ", ".join(f"{b} {n}" for b, n in counts.most_common(5))
    cause = (
        "a brand with a single product puts it in test and none in train"
        if not train
        else "clean.test_fraction holds out nothing"
    )
    raise CleanError(
        f"{captions_path}: the split has {len(train)} training and {len(test)} test records; {cause} (products per "
        f"kept brand: {brands}). Set clean.min_brand_samples (now {clean.min_brand_samples}) to at least 2 so every "
        "kept brand has products on both sides, or caption more products (data.sample_size)"
    )


def read_captions(captions_path: Path) -> list[dict[str, Any]]:
    try:
        return read_records(
            captions_path,
            CaptionRecord,
            "captions file",
            allow_empty=False,
            fix="run the caption stage first (snakemake data/interim/captions.jsonl)",
        )
    except ValueError as err:
        raise CleanError(str(err)) from None


def _quote(text: str | None, limit: int = 600) -> str:
    if text is None:
        return "> *(no text)*"
    text = text if len(text) <= limit else text[:limit] + " …"
    return "\n".join("> " + line for line in (text.splitlines() or [""]))


def examples_markdown(result: CleanResult, report: dict[str, Any]) -> str:
    """A page for a human to check the rules: a few removed captions per rule, and the rewrites."""
    lines = [
        "# Clean stage: examples",
        "",
        f"{report['input']} captions in, {report['train']} train + {report['val']} validation + {report['test']} test out.",
        "",
    ]
    for rule in RULES:
        lines += [f"## {rule}: {report['removed'][rule]} removed", ""]
        if rule == "rare_brand":
            dropped = ", ".join(f"{b} ({n})" for b, n in result.brands_dropped.items()) or "none"
            lines += [f"Brands dropped (captions): {dropped}", ""]
        for ex in result.examples.get(rule, []):
            note = f" — error: {ex['error']}" if ex.get("error") else ""
            lines += [f"**{ex['product_id']}** ({ex['brand']}){note}", "", _quote(ex["text"]), ""]
    if result.brands_lost:
        lost = ", ".join(f"{b} ({x['rule']}, {x['captions']} captions)" for b, x in result.brands_lost.items())
        lines += ["## brands that lost every caption to the caption rules", "", lost, ""]
    for title, pairs, count in (
        ("cut-off captions trimmed at the last period", result.trimmed, result.n_trimmed),
        ("brand rewritten to the catalog spelling", result.brand_fixed, result.n_brand_fixed),
    ):
        lines += [f"## {title}: {count}", ""]
        for before, after in pairs:
            lines += ["before:", "", _quote(before), "", "after:", "", _quote(after), ""]
    return "\n".join(lines)


def run_clean(params: Params, captions_path: str | Path, out_dir: str | Path) -> None:
    """Clean the captions and write train.jsonl, val.jsonl, test.jsonl, clean_report.json and clean_examples.md to out_dir."""
    captions_path, out_dir = Path(captions_path), Path(out_dir)
    clean = params.clean
    records = read_captions(captions_path)
    result = apply_caption_rules(records, clean)
    after_caption_rules = len(result.kept)
    if not result.kept:
        counts = ", ".join(f"{r} {result.removed[r]}" for r in RULES if result.removed[r])
        raise CleanError(
            f"{captions_path}: no caption survives the clean rules ({counts}); look at the captions "
            "(or loosen the clean.* thresholds of the rule that removed them)"
        )
    drop_rare_brands(result, clean.min_brand_samples)
    if len(result.brands_kept) < 2:
        largest = ", ".join(f"{b} {n}" for b, n in list({**result.brands_kept, **result.brands_dropped}.items())[:5])
        raise CleanError(
            f"{captions_path}: {len(result.brands_kept)} brand(s) have at least clean.min_brand_samples="
            f"{clean.min_brand_samples} clean captions (largest: {largest}); the study needs at least 2. "
            "Lower clean.min_brand_samples in the params file, or caption more products (data.sample_size)"
        )
    train, val, test = split_by_brand(result.kept, params.seed, clean.test_fraction, clean.val_fraction)
    require_both_splits(captions_path, train, test, clean)
    report = {
        "input": len(records),
        "removed": {rule: result.removed[rule] for rule in RULES},
        "trimmed": result.n_trimmed,
        "brand_case_fixed": result.n_brand_fixed,
        "after_caption_rules": after_caption_rules,
        "after_rules": len(result.kept),
        "brands_kept": result.brands_kept,
        "brands_dropped": result.brands_dropped,
        "brands_lost": result.brands_lost,
        "train": len(train),
        "val": len(val),
        "test": len(test),
    }
    write_jsonl(out_dir / "train.jsonl", train)
    write_jsonl(out_dir / "val.jsonl", val)
    write_jsonl(out_dir / "test.jsonl", test)
    write_json(out_dir / "clean_report.json", report)
    write_text(out_dir / "clean_examples.md", examples_markdown(result, report))
    removed = ", ".join(f"{r} {n}" for r, n in report["removed"].items() if n) or "none"
    log.info(
        "clean: %d captions -> %d kept (train %d, val %d, test %d) in %d brands (%d dropped: too few captions; %d lost every caption%s); "
        "removed: %s; trimmed %d, brand respelled %d",
        report["input"],
        report["after_rules"],
        report["train"],
        report["val"],
        report["test"],
        len(result.brands_kept),
        len(result.brands_dropped),
        len(result.brands_lost),
        "".join(f", {b} to {x['rule']}" for b, x in result.brands_lost.items()),
        removed,
        report["trimmed"],
        report["brand_case_fixed"],
    )
