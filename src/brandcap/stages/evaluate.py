"""evaluate stage: generate captions with every checkpoint of a training run (or the base model) and score them.

    from brandcap.stages.evaluate import run_evaluate
    run_evaluate(params, Path("models/base"), Path("results/checkpoints/freeze_llm/seed-4"),
                 Path("data/processed/test.jsonl"), Path("data/raw/general/general.jsonl"),
                 Path("results/eval/freeze_llm/seed-4"), Path(".resume/eval/freeze_llm/seed-4"),
                 val_jsonl=Path("data/processed/val.jsonl"))

`checkpoints_dir` is one training run's folder: its `epoch-N` checkpoint of every epoch N in
`train.save_epochs` is scored, in that order, into `out_dir/epoch-N`, all in this one process
(the imports, the processor, the base model of delta checkpoints and METEOR's JVM are paid once:
`brandcap.model.checkpoints.CheckpointSeries` applies each checkpoint to the pristine base).
`checkpoints_dir=None` evaluates the base model (epoch 0) into `out_dir`; `prompted=True` with it
is the prompt-only baseline, see below. Writes to each output folder:
- `predictions.jsonl`: `{product_id, brand, reference, prediction, brands_named, outcome, reference_loss}`
  per test sample (`brands_named` and `outcome` as `brandcap.evaluation.metrics` decides them: correct,
  hedged, wrong or none; `reference_loss`: mean next-token loss of the reference caption);
- `val_predictions.jsonl`: the same per validation sample (empty without a validation set);
- `general_predictions.jsonl`: `{id, reference, prediction, brands_named}` per general (brand-free) sample;
- `metrics.json`: brand metrics (`brandcap.evaluation.metrics.brand_metrics`: strict and lenient brand
  accuracy, macro accuracy, their 95% bootstrap intervals, hedged/wrong/no-brand rates),
  `test_loss`, caption metrics (`bleu1..4, meteor, rouge_l, cider`); the same brand metrics on
  the validation set prefixed `val_` with `val_loss` (the best epoch is chosen on these, never on
  test; null without a validation set); the forgetting probe on the general set: the caption
  metrics prefixed `general_` and `general_brand_hallucination_rate`, the fraction of brand-free
  images for which a known brand is named (null without a general set); `n_test`, `n_val`,
  `n_general`, `generation_seconds`, `samples_per_second`, `per_brand_accuracy` (accuracy,
  hedged rate, n).

Generation is batched and greedy with left padding; prompts are rendered by
`brandcap.model.chat.prompt_text` and encoded by `brandcap.model.chat.encode` (the base processor's image
tiling), exactly as in training. The test and validation sets are asked `train.instruction`, the
training prompt; the general set its own generic question, `eval.general_instruction` (with the
fine-tuning instruction the probe would score the training captions' style, not general
captioning). The prompt-only baseline (`prompted=True`) asks the test and validation sets
`eval.prompted_instruction` with the candidate brands (every brand of the test and validation
sets, sorted) in place of `{brands}`: prompting tried before fine-tuning. Before the model is loaded, the stage
checks that the base was built with `model.image_tiling` and that a prompt with the most tiles
the settings allow leaves room for an answer within `train.max_length`. The test loss
uses the training sample layout (processor-encoded prompt + tokenizer-encoded answer, labels on
the answer and its end token only, answer cut at `train.max_length`).

Backends (`eval.backend`): `hf` (default) generates in this process with the base model and the
checkpoint; `endpoint` asks the OpenAI-compatible server at `eval.endpoint` for the model it serves
(an exported checkpoint: the export stage), with the same prompt and greedy decoding
(`brandcap.evaluation.endpoint_backend`), and refuses `checkpoints_dir` (the server decides the model).
Both write the same files with the same keys; over HTTP there is no reference loss, so
`reference_loss`, `test_loss` and `val_loss` are null. Items the server does not answer stop the
stage with their reasons (EndpointAnswersMissing) after the answered ones are kept for the rerun.

Resumable: each finished batch is appended and flushed to `resume_dir/{test,val,general}.partial.jsonl`
(`resume_dir/epoch-N/...` per checkpoint of a run); a rerun generates only the items missing there,
so the epochs a killed run finished are only scored again, without loading their checkpoint. They are
discarded when anything they depend on changed (brandcap.running.resume_state: the content of the model,
checkpoint, records and images, the params read, the code; per epoch), and removed after the
whole stage succeeded.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoProcessor

from brandcap.config.params import PROMPTED_EVAL_KEYS, SCORED_EVAL_KEYS, Params
from brandcap.evaluation.caption_metrics import METRIC_NAMES, caption_scores_many, start_meteor
from brandcap.evaluation.metrics import (
    brand_hallucination_rate,
    brand_metrics,
    brand_outcomes,
    candidate_brands,
    evaluation_sample,
    mean_token_loss,
    named_brands,
)
from brandcap.files.append_only import read_append_only
from brandcap.files.atomic import write_json, write_jsonl
from brandcap.files.digests import content_digest
from brandcap.files.images import open_rgb
from brandcap.files.stage_records import GeneralRecord, SplitRecord, read_records
from brandcap.model.chat import check_prompt_settings, encode, prompt_text
from brandcap.model.checkpoints import CheckpointSeries, load_for_inference
from brandcap.model.training_data import IGNORE_INDEX, answer_ids, prompt_answer_batch
from brandcap.running.progress import Progress, progress
from brandcap.running.resume_state import finish_resume_dir, prepare_resume_dir, stage_fingerprint

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- inputs
def _read_records(path: Path, model, what: str) -> list[dict[str, Any]]:
    return read_records(path, model, what, fix="run the stage that writes it first")


def _load_image(path: str, source: Path) -> Image.Image:
    return open_rgb(path, source)


# ----------------------------------------------------------------------------- model
def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(base_dir: Path, checkpoint_dir: Path | None, device: str):
    """(model, processor) in eval mode: the base model, or the base with a checkpoint applied."""
    return load_for_inference(Path(base_dir), Path(checkpoint_dir) if checkpoint_dir else None, device)


def run_checkpoints(params: Params, checkpoints_dir: Path) -> list[tuple[int, Path]]:
    """(epoch, checkpoint folder) of every epoch in train.save_epochs, in order; all must exist."""
    checkpoints = [(epoch, Path(checkpoints_dir) / f"epoch-{epoch}") for epoch in params.train.save_epochs]
    missing = [str(folder) for _, folder in checkpoints if not folder.is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{checkpoints_dir}: no checkpoint {', '.join(missing)} (train.save_epochs is {list(params.train.save_epochs)}); "
            "run the train stage for this experiment and seed with the same train.save_epochs, or pass the training run's "
            "own folder (results/checkpoints/<experiment>/seed-<S>)"
        )
    return checkpoints


def _model_dtype(model) -> torch.dtype:
    return next(model.parameters()).dtype


class LocalModel:
    """eval.backend hf: the model in this process, loaded by `load_model` when first asked (an epoch whose
    answers were all resumed never loads its checkpoint); greedy answers and the reference captions' loss."""

    def __init__(self, load_model: Callable[[], Any], processor, max_new_tokens: int, max_length: int):
        self.load_model, self.processor, self.max_new_tokens, self.max_length = (
            load_model,
            processor,
            max_new_tokens,
            max_length,
        )

    @cached_property
    def model(self):
        return self.load_model()

    def predict(self, images: list[Image.Image], instruction: str, references: list[str]) -> list[dict[str, Any]]:
        """{"prediction", "loss_sum", "loss_tokens", "error": None} per image, in order."""
        prompt = prompt_text(self.processor, instruction)
        texts, prompt_inputs = generate_captions(self.model, self.processor, prompt, images, self.max_new_tokens)
        losses = reference_losses(self.model, self.processor, prompt_inputs, references, self.max_length)
        return [
            {"prediction": text, "loss_sum": loss_sum, "loss_tokens": tokens, "error": None}
            for text, (loss_sum, tokens) in zip(texts, losses)
        ]


