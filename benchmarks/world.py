"""Benchmark: does the default synthetic world need vision? Lookup baselines vs a small CNN.

    PYTHONPATH=src .venv/bin/python benchmarks/world.py                 # the default profile's shop
    PYTHONPATH=src .venv/bin/python benchmarks/world.py --epochs 10     # a shorter CNN run
    PYTHONPATH=src .venv/bin/python benchmarks/world.py --contact-sheet sheet.png   # look at the world
    PYTHONPATH=src .venv/bin/python benchmarks/world.py --tiny-vision-tower        # and the tiny model's own vision tower
    PYTHONPATH=src .venv/bin/python benchmarks/world.py --tiny-vision-tower --tower-epochs 20 --tower-lr 3e-3   # ... on the CNN's recipe

Generates the default profile's shop (params.yaml defaults: data.synthetic, data.sample_size,
seed) in a temporary folder, keeps the readable images, drops brands below
clean.min_brand_samples and splits by brand like the clean stage (`clean.split_by_brand`).
Then scores on the test split, with the exact-brand accuracy:
- majority brand, 1-NN on 8x8 thumbnails and 1-NN on 64-bin colour histograms
  (`brandcap.stages.baselines`): what a lookup table gets;
- a small CNN trained from scratch on the training images for a fixed number of epochs on
  the CPU: a crude stand-in for what fine-tuning a vision model could learn.
- with --tiny-vision-tower, the tiny default model's vision tower architecture (model.tiny) trained
  on the labels the same way, with a transformer's gentler recipe (lower learning rate, more weight
  decay, smaller batches, --tower-epochs): whether and how fast that tower can learn the marks.
A world that needs vision has the lookups well below the CNN. Seeded; about 2.5 CPU-minutes
(two threads), 2 more for the tower.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from brandcap.config.params import Params
from brandcap.evaluation.baselines import image_baseline_predictions, majority_brand_predictions
from brandcap.sim.drawing import CATEGORIES, COLOUR_NAMES, draw_product
from brandcap.sim.shop import brand_names, brand_signatures, generate_shop
from brandcap.stages.clean import split_by_brand


def readable(path: str) -> Image.Image | None:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except OSError:
        return None  # the shop breaks a couple of images on purpose


def shop_records(params: Params, shop_dir: Path) -> list[dict]:
    """The default shop's products with a readable image, brands below the clean threshold dropped."""
    frame = generate_shop(params.data.synthetic, params.data.sample_size, params.seed, shop_dir)
    records = []
    for row in frame.itertuples():
        if row.imageurl.startswith("file:") and (image := readable(row.imageurl.removeprefix("file:"))) is not None:
            records.append({"product_id": row.product_code, "brand": row.brand, "image": image})
    counts = {b: sum(r["brand"] == b for r in records) for b in {r["brand"] for r in records}}
    return [r for r in records if counts[r["brand"]] >= params.clean.min_brand_samples]


def accuracy(predictions: list[str], gold: list[str]) -> float:
    return float(np.mean([p == g for p, g in zip(predictions, gold)]))


def pixels(images: list[Image.Image], side: int) -> torch.Tensor:
    arr = np.stack([np.asarray(im.resize((side, side), Image.Resampling.BILINEAR), dtype=np.float32) for im in images])
    return torch.from_numpy(arr / 255.0 - 0.5).permute(0, 3, 1, 2).contiguous()


def small_cnn(n_classes: int) -> torch.nn.Module:
    def block(cin: int, cout: int) -> list[torch.nn.Module]:
        return [
            torch.nn.Conv2d(cin, cout, 3, padding=1),
            torch.nn.BatchNorm2d(cout),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        ]

    return torch.nn.Sequential(
        *block(3, 16),
        *block(16, 32),
        *block(32, 64),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Dropout(0.3),
        torch.nn.Linear(64 * 4, n_classes),
    )


