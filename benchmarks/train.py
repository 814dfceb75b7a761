"""Throughput of the train stage's path (collation + Hugging Face Trainer) against a bare PyTorch loop.

    .venv/bin/python benchmarks/train.py                                  # tiny model, CPU or GPU
    .venv/bin/python benchmarks/train.py --arch internvl3-1b --steps 20   # real InternVL3-1B sizes (GPU)
    .venv/bin/python benchmarks/train.py --arch internvl3-1b --steps 2 --per-device-batch 1 --batch-size 1  # CPU

For each strategy, the same model (same weights, same freezing) is trained for --steps optimizer
steps twice: once through the stage's own pieces (CaptionDataset reading PNGs, CaptionCollator,
the stage's TrainingArguments and DeltaTrainer) and once by a bare loop (AdamW, autocast, clipping,
accumulation) over batches collated beforehand; the bare loop runs before and after the stage
and its mean is used, so a drift in machine load shows up as a before/after gap. Prints samples/s of both, their ratio
(aim >= 0.8) and the peak CUDA memory of the Trainer run. The model is randomly initialised:
throughput does not depend on the weights. `--arch internvl3-1b` uses InternVL3-1B's sizes
(InternViT-300M 448px + Qwen2.5-0.5B, 256 image tokens per image).

On a shared CPU, two intra-op threads make timings swing several-fold with the neighbours' load;
`OMP_NUM_THREADS=1` gives stable CPU numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import InternVLConfig, InternVLForConditionalGeneration, Qwen2Config, TrainerCallback
from transformers.trainer_utils import SaveStrategy

from brandcap.params import TinyModelParams, validate_params
from brandcap.strategies import apply_strategy, count_parameters
from brandcap.tiny_model import build_config, build_processor, train_tokenizer
from brandcap.train import DeltaTrainer, resolve_precision, training_arguments
from brandcap.training_data import CaptionCollator, CaptionDataset

BRANDS = ["Gucci", "Prada", "Celine", "Loewe", "Balenciaga", "Bottega Veneta", "Saint Laurent", "Valentino"]
COLOURS = ["red", "black", "ivory", "navy", "green", "camel"]
KINDS = ["tote bag", "sneaker", "wool coat", "silk scarf", "leather belt"]


def caption(i: int) -> str:
    b, c, k = BRANDS[i % len(BRANDS)], COLOURS[i % len(COLOURS)], KINDS[i % len(KINDS)]
    return (f"A {c} {k} by {b}, photographed on a plain white background. The {k} has clean lines, "
            f"fine stitching and a small {b} logo; the {c} colour is even across the whole product.")


def internvl3_1b_config(tokenizer) -> InternVLConfig:
    """InternVL3-1B's architecture numbers (OpenGVLab/InternVL3-1B-hf) with our tokenizer's special ids."""
    text = Qwen2Config(
        vocab_size=151674, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
        rope_theta=1_000_000.0, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=448, patch_size=14, norm_type="layer_norm", use_qk_norm=False, layer_scale_init_value=0.1,
    )
    return InternVLConfig(
        vision_config=vision, text_config=text.to_dict(), downsample_ratio=0.5,
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=256,
    )


def build(arch: str, seed: int):
    corpus = [caption(i) for i in range(200)]
    if arch == "tiny":
        tiny = TinyModelParams()
        tokenizer = train_tokenizer(corpus, tiny.vocab_size)
        config = build_config(tokenizer, tiny)
    else:
        tiny = TinyModelParams(image_size=448, patch_size=14)  # only for the processor: 448 px, 256 tokens
        tokenizer = train_tokenizer(corpus, 1200)
        config = internvl3_1b_config(tokenizer)
    processor = build_processor(tokenizer, tiny)
    torch.manual_seed(seed)
    with torch.device("cpu"):
        model = InternVLForConditionalGeneration(config)
    return model, processor, tiny.image_size


def write_dataset(root: Path, n: int, side: int) -> Path:
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        pixels = np.clip(rng.normal(128, 40, (side, side, 3)), 0, 255).astype(np.uint8)
        path = root / f"p{i}.png"
        Image.fromarray(pixels).save(path)
        lines.append(json.dumps({"product_id": f"p{i}", "image": str(path), "brand": BRANDS[i % len(BRANDS)], "caption": caption(i)}))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root / "train.jsonl"


class Timer(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        _sync()
        self.start = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        _sync()
        self.seconds = time.perf_counter() - self.start


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def trainer_run(model, processor, params, train_jsonl, steps, out_dir):
    args = training_arguments(params.train, params.train.learning_rate, params.seed, out_dir, resolve_precision("auto"))
    args.max_steps = steps
    args.save_strategy = SaveStrategy.NO
    args.disable_tqdm = True
    args.logging_steps = max(steps, 1)
    timer = Timer()
    trainer = DeltaTrainer(
        model=model, args=args, train_dataset=CaptionDataset(train_jsonl),
        data_collator=CaptionCollator(processor, params.train.instruction, params.train.max_length), callbacks=[timer],
    )
    trainer.train()
    return steps * params.train.batch_size / timer.seconds


def bare_run(model, batches, params, steps, accumulation):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = resolve_precision("auto")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    model.to(device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.train.learning_rate, weight_decay=params.train.weight_decay)
    _sync()
    start = time.perf_counter()
    for step in range(steps):
        for micro in range(accumulation):
            batch = {k: v.to(device, non_blocking=True) for k, v in batches[(step * accumulation + micro) % len(batches)].items()}
            with autocast:
                loss = model(**batch).loss / accumulation
            loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, params.train.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync()
    return steps * params.train.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["tiny", "internvl3-1b"], default="tiny")
    parser.add_argument("--strategies", default="freeze_llm,freeze_vision,lora")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per measurement (default 30 tiny, 20 internvl3-1b)")
    parser.add_argument("--per-device-batch", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="effective batch (accumulation makes up the rest)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the Trainer path")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    opts = parser.parse_args()
    big = opts.arch == "internvl3-1b"
    steps = opts.steps or (20 if big else 30)
    per_device = opts.per_device_batch or (8 if big else 16)
    batch_size = opts.batch_size or per_device
    params = validate_params({"train": {
        "batch_size": batch_size, "per_device_batch_size": per_device, "learning_rate": 1e-4, "warmup_ratio": 0.0,
        "max_length": 512 if big else 256, "dataloader_workers": opts.workers,
        "gradient_checkpointing": opts.gradient_checkpointing,
    }})
    accumulation = batch_size // per_device
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"arch {opts.arch} on {device}, precision {resolve_precision('auto')}, batch {batch_size} "
          f"(= {per_device} x {accumulation} accumulation), {steps} steps per measurement")
    print(f"{'strategy':<15}{'trainable':>14}{'total':>14}{'stage samples/s':>17}{'bare samples/s':>16}{'ratio':>7}{'peak GB':>9}")
    base, processor, side = build(opts.arch, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n_samples = max(steps * batch_size, 2 * batch_size)
        train_jsonl = write_dataset(tmp, min(n_samples, 512), side)
        collate = CaptionCollator(processor, params.train.instruction, params.train.max_length)
        dataset = CaptionDataset(train_jsonl)
        batches = [collate([dataset[(i * per_device + j) % len(dataset)] for j in range(per_device)]) for i in range(min(steps * accumulation, 16))]
        base_state = {k: v.clone() for k, v in base.state_dict().items()}
        for strategy in opts.strategies.split(","):
            base.load_state_dict(base_state)
            model = apply_strategy(base, strategy, params.train.lora)
            trainable, total = count_parameters(model)
            bare_run(model, batches, params, 2, accumulation)  # warm-up: kernels, allocator
            # bare, stage, bare: the mean of the two bare runs cancels slow drifts of a shared machine
            bare_before = bare_run(model, batches, params, steps, accumulation)
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            stage = trainer_run(model, processor, params, train_jsonl, steps, tmp / f"out-{strategy}")
            peak = torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else math.nan
            bare_after = bare_run(model, batches, params, steps, accumulation)
            bare = (bare_before + bare_after) / 2
            print(f"{strategy:<15}{trainable:>14,}{total:>14,}{stage:>17.3g}{bare:>16.3g}{stage / bare:>7.2f}{peak:>9.2f}"
                  f"   (bare before/after: {bare_before:.3g}/{bare_after:.3g})")
            if strategy == "lora":
                base = model.unload()  # back to the plain model for the next strategy
            model = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