class _ServedModel:
    """eval.backend endpoint: brandcap.evaluation.endpoint_backend's answers, without a loss (not available over HTTP)."""

    def __init__(self, endpoint):
        self.endpoint = endpoint

    def predict(self, images: list[Image.Image], instruction: str, references: list[str]) -> list[dict[str, Any]]:
        return [
            {**answer, "loss_sum": None, "loss_tokens": None} for answer in self.endpoint.predict(images, instruction)
        ]


@contextmanager
def open_backend(params: Params, base_dir: Path, processor) -> Iterator[LocalModel | _ServedModel]:
    """What answers, as eval.backend says: the base model in this process, or the server at eval.endpoint."""
    if params.eval.backend == "hf":
        yield LocalModel(
            lambda: load_model(base_dir, None, default_device())[0],
            processor,
            params.eval.max_new_tokens,
            params.train.max_length,
        )
        return
    from brandcap.evaluation.endpoint_backend import EndpointModel  # the HTTP client only where it is used

    with EndpointModel(params.eval.endpoint, params.eval.max_new_tokens) as endpoint:
        yield _ServedModel(endpoint)


# ----------------------------------------------------------------------------- one batch
@torch.inference_mode()
def generate_captions(
    model, processor, prompt: str, images: list[Image.Image], max_new_tokens: int
) -> tuple[list[str], dict]:
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

    Training's layout (`prompt_answer_batch`): the processor-encoded prompt (reused from generation) followed by
    the tokenizer-encoded answer (caption + end token), labels on the answer only, cut at
    `max_length`. Rows are left-padded so every answer ends at the last position, which lets
    the model compute logits for the answer span only (a full-vocabulary logit tensor over
    the image tokens would be large on real models).
    """
    mask = prompt_inputs["attention_mask"].bool()
    prompts = [ids[m].tolist() for ids, m in zip(prompt_inputs["input_ids"], mask)]
    batch = prompt_answer_batch(
        prompts, answer_ids(processor, captions), processor.tokenizer.pad_token_id, max_length, "left"
    )
    input_ids, attention_mask, width = batch["input_ids"], batch["attention_mask"], batch["input_ids"].shape[1]
    answer_tokens = (batch["labels"] != IGNORE_INDEX).sum(dim=1).tolist()
    longest_answer = max(answer_tokens)
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
    for i, n in enumerate(answer_tokens):
        results.append((float(token_loss[i, longest_answer - n :].sum()) if n else 0.0, n))
    return results


# ----------------------------------------------------------------------------- resumable loop
def _fingerprint(
    params: Params, base_dir: Path, sets: dict[str, Path | None], items: list[dict[str, Any]], prompted: bool
) -> dict[str, Any]:
    """What the base model's predictions depend on (brandcap.running.resume_state): partial results made under another are stale."""
    inputs: dict[str, Any] = {"base": base_dir, "images": [item["image"] for item in items]}
    inputs.update({name: path for name, path in sets.items() if path is not None})
    read_keys = PROMPTED_EVAL_KEYS if prompted else SCORED_EVAL_KEYS
    read = {
        "seed": params.seed,
        "eval": {key: value for key, value in params.eval.model_dump(mode="json").items() if key in read_keys},
        "train.instruction": params.train.instruction,
        "train.max_length": params.train.max_length,
        "prompted": prompted,
    }
    return stage_fingerprint("brandcap.stages.evaluate", inputs, read)


