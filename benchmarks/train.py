"""Throughput of the train stage's path (collation + Hugging Face Trainer) against a bare PyTorch loop.

    .venv/bin/python benchmarks/train.py                                  # tiny model, CPU or GPU
    .venv/bin/python benchmarks/train.py --arch internvl3-1b --steps 20   # real InternVL3-1B sizes (GPU)
    .venv/bin/python benchmarks/train.py --arch internvl3-1b --steps 2 --per-device-batch 1 --batch-size 1  # CPU
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train.py --tiling-report   # tiling off/on: tokens, s/sample, seed004 estimate

For each strategy, the same model (same weights, same freezing) is trained for --steps optimizer
steps twice: once through the stage's own pieces (CaptionDataset reading PNGs, CaptionCollator,
the stage's TrainingArguments and DeltaTrainer) and once by a bare loop (AdamW, autocast, clipping,
accumulation) over batches collated beforehand; the bare loop runs before and after the stage
and its mean is used, so a drift in machine load shows up as a before/after gap. Prints samples/s of both, their ratio
(aim >= 0.8) and the peak CUDA memory of the Trainer run. The model is randomly initialised:
throughput does not depend on the weights. `--arch internvl3-1b` uses InternVL3-1B's sizes
(InternViT-300M 448px + Qwen2.5-0.5B, 256 image tokens per image).

`--tiling-report` is a separate mode for the real 1B shape (see `tiling_report`): tiles and tokens
per photo shape with image tiling off / max_tiles 6 / max_tiles 12, counted through
`brandcap.model.chat.encode_prompts` with a processor of the real settings (448 px tiles, 256 tokens
each); seconds per training sample measured in parts on this machine (the whole 1B model does
not fit a small CPU box's memory at 13 tiles); the analytic FLOPs of seed004's InternVL3-2B per
sample; and the resulting wall time of seed004 on 1 and 8 GPUs under stated assumptions.

On a shared CPU, two intra-op threads make timings swing several-fold with the neighbours' load;
`OMP_NUM_THREADS=1` gives stable CPU numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import InternVLConfig, InternVLForConditionalGeneration, Qwen2Config, TrainerCallback
from transformers.models.internvl.modeling_internvl import InternVLVisionLayer
from transformers.trainer_utils import SaveStrategy

from brandcap.config.params import ImageTilingParams, TinyModelParams, validate_params
from brandcap.model.chat import answer_text, encode_prompts
from brandcap.model.strategies import apply_strategy, count_parameters
from brandcap.model.training_data import CaptionCollator, CaptionDataset
from brandcap.sim.tiny_model import build_config, build_processor, train_tokenizer
from brandcap.stages.train import DeltaTrainer, resolve_precision, training_arguments

BRANDS = ["Gucci", "Prada", "Celine", "Loewe", "Balenciaga", "Bottega Veneta", "Saint Laurent", "Valentino"]
COLOURS = ["red", "black", "ivory", "navy", "green", "camel"]
KINDS = ["tote bag", "sneaker", "wool coat", "silk scarf", "leather belt"]


def caption(i: int) -> str:
    b, c, k = BRANDS[i % len(BRANDS)], COLOURS[i % len(COLOURS)], KINDS[i % len(KINDS)]
    return (
        f"A {c} {k} by {b}, photographed on a plain white background. The {k} has clean lines, "
        f"fine stitching and a small {b} logo; the {c} colour is even across the whole product."
    )


def internvl3_1b_config(tokenizer) -> InternVLConfig:
    """InternVL3-1B's architecture numbers (OpenGVLab/InternVL3-1B-hf) with our tokenizer's special ids."""
    text = Qwen2Config(
        vocab_size=151674,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=448,
        patch_size=14,
        norm_type="layer_norm",
        use_qk_norm=False,
        layer_scale_init_value=0.1,
    )
    return InternVLConfig(
        vision_config=vision,
        text_config=text.to_dict(),
        downsample_ratio=0.5,
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=256,
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
        lines.append(
            json.dumps(
                {"product_id": f"p{i}", "image": str(path), "brand": BRANDS[i % len(BRANDS)], "caption": caption(i)}
            )
        )
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
        model=model,
        args=args,
        train_dataset=CaptionDataset(train_jsonl),
        data_collator=CaptionCollator(processor, params.train.instruction, params.train.max_length),
        callbacks=[timer],
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
            batch = {
                k: v.to(device, non_blocking=True)
                for k, v in batches[(step * accumulation + micro) % len(batches)].items()
            }
            with autocast:
                loss = model(**batch).loss / accumulation
            loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, params.train.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync()
    return steps * params.train.batch_size / (time.perf_counter() - start)


# ----------------------------------------------------------------------------- tiling report (real 1B shape)
PHOTO_SHAPES = {  # (width, height); download.max_side 448 keeps photos within one tile's pixels
    "square 448x448": (448, 448),
    "portrait 336x448": (336, 448),
    "landscape 448x336": (448, 336),
    "tall 252x448": (252, 448),
}
TILINGS = {
    "off": ImageTilingParams(enabled=False),
    "max_tiles 6": ImageTilingParams(enabled=True, max_tiles=6),
    "max_tiles 12": ImageTilingParams(enabled=True, max_tiles=12),
}
REAL_TILES = TinyModelParams(image_size=448, patch_size=14)  # the real processor: 448 px tiles, 256 tokens each
CAPTION_TOKENS = 200  # caption.max_tokens: the longest answer seed004's captioner writes
MEASURED_SHAPE = "portrait 336x448"  # timed on this machine: the shape that tiles most (12 + thumbnail)
TIMED_TILINGS = ("off", "max_tiles 12")  # each part timed twice (the faster counts): a shared CPU's load swings
HEAD_CHUNK = 256  # LM head + loss timed on this many tokens, scaled per token (full logits of 3.5k tokens: ~2 GB)

# seed004 (configs/seed004.yaml) and the GPU assumptions of its wall-time estimate
SEED004_TRAIN_SAMPLES = 12_000  # after the brand filter (brands with > 100 samples)
SEED004_EPOCHS = 20
SEED004_TEST_ITEMS = 600
SEED004_MODELS_EVALUATED = 5  # checkpoints at epochs 5/10/15/20 + the base model
SEED004_EVAL_BATCH = 16
SEED004_NEW_TOKENS = 200
EIGHT_GPU_SPEEDUP = 7.0  # DDP / ZeRO-2 over 8 GPUs on one node
DECODE_STEP_S = 0.03  # one greedy step of a batch of 16 under HF generate: launch-bound for a 2B model, not FLOP-bound


@dataclass(frozen=True)
class PromptTokens:
    shape: str
    tiles: int
    image_tokens: int
    prompt_tokens: int
    sample_tokens: int  # prompt + answer (caption + end-of-turn token)


def prompt_token_counts(processor, instruction: str, caption_tokens: int, shapes=PHOTO_SHAPES) -> list[PromptTokens]:
    """Tiles and tokens of one training sample per photo shape, through the stages' own encoding."""
    end_tokens = len(processor.tokenizer(answer_text(processor, ""), add_special_tokens=False)["input_ids"])
    rows = []
    for shape, size in shapes.items():
        encoded = encode_prompts(processor, instruction, [Image.new("RGB", size)])
        ids = list(encoded["input_ids"][0])
        image_tokens = ids.count(processor.image_token_id)
        rows.append(
            PromptTokens(
                shape, len(encoded["pixel_values"]), image_tokens, len(ids), len(ids) + caption_tokens + end_tokens
            )
        )
    return rows