def shifted(batch: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translation by up to max_shift pixels (the products already wander that much)."""
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=generator))
    return torch.roll(batch, shifts=(dy, dx), dims=(2, 3))


class TinyVisionTowerClassifier(torch.nn.Module):
    """The default tiny model's vision tower (its InternVL config: model.tiny), freshly initialised, with a
    linear brand head on its mean patch feature: what that architecture learns when trained on the labels."""

    def __init__(self, tiny, n_classes: int):
        super().__init__()
        from transformers import InternVLVisionConfig, InternVLVisionModel

        config = InternVLVisionConfig(
            hidden_size=tiny.vision_hidden,
            num_hidden_layers=tiny.vision_layers,
            num_attention_heads=tiny.vision_heads,
            intermediate_size=4 * tiny.vision_hidden,
            image_size=tiny.image_size,
            patch_size=tiny.patch_size,
        )
        self.tower, self.head = InternVLVisionModel(config), torch.nn.Linear(tiny.vision_hidden, n_classes)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.tower(pixel_values=pixel_values).last_hidden_state.mean(1))


@dataclass(frozen=True)
class Recipe:
    """How a classifier is trained from scratch: AdamW with a one-cycle schedule, random shifts."""

    epochs: int
    learning_rate: float = 3e-3
    weight_decay: float = 1e-3
    batch_size: int = 64
    max_shift: int = 2
    warmup_fraction: float = 0.3


def trained_predictions(
    build: Callable[[], torch.nn.Module], train_x, train_y, test_x, recipe: Recipe, seed: int
) -> list[int]:
    """Train a model from `build` (initialised under `seed`) on the labels with `recipe`; its test predictions."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build()
    optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    steps = recipe.epochs * ((len(train_x) + recipe.batch_size - 1) // recipe.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=recipe.learning_rate, total_steps=steps, pct_start=recipe.warmup_fraction
    )
    for _ in range(recipe.epochs):
        model.train()
        for idx in torch.randperm(len(train_x), generator=generator).split(recipe.batch_size):
            loss = torch.nn.functional.cross_entropy(
                model(shifted(train_x[idx], generator, recipe.max_shift)), train_y[idx]
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        return model(test_x).argmax(1).tolist()


def contact_sheet(params: Params, path: Path, n_brands: int = 8, per_brand: int = 6) -> None:
    """A PNG grid: one row per brand (most frequent first), its products as the model sees them (84 px)."""
    synthetic = params.data.synthetic
    signatures = brand_signatures(synthetic.n_brands, params.seed)
    side = params.model.tiny.image_size
    sheet = Image.new("RGB", (side * per_brand, side * n_brands), "white")
    for b in range(n_brands):
        for k in range(per_brand):
            rng = np.random.default_rng([params.seed, b, k])
            category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
            body, trim = rng.choice(COLOUR_NAMES, size=2, replace=False)
            img = draw_product(
                rng,
                synthetic.image_size,
                category,
                str(body),
                str(trim),
                signatures[b],
                synthetic.noise,
                distractor=bool(rng.random() < synthetic.distractor_rate),
            )
            sheet.paste(img.resize((side, side), Image.Resampling.BICUBIC), (k * side, b * side))
    sheet.save(path)
    print(f"contact sheet: {path} ({n_brands} brands x {per_brand} products); signatures:")
    for name, signature in list(zip(brand_names(synthetic.n_brands, params.seed), signatures))[:n_brands]:
        print(f"  {name}: {signature}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20, help="CNN training epochs")
    parser.add_argument("--side", type=int, default=32, help="CNN input side, pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--tiny-vision-tower",
        action="store_true",
        help="also train the tiny model's own vision tower architecture on the labels (at its input side)",
    )
    parser.add_argument("--tower-epochs", type=int, default=60, help="vision tower training epochs")
    parser.add_argument("--tower-lr", type=float, default=1e-3, help="vision tower peak learning rate")
    parser.add_argument("--contact-sheet", type=Path, help="only write a PNG grid of products of the first brands here")
    args = parser.parse_args()
    params = Params()
    if args.contact_sheet:
        contact_sheet(params, args.contact_sheet)
        return
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="brandcap-world-") as tmp:
        records = shop_records(params, Path(tmp) / "shop")
    train, _val, test = split_by_brand(records, params.seed, params.clean.test_fraction, params.clean.val_fraction)
    gold = [r["brand"] for r in test]
    train_brands = [r["brand"] for r in train]
    print(
        f"world: {len({r['brand'] for r in records})} brands, {len(train)} train, {len(_val)} validation (unused), {len(test)} test "
        f"(signature_visibility {params.data.synthetic.signature_visibility}, noise {params.data.synthetic.noise})"
    )
    report("majority", accuracy(majority_brand_predictions(train_brands, len(test)), gold))
    lookups = image_baseline_predictions([r["image"] for r in train], train_brands, [r["image"] for r in test])
    for name, predicted in lookups.items():
        report(name, accuracy(predicted, gold))
    brands = sorted(set(train_brands))
    started = time.perf_counter()
    labels = torch.tensor([brands.index(b) for b in train_brands])
    predicted = trained_predictions(
        lambda: small_cnn(len(brands)),
        pixels([r["image"] for r in train], args.side),
        labels,
        pixels([r["image"] for r in test], args.side),
        Recipe(args.epochs),
        params.seed,
    )
    report(
        f"small_cnn ({args.side} px, {args.epochs} epochs, {time.perf_counter() - started:.0f} s)",
        accuracy([brands[i] for i in predicted], gold),
    )
    if args.tiny_vision_tower:
        tiny, started = params.model.tiny, time.perf_counter()
        recipe = Recipe(
            args.tower_epochs, args.tower_lr, weight_decay=0.05, batch_size=32, max_shift=3, warmup_fraction=0.1
        )
        predicted = trained_predictions(
            lambda: TinyVisionTowerClassifier(tiny, len(brands)),
            pixels([r["image"] for r in train], tiny.image_size),
            labels,
            pixels([r["image"] for r in test], tiny.image_size),
            recipe,
            params.seed,
        )
        report(
            f"tiny_vision_tower ({tiny.image_size} px, patch {tiny.patch_size}, {recipe.epochs} epochs, lr {recipe.learning_rate:g}, "
            f"{time.perf_counter() - started:.0f} s)",
            accuracy([brands[i] for i in predicted], gold),
        )


def report(name: str, score: float) -> None:
    print(f"{name:>40}: {score:.3f}", flush=True)


if __name__ == "__main__":
    main()