def _with_checkpoint(fingerprint: dict[str, Any], checkpoint_dir: Path) -> dict[str, Any]:
    """The fingerprint of a checkpoint's predictions: the base model's, and the checkpoint's content."""
    return {**fingerprint, "inputs": {**fingerprint["inputs"], "checkpoint": content_digest(checkpoint_dir)}}


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


class EndpointAnswersMissing(RuntimeError):
    """Items the server at eval.endpoint gave no answer; the message says how many, why, and what to do."""


def _predict_set(
    name: str,
    items: list[dict[str, Any]],
    key: str,
    source: Path,
    instruction: str,
    backend: LocalModel | _ServedModel,
    params: Params,
    resume_dir: Path,
    bar: Progress,
) -> tuple[list[dict[str, Any]], int]:
    """Predictions for every item, asked `instruction`, in item order, and how many were generated in this run."""
    partial = resume_dir / f"{name}.partial.jsonl"
    done = _resumed_records(partial, items, key)
    bar.update(len(done))
    todo = [item for item in items if item[key] not in done]
    failures: Counter[str] = Counter()
    last_failure = ""
    with open(partial, "a", encoding="utf-8") as sink:
        for batch in _batches(todo, params.eval.batch_size):
            images = [_load_image(item["image"], source) for item in batch]
            started = time.perf_counter()
            answers = backend.predict(images, instruction, [item["caption"] for item in batch])
            seconds = time.perf_counter() - started
            for item, answer in zip(batch, answers):
                if answer["error"] is not None:
                    failures[answer["error"].split(":", 1)[0]] += 1
                    last_failure = answer["error"]
                    continue
                rec = {
                    "key": item[key],
                    "image": item["image"],
                    "reference": item["caption"],
                    "prediction": answer["prediction"],
                    "loss_sum": answer["loss_sum"],
                    "loss_tokens": answer["loss_tokens"],
                    "generation_seconds": seconds / len(batch),
                }
                done[item[key]] = rec
                sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
            sink.flush()
            bar.update(len(batch))
    if failures:
        raise EndpointAnswersMissing(
            f"{source}: {sum(failures.values())} of {len(items)} {name} items got no answer from eval.endpoint.base_url "
            f"{params.eval.endpoint.base_url} (by reason: {dict(failures)}; the last: {last_failure}); the {len(done)} answered "
            f"are kept in {partial}; check the server's log, then rerun the stage to ask only the rest"
        )
    return [done[item[key]] for item in items], len(todo)