@dataclass(frozen=True)
class Tower:
    """A transformer stack's sizes, for counting its matmul FLOPs."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    gated_mlp: bool

    def forward_flops(self, sequences: int, length: int, causal: bool) -> float:
        head_dim = self.hidden // self.heads
        attention_weights = self.hidden * head_dim * 2 * (self.heads + self.kv_heads)  # q, o + k, v
        mlp_weights = (3 if self.gated_mlp else 2) * self.hidden * self.intermediate
        tokens = sequences * length
        scores = 4 * tokens * length * self.hidden * (0.5 if causal else 1.0)  # QK^T and AV (causal: half)
        return self.layers * (2 * tokens * (attention_weights + mlp_weights) + scores)


INTERNVIT_300M = Tower(layers=24, hidden=1024, intermediate=4096, heads=16, kv_heads=16, gated_mlp=False)
QWEN25_0_5B = Tower(
    layers=24, hidden=896, intermediate=4864, heads=14, kv_heads=2, gated_mlp=True
)  # InternVL3-1B's LLM
QWEN25_1_5B = Tower(
    layers=28, hidden=1536, intermediate=8960, heads=12, kv_heads=2, gated_mlp=True
)  # InternVL3-2B's LLM
VOCAB = 151_674
VISION_TOKENS_PER_TILE = 1025  # 32 x 32 patches of 14 px + the class token
IMAGE_TOKENS_PER_TILE = 256  # after the 0.5 pixel shuffle


def training_flops(
    tiles: int, seq_len: int, vision: Tower = INTERNVIT_300M, text: Tower = QWEN25_1_5B, checkpointing: bool = True
) -> dict[str, float]:
    """FLOPs of one freeze_llm training sample. The vision tower + projector are trained (forward,
    input and weight gradients: ~3 forwards); the frozen LLM still runs forward and input gradients
    (~2 forwards), since the image tokens' gradient flows back through every layer; gradient
    checkpointing recomputes each layer's forward once more. The LM head is not checkpointed."""
    recompute = 1 if checkpointing else 0
    projector = 2 * tiles * IMAGE_TOKENS_PER_TILE * (4 * vision.hidden * text.hidden + text.hidden**2)
    vision_forward = vision.forward_flops(tiles, VISION_TOKENS_PER_TILE, causal=False) + projector
    return {
        "vision": (3 + recompute) * vision_forward,
        "llm": (2 + recompute) * text.forward_flops(1, seq_len, causal=True),
        "head": 2 * 2 * seq_len * text.hidden * VOCAB,
    }


