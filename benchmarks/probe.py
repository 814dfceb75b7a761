"""Is the brand in the base model's image features? A linear probe, after a default run.

    .venv/bin/python benchmarks/probe.py                      # models/base on data/processed (after make run)
    .venv/bin/python benchmarks/probe.py --base models/base --processed data/processed --steps 300

Embeds every train and test image with the base model's vision tower and projector
(`get_image_features`: the image tokens the language model reads), standardises the features
on the training set and fits a linear classifier (AdamW, full batch) from them to the brand.
Prints train and test accuracy next to the majority brand's test accuracy. A probe well above the
majority while the fine-tuned models sit at it says the information is in the features and the
fine-tuning does not use it; a probe at the majority says the base model does not see the marks.
Seeded; about a minute on 2 CPU cores for the default profile.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor


def read_split(processed: Path, split: str) -> list[dict]:
    with open(processed / f"{split}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def image_features(model, processor, rows: list[dict], batch_size: int = 64) -> torch.Tensor:
    out = []
    for i in range(0, len(rows), batch_size):
        images = [Image.open(r["image"]).convert("RGB") for r in rows[i : i + batch_size]]
        pixel_values = processor.image_processor(images, return_tensors="pt")["pixel_values"].to(model.dtype)
        with torch.no_grad():
            features = model.model.get_image_features(pixel_values=pixel_values)
        features = getattr(features, "pooler_output", features)
        out.append(torch.as_tensor(features).reshape(len(images), -1).float())
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=Path("models/base"))
    parser.add_argument("--processed", type=Path, default=Path("data/processed"))
    parser.add_argument("--steps", type=int, default=300, help="full-batch AdamW steps of the probe")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(args.base).eval()
    processor = AutoProcessor.from_pretrained(args.base)
    train, test = read_split(args.processed, "train"), read_split(args.processed, "test")
    brands = sorted({r["brand"] for r in train})
    index = {b: i for i, b in enumerate(brands)}
    x_train, x_test = image_features(model, processor, train), image_features(model, processor, test)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    y_train = torch.tensor([index[r["brand"]] for r in train])
    y_test = torch.tensor([index.get(r["brand"], -1) for r in test])
    probe = torch.nn.Linear(x_train.shape[1], len(brands))
    optimiser = torch.optim.AdamW(probe.parameters(), lr=1e-2, weight_decay=1e-2)
    for _ in range(args.steps):
        loss = torch.nn.functional.cross_entropy(probe(x_train), y_train)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        train_acc = (probe(x_train).argmax(1) == y_train).float().mean().item()
        test_acc = (probe(x_test).argmax(1) == y_test).float().mean().item()
    majority = Counter(r["brand"] for r in train).most_common(1)[0][0]
    majority_acc = sum(r["brand"] == majority for r in test) / len(test)
    print(f"features: {x_train.shape[1]} per image ({args.base}); {len(brands)} brands, {len(train)} train / {len(test)} test")
    print(f"linear probe: train {train_acc:.3f}, test {test_acc:.3f}; majority brand on test {majority_acc:.3f}")
    print(f"probe / majority on test: {test_acc / majority_acc:.2f}x")


if __name__ == "__main__":
    main()