# ----------------------------------------------------------------------------- scoring
def prompted_instruction(params: Params, known_brands: Sequence[str]) -> str:
    """The prompt-only baseline's question: `eval.prompted_instruction` with the candidate brands."""
    return params.eval.prompted_instruction.replace("{brands}", ", ".join(known_brands))


def _scored_predictions(
    items: list[dict[str, Any]], preds: list[dict[str, Any]], known_brands: list[str]
) -> list[dict[str, Any]]:
    """predictions.jsonl records: each item's answer with the brands it names and its outcome."""
    outcomes = brand_outcomes([p["prediction"] for p in preds], [i["brand"] for i in items], known_brands)
    return [
        {
            "product_id": item["product_id"],
            "brand": item["brand"],
            "reference": item["caption"],
            "prediction": p["prediction"],
            "brands_named": named_brands(p["prediction"], known_brands),
            "outcome": outcome,
            "reference_loss": p["loss_sum"] / p["loss_tokens"] if p["loss_tokens"] else None,
        }
        for item, p, outcome in zip(items, preds, outcomes)
    ]


def _brand_scores(items: list[dict[str, Any]], preds: list[dict[str, Any]], known_brands: list[str]) -> dict[str, Any]:
    """brandcap.evaluation.metrics.brand_metrics of one set, with its mean reference loss as `loss`."""
    scores = brand_metrics([p["prediction"] for p in preds], [i["brand"] for i in items], known_brands)
    without_loss = any(p["loss_tokens"] is None for p in preds)  # eval.backend endpoint: no loss over HTTP
    scores["loss"] = (
        None if without_loss else mean_token_loss([p["loss_sum"] for p in preds], [p["loss_tokens"] for p in preds])
    )
    return scores


def _val_metrics(val: list[dict[str, Any]], preds: list[dict[str, Any]], known_brands: list[str]) -> dict[str, Any]:
    """The validation set's brand metrics and loss prefixed `val_` (nulls without a validation set)."""
    if not val:
        names = [k for k in brand_metrics([], [], known_brands) if k != "per_brand_accuracy"] + ["loss"]
        return {f"val_{k}": None for k in names}
    scores = _brand_scores(val, preds, known_brands)
    scores.pop("per_brand_accuracy")
    return {f"val_{k}": v for k, v in scores.items()}


