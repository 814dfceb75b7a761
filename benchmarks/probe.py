"""Is the brand in a model's image features? A linear probe, after a default run.

    .venv/bin/python benchmarks/probe.py                      # models/base on data/processed (after make run)
    .venv/bin/python benchmarks/probe.py --base models/base --processed data/processed --steps 300
    .venv/bin/python benchmarks/probe.py --base results/export/best   # a fine-tuned model, exported

The pipeline's linear_probe stage runs the same probe on the base model for the tables
(`brandcap.evaluation.linear_probe`); this command points it at any saved model and at every test
item, and prints the probe's train and test accuracy next to the majority brand's, with their ratio.
A probe well above the majority while the fine-tuned models sit at it says the information is in the
features and the fine-tuning does not use it; a probe at the majority says the model does not see the
marks. Seeded; seconds on 2 CPU cores for the default profile.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from brandcap.evaluation.linear_probe import image_features, linear_probe_predictions


def read_split(processed: Path, split: str) -> list[dict]:
    with open(processed / f"{split}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=Path("models/base"))
    parser.add_argument("--processed", type=Path, default=Path("data/processed"))
    parser.add_argument("--steps", type=int, default=300, help="full-batch AdamW steps of the probe")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = AutoModelForImageTextToText.from_pretrained(args.base).eval()
    processor = AutoProcessor.from_pretrained(args.base)
    train, test = read_split(args.processed, "train"), read_split(args.processed, "test")

    def embed(rows: list[dict]):
        return image_features(model, processor, [Image.open(r["image"]).convert("RGB") for r in rows])

    x_train, x_test = embed(train), embed(test)
    guesses, train_acc = linear_probe_predictions(x_train, [r["brand"] for r in train], x_test, steps=args.steps)
    test_acc = sum(g == r["brand"] for g, r in zip(guesses, test)) / len(test)
    majority = Counter(r["brand"] for r in train).most_common(1)[0][0]
    majority_acc = sum(r["brand"] == majority for r in test) / len(test)
    print(
        f"features: {x_train.shape[1]} per image ({args.base}); {len({r['brand'] for r in train})} brands, {len(train)} train / {len(test)} test"
    )
    print(f"linear probe: train {train_acc:.3f}, test {test_acc:.3f}; majority brand on test {majority_acc:.3f}")
    print(f"probe / majority on test: {test_acc / majority_acc:.2f}x")


if __name__ == "__main__":
    main()
