"""Benchmark: batched greedy generation (the evaluate stage's path) vs one sample at a time.

    .venv/bin/python benchmarks/evaluate.py                      # a random tiny InternVL, 32 samples
    .venv/bin/python benchmarks/evaluate.py --base models/base   # a saved base model instead
    .venv/bin/python benchmarks/evaluate.py --samples 64 --batch-size 32 --new-tokens 32

Both sides call `brandcap.stages.evaluate.generate_captions` on the same model, images and prompt
(left padding, greedy); only the batch size differs. Every answer is forced to the same
length (min_new_tokens = max_new_tokens) so both do identical work whatever the model emits.
Runs on CUDA when present. Prints samples/s of each and the speedup (aim: >= 4x).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from PIL import Image

from brandcap.config.params import Params, TinyModelParams
from brandcap.model.chat import prompt_text
from brandcap.sim.tiny_model import build_tiny_model
from brandcap.stages.evaluate import default_device, generate_captions, load_model

COLOURS = [(200, 30, 30), (30, 30, 200), (30, 160, 30), (220, 200, 40), (120, 60, 160)]


def build_model(base: Path | None, device: str):
    if base is not None:
        return load_model(base, None, device)
    corpus = [
        f"A {c} leather bag by Brand{i} with a gold strap." for i in range(20) for c in ("red", "blue", "green")
    ] * 10
    model, processor = build_tiny_model(corpus, TinyModelParams(), seed=0)
    return model.to(device).eval(), processor


def timed_generation(
    model, processor, prompt: str, images: list[Image.Image], batch_size: int, new_tokens: int
) -> float:
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        generate_captions(model, processor, prompt, images[start : start + batch_size], new_tokens)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--base", type=Path, default=None, help="a saved model directory; default: a random tiny InternVL"
    )
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=24)
    args = parser.parse_args()

    device = default_device()
    model, processor = build_model(args.base, device)
    model.generation_config.min_new_tokens = args.new_tokens  # equal work on both sides
    side = processor.image_processor.size["height"]
    images = [Image.new("RGB", (side, side), COLOURS[i % len(COLOURS)]) for i in range(args.samples)]
    prompt = prompt_text(processor, Params().train.instruction)

    timed_generation(model, processor, prompt, images[:2], 2, args.new_tokens)  # warm-up (allocations, kernels)
    one_at_a_time = timed_generation(model, processor, prompt, images, 1, args.new_tokens)
    batched = timed_generation(model, processor, prompt, images, args.batch_size, args.new_tokens)

    print(
        f"device: {device} ({torch.cuda.get_device_name() if device == 'cuda' else f'{torch.get_num_threads()} CPU threads'})"
    )
    print(f"{args.samples} samples, {args.new_tokens} new tokens each")
    print(f"one at a time:  {args.samples / one_at_a_time:8.1f} samples/s ({one_at_a_time:.2f} s)")
    print(f"batch size {args.batch_size:3d}:  {args.samples / batched:8.1f} samples/s ({batched:.2f} s)")
    print(f"speedup: {one_at_a_time / batched:.1f}x (aim >= 4x)")


if __name__ == "__main__":
    main()