# ----------------------------------------------------------------------------- the stage
class EvaluationSets:
    """The test, validation and general items a stage scores (each capped at eval.max_test_samples), their files, and
    the candidate brands answers are scored against (every brand of the whole test and validation files)."""

    def __init__(self, params: Params, test_jsonl: Path, val_jsonl: Path | None, general_jsonl: Path | None):
        all_test = _read_records(Path(test_jsonl), SplitRecord, "test")
        if not all_test:
            raise ValueError(f"{test_jsonl}: no test records; check the clean stage's report (clean_report.json)")
        all_val = _read_records(Path(val_jsonl), SplitRecord, "validation") if val_jsonl else []
        general = _read_records(Path(general_jsonl), GeneralRecord, "general set") if general_jsonl else []
        self.known_brands = candidate_brands(all_test, all_val)
        self.test = evaluation_sample(all_test, params.eval.max_test_samples, params.seed)
        self.val = evaluation_sample(all_val, params.eval.max_test_samples, params.seed)
        self.general = evaluation_sample(general, params.eval.max_test_samples, params.seed)
        self.files = {"test": test_jsonl, "val": val_jsonl, "general": general_jsonl}

    @property
    def items(self) -> list[dict[str, Any]]:
        return self.test + self.val + self.general


def _check_mode(params: Params, checkpoints_dir: Path | None, prompted: bool) -> None:
    if params.eval.backend == "endpoint" and checkpoints_dir is not None:
        raise ValueError(
            f"{checkpoints_dir}: eval.backend endpoint evaluates the model the server at eval.endpoint.base_url serves, not "
            "checkpoints; export the checkpoint (workflow/scripts/export.py --checkpoint ...), serve the export and run without "
            "--checkpoints, or set eval.backend: hf"
        )
    if prompted and checkpoints_dir is not None:
        raise ValueError(
            f"{checkpoints_dir}: the prompt-only baseline asks the base model; drop --checkpoints or --prompted"
        )


def run_evaluate(
    params: Params,
    base_dir: Path,
    checkpoints_dir: Path | None,
    test_jsonl: Path,
    general_jsonl: Path | None,
    out_dir: Path,
    resume_dir: Path,
    val_jsonl: Path | None = None,
    prompted: bool = False,
) -> None:
    """Generate and score captions for the test, validation and general sets with every checkpoint of a training run
    (into out_dir/epoch-N) or with the base model (into out_dir); see the module docstring."""
    out_dir, resume_dir = Path(out_dir), Path(resume_dir)
    _check_mode(params, checkpoints_dir, prompted)
    checkpoints = run_checkpoints(params, checkpoints_dir) if checkpoints_dir is not None else []
    sets = EvaluationSets(params, test_jsonl, val_jsonl, general_jsonl)
    processor = AutoProcessor.from_pretrained(base_dir)
    check_prompt_settings(processor, params, str(base_dir))  # before any work

    if sets.test and (os.cpu_count() or 1) >= 4:
        # METEOR's Java start-up (seconds of CPU) then overlaps model loading and generation; on
        # fewer cores it would only take cycles from generation and distort samples_per_second.
        start_meteor()
    instruction = prompted_instruction(params, sets.known_brands) if prompted else params.train.instruction
    fingerprint = _fingerprint(params, base_dir, sets.files, sets.items, prompted)
    if checkpoints_dir is None:
        endpoint = params.eval.endpoint
        served = f"{endpoint.model} at {endpoint.base_url}" if params.eval.backend == "endpoint" else None
        label = f"evaluate {served or 'base model'}" + (" (prompted with the brands)" if prompted else "")
        with open_backend(params, base_dir, processor) as backend:
            _evaluate_model(params, sets, backend, instruction, label, out_dir, resume_dir, fingerprint)
    else:
        series = CheckpointSeries(base_dir, default_device())
        for n, (epoch, checkpoint) in enumerate(checkpoints, 1):
            backend = LocalModel(
                lambda checkpoint=checkpoint: series.model(checkpoint),
                processor,
                params.eval.max_new_tokens,
                params.train.max_length,
            )
            label = f"evaluate {checkpoint} (epoch {epoch}: checkpoint {n}/{len(checkpoints)})"
            _evaluate_model(
                params,
                sets,
                backend,
                instruction,
                label,
                out_dir / f"epoch-{epoch}",
                resume_dir / f"epoch-{epoch}",
                _with_checkpoint(fingerprint, checkpoint),
            )
    finish_resume_dir(resume_dir)