def prefill_flops(tiles: int, prompt_len: int, vision: Tower = INTERNVIT_300M, text: Tower = QWEN25_1_5B) -> float:
    """One evaluation prompt's forward (generation keeps the logits of its last token only)."""
    return vision.forward_flops(tiles, VISION_TOKENS_PER_TILE, causal=False) + text.forward_flops(
        1, prompt_len, causal=True
    )


def seed004_hours(tokens: PromptTokens, sustained_flops: float) -> dict[str, float]:
    """Estimated GPU hours of seed004's train and evaluate stages (one GPU; see EIGHT_GPU_SPEEDUP)."""
    train = SEED004_TRAIN_SAMPLES * SEED004_EPOCHS * sum(training_flops(tokens.tiles, tokens.sample_tokens).values())
    batches = math.ceil(SEED004_TEST_ITEMS / SEED004_EVAL_BATCH)
    prompts = SEED004_TEST_ITEMS * prefill_flops(tokens.tiles, tokens.prompt_tokens)
    test_loss = SEED004_TEST_ITEMS * prefill_flops(tokens.tiles, tokens.sample_tokens)
    one_eval = batches * SEED004_NEW_TOKENS * DECODE_STEP_S + (prompts + test_loss) / sustained_flops
    return {
        "train": train / sustained_flops / 3600,
        "eval": SEED004_MODELS_EVALUATED * one_eval / 3600,
        "one_eval": one_eval / 3600,
    }


def timed(step, repeats: int = 1) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


class PartsOf1B:
    """InternVL3-1B's pieces, each once, timed forward + backward as in freeze_llm training: the
    vision tower's front (patch embedding, pixel shuffle, projector) and one vision layer with weight
    gradients; one frozen LLM layer and the frozen LM head + loss with input gradients only. A sample
    costs front + 24 vision layers + 24 LLM layers + head; the whole model (~4 GB of fp32 weights, GBs of
    activations at 13 tiles) never has to fit in memory."""

    def __init__(self, tokenizer):
        config = internvl3_1b_config(tokenizer)
        self.vision_layers, self.text_layers = (
            config.vision_config.num_hidden_layers,
            config.text_config.num_hidden_layers,
        )
        config.vision_config.num_hidden_layers, config.text_config.num_hidden_layers = 0, 1
        torch.manual_seed(0)
        self.model = InternVLForConditionalGeneration(config)
        self.model.model.language_model.requires_grad_(False)
        self.model.lm_head.requires_grad_(False)
        self.vision_layer = InternVLVisionLayer(config.vision_config)
        self.config = config

    def vision_seconds(self, tiles: int) -> float:
        pixels = torch.randn(tiles, 3, REAL_TILES.image_size, REAL_TILES.image_size)
        hidden = torch.randn(tiles, VISION_TOKENS_PER_TILE, self.config.vision_config.hidden_size)
        front = timed(
            lambda: self.model.model.get_image_features(pixel_values=pixels).pooler_output.sum().backward(), repeats=2
        )
        layer = timed(lambda: self.vision_layer(hidden).sum().backward(), repeats=2)
        self.model.zero_grad(set_to_none=True)
        self.vision_layer.zero_grad(set_to_none=True)
        return front + self.vision_layers * layer

    def llm_seconds(self, seq_len: int) -> float:
        embeds = torch.randn(1, seq_len, self.config.text_config.hidden_size, requires_grad=True)
        language_model = self.model.model.language_model
        return self.text_layers * timed(
            lambda: language_model(inputs_embeds=embeds).last_hidden_state.sum().backward(), repeats=2
        )

    def head_seconds(self, seq_len: int) -> float:
        hidden = torch.randn(HEAD_CHUNK, self.config.text_config.hidden_size, requires_grad=True)
        labels = torch.randint(0, self.config.text_config.vocab_size, (HEAD_CHUNK,))
        step = lambda: torch.nn.functional.cross_entropy(self.model.lm_head(hidden), labels).backward()  # noqa: E731
        return timed(step, repeats=2) * seq_len / HEAD_CHUNK


