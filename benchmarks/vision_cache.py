"""The train stage with and without the frozen vision tower cache (train.frozen_vision_cache_mb), on the
default profile's tiny model and image size, interleaved so machine load hits both alike.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vision_cache.py                 # freeze_vision and lora, 240 samples
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vision_cache.py --samples 480 --rounds 3

Prints each run's wall time (the stage's summary.json: building the cache included) and the
median ratio cached / uncached per strategy (tests/test_train.py checks both train the same weights).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from brandcap.config.params import TinyModelParams, validate_params
from brandcap.sim.tiny_model import build_tiny_model
from brandcap.stages.train import run_train

BRANDS = ["Gucci", "Prada", "Celine", "Loewe", "Balenciaga", "Valentino"]


def make_workdir(root: Path, samples: int) -> None:
    rng = np.random.default_rng(0)
    corpus = [f"A red bag by {b}, with a small logo and fine stitching." for b in BRANDS] * 20
    model, processor = build_tiny_model(corpus, TinyModelParams(), seed=0)
    model.save_pretrained(root / "base")
    processor.save_pretrained(root / "base")
    (root / "images").mkdir()
    records = []
    for i in range(samples):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(root / "images" / f"p{i}.png")
        records.append(
            {
                "product_id": f"p{i}",
                "image": f"images/p{i}.png",
                "brand": BRANDS[i % len(BRANDS)],
                "caption": corpus[i % len(corpus)] * 3,
            }
        )
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def train_once(root: Path, experiment: str, cache_mb: int, tag: str, epochs: int) -> tuple[float, dict]:
    params = validate_params({"train": {"epochs": epochs, "save_epochs": [epochs], "frozen_vision_cache_mb": cache_mb}})
    out = root / f"{experiment}-{tag}"
    run_train(
        params,
        experiment,
        params.train.seeds[0],
        root / "base",
        Path("train.jsonl"),
        out / "ckpt",
        out / "log",
        out / "dvclive",
        out / "resume",
    )
    summary = json.loads((out / "log" / "summary.json").read_text())
    return summary["wall_time_s"], summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=240)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--experiments", nargs="+", default=["freeze_vision", "lora"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vision-cache-bench-") as tmp:
        root = Path(tmp)
        make_workdir(root, args.samples)
        os.chdir(root)
        for experiment in args.experiments:
            ratios = []
            for r in range(args.rounds):
                order = [("cached", 4096), ("uncached", 0)] if r % 2 == 0 else [("uncached", 0), ("cached", 4096)]
                times = {tag: train_once(root, experiment, mb, f"{tag}{r}", args.epochs)[0] for tag, mb in order}
                ratios.append(times["cached"] / times["uncached"])
                print(
                    f"{experiment} round {r}: cached {times['cached']:.1f} s, uncached {times['uncached']:.1f} s, ratio {ratios[-1]:.2f}",
                    flush=True,
                )
            print(
                f"{experiment}: median ratio cached/uncached {statistics.median(ratios):.2f} "
                f"({args.samples} samples x {args.epochs} epochs, torch threads {torch.get_num_threads()})"
            )


if __name__ == "__main__":
    main()
