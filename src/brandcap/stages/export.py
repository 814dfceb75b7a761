"""export stage: a checkpoint as a standalone Hugging Face model directory that any server can serve.

    python workflow/scripts/export.py --params params.yaml --base models/base --checkpoints results/checkpoints \\
        --eval-dir results/eval --processed data/processed --out results/export/best --log logs/export.log
    python workflow/scripts/export.py --params params.yaml --base models/base --processed data/processed \\
        --checkpoint results/checkpoints/lora/seed-4/epoch-10 --eval-dir results/eval --out results/export/lora-seed-4-epoch-10

or from Python: `run_export(params, base_dir, processed_dir, out_dir, checkpoints_dir=..., eval_dir=...)`.

Which checkpoint (without `--checkpoint`): the validation-selected best, chosen by the tables stage's
own functions (`brandcap.evaluation.selection`: `load_evaluations`, `best_epoch`, `overall_best`), so the
export is the checkpoint `tables.md` names: the experiment and epoch with the highest validation
brand accuracy (mean over training seeds), and of its seeds the one with the highest validation
brand accuracy at that epoch (equal ones: the first in train.seeds). A tie between experiments,
which tables.md reports as a tie, is exported as the first of them in train.experiments and
the model card says so. When no experiment beats the base model on validation ("no learning"),
the base model is the best on validation, and it is what is exported.

The directory holds the base model with the checkpoint's weights merged into it (a trainable-weights
delta loaded as `brandcap.model.checkpoints.load_for_inference` loads it; a LoRA adapter merged with
peft's `merge_and_unload`), saved with `save_pretrained` in the base model's dtype, with the base's
processor (its chat template and image tiling), so `AutoModelForImageTextToText.from_pretrained(dir)`
and `AutoProcessor.from_pretrained(dir)` load it alone, and `vllm serve dir` serves it. Beside it:
`README.md`, a model card (what was exported and why, the training params, the provenance: commit,
params hash and data hash, `brandcap.running.provenance`; the checkpoint's test and validation metrics; how
to load, prompt and serve it), and `brandcap_export.json`, the same facts for programs, with the
processor arguments a server must pass to tile images as training did (`processor_kwargs`:
InternVL's processor call tiles by default whatever its saved config says). Written atomically:
the directory appears complete or not at all.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from brandcap.config.params import Params
from brandcap.evaluation.selection import BASE, best_epoch, load_evaluations, overall_best, run_dir
from brandcap.files.atomic import read_json, staged_directory, write_json, write_text
from brandcap.model.chat import image_tiling_kwargs
from brandcap.model.checkpoints import load_for_inference, read_checkpoint_meta
from brandcap.running.provenance import provenance

log = logging.getLogger(__name__)

EXPORT_META = "brandcap_export.json"
SERVED_MODEL_NAME = "brandcap-best"  # eval.endpoint.model's default
# metrics.json keys shown in the model card, in order
CARD_METRICS = (
    "brand_accuracy",
    "macro_brand_accuracy",
    "hedged_rate",
    "wrong_brand_rate",
    "val_brand_accuracy",
    "test_loss",
    "cider",
    "general_cider",
    "general_brand_hallucination_rate",
    "n_test",
    "n_val",
)


@dataclass
class ExportChoice:
    """What is exported and why: a checkpoint (or None: the base model), its run, its metrics."""

    checkpoint: Path | None
    experiment: str | None
    seed: int | None
    epoch: int
    reason: str
    metrics: dict[str, Any] | None = field(default=None)


# ----------------------------------------------------------------------------- which checkpoint
def validation_best(params: Params, checkpoints_dir: Path, eval_dir: Path) -> ExportChoice:
    """The validation-selected best checkpoint (the tables stage's selection); see the module docstring."""
    evaluations, per_seed = load_evaluations(params, eval_dir)
    base = evaluations[BASE][0]
    best = {exp: best_epoch(evaluations[exp], base) for exp in params.train.experiments}
    winners = overall_best(evaluations, best)
    if not winners:
        return ExportChoice(
            None,
            None,
            None,
            0,
            "no learning: no experiment beats the base model on validation brand accuracy, "
            "so the base model, the best on validation, is exported",
            base,
        )
    exp, epoch = winners[0], best[winners[0]]
    seeds = list(params.train.seeds)
    seed = min(seeds, key=lambda s: (-(per_seed[exp][s][epoch].get("val_brand_accuracy") or 0.0), seeds.index(s)))
    reason = (
        f"the validation-selected best: experiment {exp}, epoch {epoch} has the highest validation brand accuracy "
        f"({evaluations[exp][epoch]['val_brand_accuracy']:.3f}" + (" mean over seeds" if len(seeds) > 1 else "") + ")"
    )
    if len(winners) > 1:
        reason += (
            f"; a tie with {', '.join(winners[1:])} (tables.md reports it), exported as the first in train.experiments"
        )
    if len(seeds) > 1:
        reason += f"; seed {seed} has the highest validation brand accuracy of its seeds"
    return ExportChoice(
        run_dir(checkpoints_dir, exp, seed, epoch), exp, seed, epoch, reason, per_seed[exp][seed][epoch]
    )


def given_checkpoint(checkpoint_dir: Path, eval_dir: Path | None) -> ExportChoice:
    """An explicitly named checkpoint, with its metrics when the evaluate stage has scored it."""
    meta = read_checkpoint_meta(checkpoint_dir)
    exp, seed, epoch = meta.get("experiment"), meta.get("seed"), meta["epoch"]
    metrics = None
    if eval_dir is not None and exp is not None and seed is not None:
        path = run_dir(eval_dir, exp, seed, epoch) / "metrics.json"
        metrics = read_json(path, f"rerun the evaluate stage for {exp} seed {seed}") if path.exists() else None
    return ExportChoice(
        Path(checkpoint_dir), exp, seed, epoch, f"named explicitly (--checkpoint {checkpoint_dir})", metrics
    )


# ----------------------------------------------------------------------------- the directory
def saved_dtype(model_dir: Path) -> torch.dtype:
    """The dtype a save_pretrained model was stored in (float32 when its config does not say)."""
    config = read_json(Path(model_dir) / "config.json", "rerun the base_model stage")
    name = config.get("dtype") or config.get("torch_dtype") or "float32"
    return getattr(torch, name)


def _trained_params(choice: ExportChoice, params: Params) -> dict[str, Any]:
    """The params the checkpoint was trained with (its own record), or the current ones for the base model."""
    if choice.checkpoint is None:
        return params.model_dump(mode="json")
    return read_checkpoint_meta(choice.checkpoint).get("params") or params.model_dump(mode="json")


def _metric_lines(metrics: dict[str, Any] | None) -> list[str]:
    if not metrics:
        return ["Not evaluated: run the evaluate stage for this checkpoint."]
    lines = ["| metric | value |", "|---|---|"]
    for key in CARD_METRICS:
        value = metrics.get(key)
        shown = "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
        interval = metrics.get(f"{key}_ci")
        lines.append(f"| {key} | {shown}{f' [{interval[0]:.3f}, {interval[1]:.3f}]' if interval else ''} |")
    return lines


def model_card(record: dict[str, Any], trained: dict[str, Any]) -> str:
    """README.md of the exported directory (Hugging Face model card, metadata block first)."""
    choice, prov = record["choice"], record["provenance"]
    run = (
        "the base model"
        if choice["checkpoint"] is None
        else (
            f"experiment `{choice['experiment']}` ({record['strategy']}), training seed {choice['seed']}, epoch {choice['epoch']}"
        )
    )
    processor_kwargs = json.dumps(record["processor_kwargs"])
    train = trained.get("train", {})
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: image-text-to-text",
        "tags: [brandcap]",
        "---",
        "",
        f"# brandcap export: {run}",
        "",
        f"Why this model: {choice['reason']}.",
        "",
        f"- checkpoint: `{choice['checkpoint'] or 'none (the base model)'}`; base model: `{record['base']}` ({trained.get('model', {}).get('base', '?')})",
        f"- merged: {record['merged']}; weights dtype: {record['dtype']}",
        f"- commit `{prov['commit']}`, params sha256 `{prov['params_sha256']}`, data sha256 `{prov['data_sha256']}` (brandcap.running.provenance)",
        "",
        "## Metrics (this checkpoint, the evaluate stage's metrics.json)",
        "",
        *_metric_lines(choice["metrics"]),
        "",
        "## How to ask it",
        "",
        f"One image, then the instruction, in the user turn (the chat template saved here): `{train.get('instruction', '')}`; greedy decoding.",
        "",
        "```python",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "model = AutoModelForImageTextToText.from_pretrained(DIR)",
        "processor = AutoProcessor.from_pretrained(DIR)",
        f"# InternVL's processor call tiles unless told; as in training: processor(text=..., images=..., **{processor_kwargs})",
        "```",
        "",
        "Served by vLLM (OpenAI-compatible), then evaluated by brandcap with `eval.backend: endpoint`:",
        "",
        "```bash",
        f"vllm serve DIR --served-model-name {SERVED_MODEL_NAME} --mm-processor-kwargs '{processor_kwargs}'",
        "```",
        "",
        "## Training parameters (as the checkpoint recorded them)",
        "",
        "```yaml",
        yaml.safe_dump(
            {"train": train, "model": trained.get("model", {})}, sort_keys=False, allow_unicode=True
        ).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def export_model(
    params: Params, base_dir: Path, processed_dir: Path, out_dir: Path, choice: ExportChoice
) -> dict[str, Any]:
    """Write the standalone model directory for `choice` atomically; returns its brandcap_export.json record."""
    dtype = saved_dtype(base_dir)
    model, processor = load_for_inference(base_dir, choice.checkpoint, "cpu", dtype)
    strategy = read_checkpoint_meta(choice.checkpoint)["strategy"] if choice.checkpoint else None
    merged = {
        None: "nothing (the base model)",
        "lora": "LoRA adapter merged into the base (peft merge_and_unload)",
        "full": "the whole fine-tuned model",
    }.get(strategy, "the trained weights loaded into the base")
    record = {
        "choice": {**asdict(choice), "checkpoint": str(choice.checkpoint) if choice.checkpoint else None},
        "strategy": strategy,
        "merged": merged,
        "base": str(base_dir),
        "dtype": str(dtype).removeprefix("torch."),
        "processor_kwargs": image_tiling_kwargs(processor),
        "provenance": provenance(params, processed_dir, written=[out_dir]),
    }
    with staged_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        write_text(tmp / "README.md", model_card(record, _trained_params(choice, params)))
        write_json(tmp / EXPORT_META, record)
    return record


def run_export(
    params: Params,
    base_dir: Path,
    processed_dir: Path,
    out_dir: Path,
    *,
    checkpoint_dir: Path | None = None,
    checkpoints_dir: Path | None = None,
    eval_dir: Path | None = None,
) -> dict[str, Any]:
    """Export `checkpoint_dir`, or without it the validation-selected best (needs checkpoints_dir and eval_dir)."""
    if checkpoint_dir is not None:
        choice = given_checkpoint(Path(checkpoint_dir), eval_dir)
    elif checkpoints_dir is None or eval_dir is None:
        raise ValueError(
            "export: name a checkpoint (--checkpoint results/checkpoints/EXP/seed-S/epoch-N), or give --checkpoints "
            "and --eval-dir to export the validation-selected best"
        )
    else:
        choice = validation_best(params, Path(checkpoints_dir), Path(eval_dir))
    record = export_model(params, Path(base_dir), Path(processed_dir), Path(out_dir), choice)
    accuracy = (choice.metrics or {}).get("brand_accuracy")
    log.info(
        "export: %s (%s) -> %s; test brand accuracy %s; serve it with: vllm serve %s --served-model-name %s",
        choice.checkpoint or "the base model",
        choice.reason,
        out_dir,
        "n/a" if accuracy is None else f"{accuracy:.3f}",
        out_dir,
        SERVED_MODEL_NAME,
    )
    return record
