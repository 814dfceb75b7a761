"""evaluate stage: generate captions with one checkpoint (or the base model) and score them.

    from brandcap.evaluate import run_evaluate
    run_evaluate(params, Path("models/base"), Path("results/checkpoints/freeze_llm/epoch-2"),
                 Path("data/processed/test.jsonl"), Path("data/raw/general/general.jsonl"),
                 Path("results/eval/freeze_llm/epoch-2"), Path(".resume/eval/freeze_llm/epoch-2"))

(`checkpoint_dir=None` evaluates the base model: epoch 0.) Writes to `out_dir`:
- `predictions.jsonl`: `{product_id, brand, reference, prediction, brands_named, outcome, reference_loss}`
  per test sample (`brands_named` and `outcome` as `brandcap.metrics` decides them: correct,
  hedged, wrong or none; `reference_loss`: mean next-token loss of the reference caption);
- `general_predictions.jsonl`: `{id, reference, prediction}` per general (brand-free) sample;
- `metrics.json`: brand metrics (`brandcap.metrics.brand_metrics`: strict and lenient brand
  accuracy, macro accuracy, their 95% bootstrap intervals, hedged/wrong/no-brand rates),
  `test_loss`, caption metrics (`bleu1..4, meteor, rouge_l, cider`), the same caption metrics
  on the general set prefixed `general_` (null without a general set), `n_test`, `n_general`,
  `generation_seconds`, `samples_per_second`, `per_brand_accuracy` (accuracy, hedged rate, n).

Generation is batched and greedy with left padding; prompts are rendered by
`brandcap.chat.prompt_text` with `train.instruction` and encoded by `brandcap.chat.encode` (the
base processor's image tiling), exactly as in training. Before the model is loaded, the stage
checks that the base was built with `model.image_tiling` and that a prompt with the most tiles
the settings allow leaves room for an answer within `train.max_length`. The test loss
uses the training sample layout (processor-encoded prompt + tokenizer-encoded answer, labels on
the answer and its end token only, answer cut at `train.max_length`).

Resumable: each finished batch is appended and flushed to `resume_dir/{test,general}.partial.jsonl`;
a rerun generates only the items missing there. They are discarded when anything they depend on
changed (brandcap.resume_state: the content of the model, checkpoint, records and images, the
params read, the code), and removed after success.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm
from transformers import AutoProcessor

from brandcap.append_only import read_append_only
from brandcap.atomic import read_jsonl, write_json, write_jsonl
from brandcap.caption_metrics import METRIC_NAMES, caption_scores_many, start_meteor
from brandcap.chat import answer_text, check_prompt_settings, encode, prompt_text
from brandcap.checkpoints import load_for_inference
from brandcap.metrics import brand_metrics, brand_outcomes, mean_token_loss, named_brands
from brandcap.params import Params
from brandcap.resume_state import finish_resume_dir, prepare_resume_dir, stage_fingerprint

log = logging.getLogger(__name__)

TEST_KEYS = ("product_id", "image", "brand", "caption")
GENERAL_KEYS = ("id", "image", "caption")


# ----------------------------------------------------------------------------- inputs
def _read_records(path: Path, required: Sequence[str], what: str) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} file not found; run the stage that writes it first")
    records = read_jsonl(path)
    for line, rec in enumerate(records, 1):
        missing = [k for k in required if rec.get(k) in (None, "")]
        if missing:
            raise ValueError(f"{path}: line {line} lacks {missing}; every {what} record needs {list(required)}")
    return records


def _cap(records: list[dict[str, Any]], limit: int, seed: int) -> list[dict[str, Any]]:
    """At most `limit` records (0 = all): a seeded sample kept in file order, so no brand is cut off
    because the file happens to be sorted by brand."""
    if not limit or len(records) <= limit:
        return records
    keep = sorted(random.Random(seed).sample(range(len(records)), limit))
    return [records[i] for i in keep]


def _load_image(path: str, source: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{source}: image {path!r} cannot be read ({err}); image paths are relative to the "
            "working directory, so run from the repository root"
        ) from None


# ----------------------------------------------------------------------------- model
def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(params: Params, base_dir: Path, checkpoint_dir: Path | None, device: str):
    """(model, processor) in eval mode: the base model, or the base with a checkpoint applied."""
    return load_for_inference(Path(base_dir), Path(checkpoint_dir) if checkpoint_dir else None, device)


def _model_dtype(model) -> torch.dtype:
    return next(model.parameters()).dtype


# ----------------------------------------------------------------------------- one batch
@torch.inference_mode()
def generate_captions(model, processor, prompt: str, images: list[Image.Image], max_new_tokens: int) -> tuple[list[str], dict]:
    """Greedy captions for `images` (one left-padded batch) and the encoded prompts, for reuse."""
    processor.tokenizer.padding_side = "left"
    inputs = encode(processor, [prompt] * len(images), images, return_tensors="pt", padding=True)
    inputs = inputs.to(model.device)
    inputs["pixel_values"] = inputs["pixel_values"].to(_model_dtype(model))
    out = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=processor.tokenizer.pad_token_id,
    )
    new_tokens = out[:, inputs["input_ids"].shape[1] :]
    texts = processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return [t.strip() for t in texts], inputs


@torch.inference_mode()
def reference_losses(model, processor, prompt_inputs, captions: list[str], max_length: int) -> list[tuple[float, int]]:
    """(summed next-token loss, answer tokens) of each reference caption under teacher forcing.

    Same layout as training: the processor-encoded prompt (reused from generation) followed by
    the tokenizer-encoded answer (caption + end token), labels on the answer only, cut at
    `max_length`. Rows are left-padded so every answer ends at the last position, which lets
    the model compute logits for the answer span only (a full-vocabulary logit tensor over
    the image tokens would be large on real models).
    """
    tokenizer = processor.tokenizer
    mask = prompt_inputs["attention_mask"].bool()
    prompts = [ids[m].tolist() for ids, m in zip(prompt_inputs["input_ids"], mask)]
    answers = tokenizer([answer_text(processor, c) for c in captions], add_special_tokens=False)["input_ids"]
    answers = [a[: max(max_length - len(p), 0)] for p, a in zip(prompts, answers)]
    width = max(len(p) + len(a) for p, a in zip(prompts, answers))
    input_ids = torch.full((len(prompts), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        row = p + a
        input_ids[i, width - len(row) :] = torch.tensor(row)
        attention_mask[i, width - len(row) :] = 1
    longest_answer = max(len(a) for a in answers)
    if longest_answer == 0:
        return [(0.0, 0)] * len(captions)
    device = model.device
    logits = model(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        pixel_values=prompt_inputs["pixel_values"],
        logits_to_keep=longest_answer + 1,
    ).logits.float()
    # logits[:, j] predicts the token after position (width - longest_answer - 1 + j).
    predicted = logits[:, :-1]
    targets = input_ids[:, width - longest_answer :].to(device)
    token_loss = torch.nn.functional.cross_entropy(predicted.transpose(1, 2), targets, reduction="none")
    results = []
    for i, a in enumerate(answers):
        n = len(a)
        results.append((float(token_loss[i, longest_answer - n :].sum()) if n else 0.0, n))
    return results


# ----------------------------------------------------------------------------- resumable loop
def _fingerprint(params: Params, base_dir: Path, checkpoint_dir: Path | None, sets: dict[str, Path | None],
                 items: list[dict[str, Any]]) -> dict[str, Any]:
    """What the predictions depend on (brandcap.resume_state): partial results made under another are stale."""
    inputs: dict[str, Any] = {"base": base_dir, "images": [item["image"] for item in items]}
    inputs.update({name: path for name, path in sets.items() if path is not None})
    if checkpoint_dir is not None:
        inputs["checkpoint"] = checkpoint_dir
    read = {"seed": params.seed, "eval": params.eval.model_dump(mode="json"),
            "train.instruction": params.train.instruction, "train.max_length": params.train.max_length}
    return stage_fingerprint("brandcap.evaluate", inputs, read)


def _resumed_records(partial: Path, items: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    """Finished records in `partial` that still match their item (same image and reference)."""
    if not partial.exists():
        return {}
    records = read_append_only(partial)
    # Rewrite without a torn last line, so appending starts on a fresh line.
    write_jsonl(partial, records)
    wanted = {item[key]: item for item in items}
    done = {}
    for rec in records:
        item = wanted.get(rec["key"])
        if item is not None and rec["image"] == item["image"] and rec["reference"] == item["caption"]:
            done[rec["key"]] = rec
    return done


def _batches(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _predict_set(
    name: str, items: list[dict[str, Any]], key: str, source: Path, model, processor, params: Params,
    resume_dir: Path, bar: tqdm,
) -> tuple[list[dict[str, Any]], int]:
    """Predictions for every item, in item order, and how many were generated in this run."""
    partial = resume_dir / f"{name}.partial.jsonl"
    done = _resumed_records(partial, items, key)
    bar.update(len(done))
    todo = [item for item in items if item[key] not in done]
    prompt = prompt_text(processor, params.train.instruction)
    with open(partial, "a", encoding="utf-8") as sink:
        for batch in _batches(todo, params.eval.batch_size):
            images = [_load_image(item["image"], source) for item in batch]
            started = time.perf_counter()
            texts, prompt_inputs = generate_captions(model, processor, prompt, images, params.eval.max_new_tokens)
            seconds = time.perf_counter() - started
            losses = reference_losses(model, processor, prompt_inputs, [i["caption"] for i in batch], params.train.max_length)
            for item, text, (loss_sum, tokens) in zip(batch, texts, losses):
                rec = {
                    "key": item[key],
                    "image": item["image"],
                    "reference": item["caption"],
                    "prediction": text,
                    "loss_sum": loss_sum,
                    "loss_tokens": tokens,
                    "generation_seconds": seconds / len(batch),
                }
                done[item[key]] = rec
                sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
            sink.flush()
            bar.update(len(batch))
    return [done[item[key]] for item in items], len(todo)


# ----------------------------------------------------------------------------- the stage
def run_evaluate(
    params: Params,
    base_dir: Path,
    checkpoint_dir: Path | None,
    test_jsonl: Path,
    general_jsonl: Path | None,
    out_dir: Path,
    resume_dir: Path,
) -> None:
    """Generate and score captions for the test and general sets; see the module docstring."""
    out_dir, resume_dir = Path(out_dir), Path(resume_dir)
    all_test = _read_records(Path(test_jsonl), TEST_KEYS, "test")
    if not all_test:
        raise ValueError(f"{test_jsonl}: no test records; check the clean stage's report (clean_report.json)")
    known_brands = sorted({r["brand"] for r in all_test})
    test = _cap(all_test, params.eval.max_test_samples, params.seed)
    general = _read_records(Path(general_jsonl), GENERAL_KEYS, "general set") if general_jsonl else []
    general = _cap(general, params.eval.max_test_samples, params.seed)
    check_prompt_settings(AutoProcessor.from_pretrained(base_dir), params, str(base_dir))  # before any work

    if test and (os.cpu_count() or 1) >= 4:
        # METEOR's Java start-up (seconds of CPU) then overlaps model loading and generation; on
        # fewer cores it would only take cycles from generation and distort samples_per_second.
        start_meteor()
    device = default_device()
    model, processor = load_model(params, base_dir, checkpoint_dir, device)
    prepare_resume_dir(resume_dir, _fingerprint(params, base_dir, checkpoint_dir, {"test": test_jsonl, "general": general_jsonl}, test + general))
    label = f"evaluate {checkpoint_dir or 'base model'}"
    with tqdm(total=len(test) + len(general), desc=label, unit="sample") as bar:
        test_preds, new_test = _predict_set("test", test, "product_id", Path(test_jsonl), model, processor, params, resume_dir, bar)
        general_preds, new_general = _predict_set("general", general, "id", Path(general_jsonl or "."), model, processor, params, resume_dir, bar)

    predictions = [p["prediction"] for p in test_preds]
    brands = [t["brand"] for t in test]
    metrics: dict[str, Any] = {"n_test": len(test), "n_general": len(general)}
    per_brand = brand_metrics(predictions, brands, known_brands)
    metrics.update({k: v for k, v in per_brand.items() if k != "per_brand_accuracy"})
    metrics["test_loss"] = mean_token_loss([p["loss_sum"] for p in test_preds], [p["loss_tokens"] for p in test_preds])
    test_scores, general_scores = caption_scores_many(
        [([t["caption"] for t in test], predictions), ([g["caption"] for g in general], [p["prediction"] for p in general_preds])]
    )
    metrics.update(test_scores)
    metrics.update({f"general_{name}": general_scores[name] for name in METRIC_NAMES})
    seconds = sum(p["generation_seconds"] for p in test_preds + general_preds)
    metrics["generation_seconds"] = seconds
    metrics["samples_per_second"] = (len(test) + len(general)) / seconds if seconds else None
    metrics["per_brand_accuracy"] = per_brand["per_brand_accuracy"]

    write_jsonl(
        out_dir / "predictions.jsonl",
        (
            {
                "product_id": t["product_id"],
                "brand": t["brand"],
                "reference": t["caption"],
                "prediction": p["prediction"],
                "brands_named": named_brands(p["prediction"], known_brands),
                "outcome": outcome,
                "reference_loss": p["loss_sum"] / p["loss_tokens"] if p["loss_tokens"] else None,
            }
            for t, p, outcome in zip(test, test_preds, brand_outcomes(predictions, brands, known_brands))
        ),
    )
    write_jsonl(
        out_dir / "general_predictions.jsonl",
        ({"id": g["id"], "reference": g["caption"], "prediction": p["prediction"]} for g, p in zip(general, general_preds)),
    )
    write_json(out_dir / "metrics.json", metrics)
    finish_resume_dir(resume_dir)

    def fmt(value):
        return "n/a" if value is None else f"{value:.3f}"

    log.info(
        "%s: %d test + %d general samples (%d generated now, %d resumed), %.1f samples/s; "
        "brand accuracy %s, macro %s, wrong brand %s, test loss %s, CIDEr %s, general CIDEr %s",
        label, len(test), len(general), new_test + new_general, len(test) + len(general) - new_test - new_general,
        metrics["samples_per_second"] or 0.0, fmt(metrics["brand_accuracy"]), fmt(metrics["macro_brand_accuracy"]),
        fmt(metrics["wrong_brand_rate"]), fmt(metrics["test_loss"]), fmt(metrics["cider"]), fmt(metrics["general_cider"]),
    )