def _evaluate_model(
    params: Params,
    sets: EvaluationSets,
    backend: LocalModel | _ServedModel,
    instruction: str,
    label: str,
    out_dir: Path,
    resume_dir: Path,
    fingerprint: dict[str, Any],
) -> None:
    """One model's predictions (resumed from `resume_dir` where its fingerprint still holds), scored into `out_dir`."""
    test, val, general = sets.test, sets.val, sets.general
    known_brands = sets.known_brands
    with progress(len(sets.items), label, unit="sample", logger=log) as bar:
        prepare_resume_dir(resume_dir, fingerprint)

        def predict(name, items, key, asked):
            source = Path(sets.files[name] or ".")
            return _predict_set(name, items, key, source, asked, backend, params, resume_dir, bar)

        test_preds, new_test = predict("test", test, "product_id", instruction)
        val_preds, new_val = predict("val", val, "product_id", instruction)
        general_preds, new_general = predict("general", general, "id", params.eval.general_instruction)
    new = new_test + new_val + new_general

    predictions = [p["prediction"] for p in test_preds]
    general_answers = [p["prediction"] for p in general_preds]
    metrics: dict[str, Any] = {"n_test": len(test), "n_val": len(val), "n_general": len(general)}
    per_brand = _brand_scores(test, test_preds, known_brands)
    metrics.update({k: v for k, v in per_brand.items() if k not in ("per_brand_accuracy", "loss")})
    metrics["test_loss"] = per_brand["loss"]
    metrics.update(_val_metrics(val, val_preds, known_brands))
    test_scores, general_scores = caption_scores_many(
        [([t["caption"] for t in test], predictions), ([g["caption"] for g in general], general_answers)]
    )
    metrics.update(test_scores)
    metrics.update({f"general_{name}": general_scores[name] for name in METRIC_NAMES})
    metrics["general_brand_hallucination_rate"] = brand_hallucination_rate(general_answers, known_brands)
    seconds = sum(p["generation_seconds"] for p in test_preds + val_preds + general_preds)
    metrics["generation_seconds"] = seconds
    metrics["samples_per_second"] = (len(test) + len(val) + len(general)) / seconds if seconds else None
    metrics["per_brand_accuracy"] = per_brand["per_brand_accuracy"]

    write_jsonl(out_dir / "predictions.jsonl", _scored_predictions(test, test_preds, known_brands))
    write_jsonl(out_dir / "val_predictions.jsonl", _scored_predictions(val, val_preds, known_brands))
    write_jsonl(
        out_dir / "general_predictions.jsonl",
        (
            {
                "id": g["id"],
                "reference": g["caption"],
                "prediction": answer,
                "brands_named": named_brands(answer, known_brands),
            }
            for g, answer in zip(general, general_answers)
        ),
    )
    write_json(out_dir / "metrics.json", metrics)
    _log_summary(label, metrics, new)


def _log_summary(label: str, metrics: dict[str, Any], new: int) -> None:
    def fmt(value):
        return "n/a" if value is None else f"{value:.3f}"

    total = metrics["n_test"] + metrics["n_val"] + metrics["n_general"]
    log.info(
        "%s: %d test + %d validation + %d general samples (%d generated now, %d resumed), %.1f samples/s; "
        "brand accuracy %s, macro %s, wrong brand %s, validation brand accuracy %s, test loss %s, CIDEr %s, "
        "general CIDEr %s, brand hallucination on the general set %s",
        label,
        metrics["n_test"],
        metrics["n_val"],
        metrics["n_general"],
        new,
        total - new,
        metrics["samples_per_second"] or 0.0,
        fmt(metrics["brand_accuracy"]),
        fmt(metrics["macro_brand_accuracy"]),
        fmt(metrics["wrong_brand_rate"]),
        fmt(metrics["val_brand_accuracy"]),
        fmt(metrics["test_loss"]),
        fmt(metrics["cider"]),
        fmt(metrics["general_cider"]),
        fmt(metrics["general_brand_hallucination_rate"]),
    )