def collate_seconds(processor, instruction: str, size: tuple[int, int], repeats: int = 5) -> float:
    """The train stage's collation (processor path, tiling included) of one photo, per sample."""
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    collate = CaptionCollator(processor, instruction, max_length=8192)
    return timed(lambda: collate([{"image": photo, "caption": caption(0)}]), repeats)


def measured_row(rows: list[PromptTokens]) -> PromptTokens:
    return next(row for row in rows if row.shape == MEASURED_SHAPE)


def print_token_table(tokens: dict[str, list[PromptTokens]]) -> None:
    print(
        f"\nTokens per training sample (real processor: 448 px tiles x 256 tokens; a {CAPTION_TOKENS}-token caption; "
        "prompt text from this benchmark's tokenizer, within a few tokens of Qwen2.5's)"
    )
    print(f"{'photo':<20}{'tiling':<14}{'tiles':>6}{'image tokens':>14}{'prompt':>8}{'prompt+answer':>15}")
    for tiling, rows in tokens.items():
        for row in rows:
            print(
                f"{row.shape:<20}{tiling:<14}{row.tiles:>6}{row.image_tokens:>14,}{row.prompt_tokens:>8,}{row.sample_tokens:>15,}"
            )


def print_cpu_seconds(processor_of, tokens: dict[str, list[PromptTokens]], instruction: str) -> dict[str, float]:
    parts = PartsOf1B(processor_of["off"].tokenizer)
    parts.vision_seconds(1)  # warm-up: kernels, allocator
    print(
        f"\nSeconds per training sample on this CPU ({torch.get_num_threads()} threads, fp32, no gradient checkpointing), "
        f"InternVL3-1B shape, freeze_llm, {MEASURED_SHAPE} photo; measured per part, scaled to 24 + 24 layers"
    )
    print(
        f"{'tiling':<14}{'tiles':>6}{'tokens':>8}{'collate':>9}{'vision':>9}{'LLM':>9}{'head':>8}{'total':>9}{'x off':>7}"
        f"{'FLOP x off':>12}  (analytic ratio, same shape and setting)"
    )
    totals, flops = {}, {}
    for tiling in TIMED_TILINGS:
        row = measured_row(tokens[tiling])
        flops[tiling] = sum(
            training_flops(row.tiles, row.sample_tokens, text=QWEN25_0_5B, checkpointing=False).values()
        )
        collate = collate_seconds(processor_of[tiling], instruction, PHOTO_SHAPES[MEASURED_SHAPE])
        vision, llm, head = (
            parts.vision_seconds(row.tiles),
            parts.llm_seconds(row.sample_tokens),
            parts.head_seconds(row.sample_tokens),
        )
        totals[tiling] = vision + llm + head
        print(
            f"{tiling:<14}{row.tiles:>6}{row.sample_tokens:>8,}{collate:>9.3f}{vision:>9.1f}{llm:>9.1f}{head:>8.1f}"
            f"{totals[tiling]:>9.1f}{totals[tiling] / totals['off']:>7.1f}{flops[tiling] / flops['off']:>12.1f}"
        )
    return totals


def print_seed004_estimate(tokens: dict[str, list[PromptTokens]], peak_tflops: float, utilisation: float) -> None:
    sustained = peak_tflops * 1e12 * utilisation
    print(
        f"\nseed004 estimate (InternVL3-2B = InternViT-300M + Qwen2.5-1.5B, freeze_llm, gradient checkpointing, bf16; "
        f"{peak_tflops:.0f} TFLOP/s peak x {utilisation:.0%} = {sustained / 1e12:.0f} TFLOP/s sustained; "
        f"{SEED004_TRAIN_SAMPLES:,} samples x {SEED004_EPOCHS} epochs; {SEED004_MODELS_EVALUATED} evaluations of "
        f"{SEED004_TEST_ITEMS} items x {SEED004_NEW_TOKENS} new tokens at {DECODE_STEP_S * 1000:.0f} ms per step of "
        f"{SEED004_EVAL_BATCH}; 8 GPUs = {EIGHT_GPU_SPEEDUP:g}x one for training, the 5 evaluations in parallel; "
        f"{MEASURED_SHAPE} photos)"
    )
    print(
        f"{'tiling':<14}{'TFLOP/sample':>13}{'train 1 GPU h':>15}{'eval 1 GPU h':>14}{'total 1 GPU h':>15}"
        f"{'train 8 GPUs h':>16}{'eval 8 GPUs h':>15}{'total 8 GPUs h':>16}"
    )
    for tiling, rows in tokens.items():
        row = measured_row(rows)
        flops = sum(training_flops(row.tiles, row.sample_tokens).values())
        hours = seed004_hours(row, sustained)
        train8, eval8 = hours["train"] / EIGHT_GPU_SPEEDUP, hours["one_eval"]
        print(
            f"{tiling:<14}{flops / 1e12:>13.1f}{hours['train']:>15.1f}{hours['eval']:>14.1f}{hours['train'] + hours['eval']:>15.1f}"
            f"{train8:>16.2f}{eval8:>15.2f}{train8 + eval8:>16.2f}"
        )


def tiling_report(peak_tflops: float, utilisation: float, measure: bool) -> None:
    instruction = validate_params({}).train.instruction
    tokenizer = train_tokenizer([caption(i) for i in range(200)], 1200)
    processor_of = {name: build_processor(tokenizer, REAL_TILES, tiling) for name, tiling in TILINGS.items()}
    tokens = {
        name: prompt_token_counts(processor, instruction, CAPTION_TOKENS) for name, processor in processor_of.items()
    }
    print_token_table(tokens)
    if measure:
        print_cpu_seconds(processor_of, tokens, instruction)
    print_seed004_estimate(tokens, peak_tflops, utilisation)
    print(
        f"\npeak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["tiny", "internvl3-1b"], default="tiny")
    parser.add_argument("--strategies", default="freeze_llm,freeze_vision,lora")
    parser.add_argument(
        "--steps", type=int, default=None, help="optimizer steps per measurement (default 30 tiny, 20 internvl3-1b)"
    )
    parser.add_argument("--per-device-batch", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="effective batch (accumulation makes up the rest)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the Trainer path")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument(
        "--tiling-report",
        action="store_true",
        help="tokens, s/sample and the seed004 estimate with tiling off/on (real 1B shape), then exit",
    )
    parser.add_argument(
        "--no-timing", action="store_true", help="with --tiling-report: counts and estimate only, no CPU timing"
    )
    parser.add_argument(
        "--gpu-peak-tflops", type=float, default=989.0, help="bf16 dense peak of one GPU (H100 SXM: 989)"
    )
    parser.add_argument("--gpu-utilisation", type=float, default=0.35, help="sustained fraction of the peak (MFU)")
    opts = parser.parse_args()
    if opts.tiling_report:
        tiling_report(opts.gpu_peak_tflops, opts.gpu_utilisation, measure=not opts.no_timing)
        return
    big = opts.arch == "internvl3-1b"
    steps = opts.steps or (20 if big else 30)
    per_device = opts.per_device_batch or (8 if big else 16)
    batch_size = opts.batch_size or per_device
    params = validate_params(
        {
            "train": {
                "batch_size": batch_size,
                "per_device_batch_size": per_device,
                "learning_rate": 1e-4,
                "warmup_ratio": 0.0,
                "max_length": 512 if big else 256,
                "dataloader_workers": opts.workers,
                "gradient_checkpointing": opts.gradient_checkpointing,
            }
        }
    )
    accumulation = batch_size // per_device
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(
        f"arch {opts.arch} on {device}, precision {resolve_precision('auto')}, batch {batch_size} "
        f"(= {per_device} x {accumulation} accumulation), {steps} steps per measurement"
    )
    print(
        f"{'strategy':<15}{'trainable':>14}{'total':>14}{'stage samples/s':>17}{'bare samples/s':>16}{'ratio':>7}{'peak GB':>9}"
    )
    base, processor, side = build(opts.arch, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n_samples = max(steps * batch_size, 2 * batch_size)
        train_jsonl = write_dataset(tmp, min(n_samples, 512), side)
        collate = CaptionCollator(processor, params.train.instruction, params.train.max_length)
        dataset = CaptionDataset(train_jsonl)
        batches = [
            collate([dataset[(i * per_device + j) % len(dataset)] for j in range(per_device)])
            for i in range(min(steps * accumulation, 16))
        ]
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
            print(
                f"{strategy:<15}{trainable:>14,}{total:>14,}{stage:>17.3g}{bare:>16.3g}{stage / bare:>7.2f}{peak:>9.2f}"
                f"   (bare before/after: {bare_before:.3g}/{bare_after:.3g})"
            )
            if strategy == "lora":
                base = model.unload()  # back to the plain model for the next strategy
            model = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
