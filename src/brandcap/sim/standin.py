"""The pretrained stand-in: a tiny InternVL pretrained once, offline, on the world's brand-free vocabulary.

    python tools/pretrain_standin.py                       # writes pretrained/tiny-internvl (CPU, ~45 min)
    python tools/pretrain_standin.py --out /tmp/s --quick  # the same recipe on a few hundred images (seconds)

A real study starts from a downloaded VLM that already knows shapes, stripes, studs and colours and
has never been told which combination is which brand. The default study starts from the same kind
of model, made here in two phases and shipped in git as an ordinary Hugging Face folder:

1. **Vision: the visual vocabulary.** The tiny InternVL's vision tower learns, from freshly drawn
   images (`vocabulary_image`, its own seed stream, never a shop product), what every image shows:
   the category, body and trim colours, emblem shape, emblem placement, body pattern, hardware and
   whether a mark of no brand is there; one linear head per attribute on its patch tokens, the
   tokens the projector passes to the language model. The marks are drawn independently at random;
   a combination that is the signature of a brand of the default world is drawn again, so the
   tower never sees a brand's signature, nor a brand label of any kind. AdamW, warm-up, then a
   constant learning rate until every attribute's held-out accuracy has plateaued
   (`plateaued`), then a linear cool-down; the curve is recorded.
2. **Language: words and captions.** With the vision tower frozen, the brief pretraining of
   `brandcap.sim.pretrain` (unchanged): sentences that name the default world's brands as words
   (titles made from the shop's own vocabulary, brands drawn uniformly, never beside an image) and
   brand-free captions of signature-free products. The base names no brand from a photo.

`recipe.json` beside the weights records the command, seed, steps, wall time, the held-out curve
and final accuracies, and the sha256 of the drawing code (`drawing_code_sha256`);
`tests/test_standin.py` fails when that code or `ARCHITECTURE` changes and the folder was not made
again.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import transformers

from brandcap.config.params import Params, SyntheticShop, TinyModelParams
from brandcap.files.atomic import staged_directory, write_json
from brandcap.files.digests import file_sha256
from brandcap.sim import colours, drawing
from brandcap.sim.drawing import (
    CATEGORIES,
    COLOUR_NAMES,
    EMBLEMS,
    HARDWARE,
    PATTERNS,
    PLACEMENTS,
    BrandSignature,
    draw_product,
)
from brandcap.sim.pretrain import Product, mean_text_loss, pretrain, text_samples, tokenizer_corpus
from brandcap.sim.shop import brand_names, brand_signatures, product_title
from brandcap.sim.tiny_model import build_tiny_model

log = logging.getLogger(__name__)

STANDIN_DIR = Path("pretrained/tiny-internvl")
RECIPE_FILE = "recipe.json"
DRAWING_CODE = (Path(drawing.__file__), Path(colours.__file__))

# The stand-in's architecture: the default tiny model with a 4-layer vision tower (507k parameters).
ARCHITECTURE = TinyModelParams(vision_layers=4)
# Seed streams of the recipe, apart from the shop's (brandcap.sim.shop.STREAM_*: 1..4).
STREAM_VOCABULARY, STREAM_HELD_OUT, STREAM_BRAND_TEXT = 11, 12, 13
NONE = "none"
# What the vision heads read off an image, and the values each can take.
ATTRIBUTES: dict[str, list[str]] = {
    "category": [c.noun for c in CATEGORIES],
    "body_colour": list(COLOUR_NAMES),
    "trim_colour": list(COLOUR_NAMES),
    "emblem": [NONE, *EMBLEMS],
    "placement": [NONE, *PLACEMENTS],
    "pattern": list(PATTERNS),
    "hardware": list(HARDWARE),
    "distractor": ["no", "yes"],
}


@dataclass(frozen=True)
class VisionRecipe:
    """Phase 1's schedule. The budget is not fixed: training stops when the held-out curve is flat."""

    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_images: int = 16_384
    eval_every_images: int = 16_384  # one point of the held-out curve
    held_out_images: int = 2_048
    patience: int = 4  # points of the curve without a gain ...
    min_gain: float = 0.01  # ... of this much held-out accuracy on any attribute = plateau
    cooldown_fraction: float = 0.2  # linear cool-down to zero over this fraction of the images seen so far
    max_images: int = 1_500_000  # a bound on the budget; recipe.json says whether it stopped here


@dataclass(frozen=True)
class LanguageRecipe:
    """Phase 2's data: brand sentences over the default world's names (words only)."""

    products: int = 1_200  # (brand, title, category) triples the sentences are made from


QUICK = (
    VisionRecipe(
        batch_size=32, warmup_images=64, eval_every_images=128, held_out_images=64, patience=1, max_images=384
    ),
    TinyModelParams(
        vision_layers=4,
        pretrain_epochs=1,
        pretrain_samples=16,
        pretrain_text_samples=16,
        pretrain_caption_first_epochs=0,
    ),
)


# ----------------------------------------------------------------------------- the visual vocabulary
def excluded_signatures(world: SyntheticShop, seed: int) -> set[BrandSignature]:
    """The brands' signatures of the world the stand-in is made for: never drawn."""
    return set(brand_signatures(world.n_brands, seed))


def vocabulary_image(index: int, stream: int, world: SyntheticShop, seed: int, excluded: set[BrandSignature]):
    """Image `index` of a seed stream and what it shows: a product with marks drawn independently at
    random (plain at the world's rate), never an excluded signature. Returns (image, labels)."""
    rng = np.random.default_rng([seed, stream, index])
    category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
    body, trim = (str(c) for c in rng.choice(COLOUR_NAMES, size=2, replace=False))
    signature = None
    if rng.random() < world.signature_visibility:
        while signature is None or signature in excluded:
            signature = BrandSignature(
                str(rng.choice(EMBLEMS)),
                str(rng.choice(list(PLACEMENTS))),
                str(rng.choice(PATTERNS)),
                str(rng.choice(HARDWARE)),
            )
    distractor = bool(rng.random() < world.distractor_rate)
    image = draw_product(rng, world.image_size, category, body, trim, signature, world.noise, distractor)
    labels = {
        "category": category.noun,
        "body_colour": body,
        "trim_colour": trim,
        "emblem": signature.emblem if signature else NONE,
        "placement": signature.placement if signature else NONE,
        "pattern": signature.pattern if signature else "plain",
        "hardware": signature.hardware if signature else "none",
        "distractor": "yes" if distractor else "no",
    }
    return image, labels


def label_indices(labels: Sequence[dict[str, str]]) -> dict[str, torch.Tensor]:
    return {name: torch.tensor([values.index(x[name]) for x in labels]) for name, values in ATTRIBUTES.items()}


def pixel_values(processor, images) -> torch.Tensor:
    """Images as the model sees them (the stand-in's own processor, one tile each)."""
    return torch.as_tensor(np.asarray(processor.image_processor(images, return_tensors="np")["pixel_values"]))


class VocabularyBatches(torch.utils.data.IterableDataset):
    """Batches `first_batch, first_batch + 1, ...` of the vocabulary stream, drawn on the fly
    (in a DataLoader worker, beside the training thread)."""

    def __init__(
        self,
        processor,
        world: SyntheticShop,
        seed: int,
        excluded: set[BrandSignature],
        batch_size: int,
        first_batch: int,
        n_batches: int,
    ):
        self.processor, self.world, self.seed, self.excluded = processor, world, seed, excluded
        self.batch_size, self.first_batch, self.n_batches = batch_size, first_batch, n_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        for b in range(self.first_batch, self.first_batch + self.n_batches):
            drawn = [
                vocabulary_image(i, STREAM_VOCABULARY, self.world, self.seed, self.excluded)
                for i in range(b * self.batch_size, (b + 1) * self.batch_size)
            ]
            yield pixel_values(self.processor, [img for img, _ in drawn]), label_indices([lab for _, lab in drawn])


class AttributeHeads(torch.nn.Module):
    """One linear head per attribute on the vision tower's patch tokens (flattened, so where a mark
    sits stays readable), the tokens InternVL's projector reads."""

    def __init__(self, tower, n_patches: int, hidden: int):
        super().__init__()
        self.tower = tower
        self.heads = torch.nn.ModuleDict(
            {name: torch.nn.Linear(n_patches * hidden, len(values)) for name, values in ATTRIBUTES.items()}
        )

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        patches = self.tower(pixel_values=pixel_values).last_hidden_state[:, 1:, :].flatten(1)
        return {name: head(patches) for name, head in self.heads.items()}


@torch.no_grad()
def held_out_accuracy(
    model: AttributeHeads, pixels: torch.Tensor, labels: dict[str, torch.Tensor], batch_size: int = 256
) -> dict[str, float]:
    model.eval()
    outputs = [model(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
    model.train()
    return {
        name: round(float((torch.cat([o[name] for o in outputs]).argmax(1) == labels[name]).float().mean()), 4)
        for name in ATTRIBUTES
    }


def plateaued(curve: Sequence[dict], patience: int, min_gain: float) -> bool:
    """True when, over the last `patience` points, no attribute beat its best before them by `min_gain`."""
    if len(curve) <= patience:
        return False
    before, recent = curve[:-patience], curve[-patience:]
    return all(
        max(p["accuracy"][a] for p in recent) - max(p["accuracy"][a] for p in before) < min_gain for a in ATTRIBUTES
    )


def train_vision_vocabulary(model, processor, world: SyntheticShop, seed: int, recipe: VisionRecipe) -> dict:
    """Phase 1, in place on `model.model.vision_tower`; returns its record (curve included)."""
    tiny_side = model.config.vision_config.image_size[0] // model.config.vision_config.patch_size[0]
    torch.manual_seed(seed)
    heads = AttributeHeads(model.model.vision_tower, tiny_side**2, model.config.vision_config.hidden_size)
    excluded = excluded_signatures(world, seed)
    held = [vocabulary_image(i, STREAM_HELD_OUT, world, seed, excluded) for i in range(recipe.held_out_images)]
    held_pixels, held_labels = (
        pixel_values(processor, [img for img, _ in held]),
        label_indices([lab for _, lab in held]),
    )
    optimiser = torch.optim.AdamW(heads.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    warmup_steps = max(1, recipe.warmup_images // recipe.batch_size)
    eval_every = max(1, recipe.eval_every_images // recipe.batch_size)
    started, curve, step = time.perf_counter(), [], 0

    def run(n_batches: int, lr_at) -> None:
        nonlocal step
        loader = torch.utils.data.DataLoader(
            VocabularyBatches(processor, world, seed, excluded, recipe.batch_size, step, n_batches),
            batch_size=None,
            num_workers=1,
        )
        for pixels, labels in loader:
            for group in optimiser.param_groups:
                group["lr"] = lr_at(step)
            logits = heads(pixels)
            loss = sum(torch.nn.functional.cross_entropy(logits[name], labels[name]) for name in ATTRIBUTES)
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(heads.parameters(), 1.0)
            optimiser.step()
            step += 1

    def point() -> dict:
        accuracy = held_out_accuracy(heads, held_pixels, held_labels)
        seen = step * recipe.batch_size
        log.info(
            "vision vocabulary: %d images (%.0f/s): %s",
            seen,
            seen / (time.perf_counter() - started),
            ", ".join(f"{a} {v:.3f}" for a, v in accuracy.items()),
        )
        return {"images": seen, "accuracy": accuracy}

    max_steps = recipe.max_images // recipe.batch_size
    stopped = "budget"
    while step < max_steps:
        run(min(eval_every, max_steps - step), lambda s: recipe.learning_rate * min(1.0, (s + 1) / warmup_steps))
        curve.append(point())
        if plateaued(curve, recipe.patience, recipe.min_gain):
            stopped = "plateau"
            break
    cooldown = max(1, round(step * recipe.cooldown_fraction))
    start = step
    run(cooldown, lambda s: recipe.learning_rate * max(0.0, 1 - (s - start) / cooldown))
    final = point()
    return {
        "recipe": asdict(recipe),
        "stopped": stopped,
        "steps": step,
        "images": step * recipe.batch_size,
        "cooldown_steps": cooldown,
        "excluded_signatures": len(excluded),
        "held_out_accuracy": final["accuracy"],
        "curve": [*curve, {**final, "after_cooldown": True}],
        "seconds": round(time.perf_counter() - started, 1),
    }


# ----------------------------------------------------------------------------- language
def world_products(world: SyntheticShop, seed: int, n: int) -> list[Product]:
    """(brand, title, noun) triples over the world's brand names, brands drawn uniformly (the
    language model learns the names as words, not which brand is common); no shop product."""
    names = brand_names(world.n_brands, seed)
    rng = np.random.default_rng([seed, STREAM_BRAND_TEXT])
    products = []
    for _ in range(n):
        category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        products.append(Product(str(rng.choice(names)), product_title(rng, category), category.noun))
    return products


# ----------------------------------------------------------------------------- the recipe
def drawing_code_sha256() -> dict[str, str]:
    """The sha256 of every file that decides what an image of the world looks like."""
    return {f"src/brandcap/sim/{p.name}": file_sha256(p) for p in DRAWING_CODE}


def architecture(config) -> dict:
    """What of a saved InternVL config the stand-in's architecture fixes."""
    vision, text = config.vision_config, config.text_config
    side = vision.image_size[0] if isinstance(vision.image_size, list | tuple) else vision.image_size
    patch = vision.patch_size[0] if isinstance(vision.patch_size, list | tuple) else vision.patch_size
    return {
        "image_size": side,
        "patch_size": patch,
        "vision_hidden": vision.hidden_size,
        "vision_layers": vision.num_hidden_layers,
        "vision_heads": vision.num_attention_heads,
        "text_hidden": text.hidden_size,
        "text_layers": text.num_hidden_layers,
        "text_heads": text.num_attention_heads,
    }


def expected_architecture(tiny: TinyModelParams = ARCHITECTURE) -> dict:
    return {
        key: getattr(tiny, key)
        for key in (
            "image_size",
            "patch_size",
            "vision_hidden",
            "vision_layers",
            "vision_heads",
            "text_hidden",
            "text_layers",
            "text_heads",
        )
    }


def make_standin(out_dir: Path, seed: int = 4, quick: bool = False, command: str = "") -> dict:
    """Run the whole recipe and save the stand-in into `out_dir` (replaced atomically); returns recipe.json."""
    started = time.perf_counter()
    defaults = Params()
    world, instruction = defaults.data.synthetic, defaults.train.instruction
    vision_recipe, tiny = QUICK if quick else (VisionRecipe(), ARCHITECTURE)
    products = world_products(world, seed, LanguageRecipe().products if not quick else 32)
    model, processor = build_tiny_model(tokenizer_corpus(products, instruction), tiny, seed=seed)
    vision = train_vision_vocabulary(model, processor, world, seed, vision_recipe)

    model.model.vision_tower.requires_grad_(False)  # phase 2 must not wash out the vocabulary
    held_out_text = text_samples(world_products(world, seed + 7919, 200), 200, seed=seed + 7919)
    with staged_directory(Path(out_dir)) as stage:
        # pretrain() removes its Trainer's work_dir itself
        language = pretrain(
            model, processor, products, tiny, instruction, world, seed, work_dir=stage.parent / f".{stage.name}.trainer"
        )
        language["held_out_text_loss"] = round(mean_text_loss(model, processor, held_out_text), 4)
        model.model.vision_tower.requires_grad_(True)
        model.save_pretrained(stage)
        processor.save_pretrained(stage)
        recipe = {
            "what": "brandcap's pretrained stand-in: a tiny InternVL that knows the synthetic world's brand-free visual "
            "vocabulary and the brand names as words, and was never shown which marks belong to which brand",
            "command": command or "python tools/pretrain_standin.py",
            "seed": seed,
            "quick": quick,
            "architecture": expected_architecture(tiny),
            "world": world.model_dump(mode="json"),
            "drawing_code_sha256": drawing_code_sha256(),
            "vision": vision,
            "language": {**language, "brands_as_words": brand_names(world.n_brands, seed), "instruction": instruction},
            "parameters": sum(p.numel() for p in model.parameters()),
            "wall_time_s": round(time.perf_counter() - started, 1),
            "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
            "versions": {
                "python": sys.version.split()[0],
                "torch": torch.__version__,
                "transformers": transformers.__version__,
            },
        }
        write_json(stage / RECIPE_FILE, recipe)
    log.info(
        "stand-in saved to %s in %.0f s: %s",
        out_dir,
        recipe["wall_time_s"],
        ", ".join(f"{a} {v:.3f}" for a, v in vision["held_out_accuracy"].items()),
    )
    return recipe


def read_recipe(standin_dir: Path = STANDIN_DIR) -> dict:
    return json.loads((Path(standin_dir) / RECIPE_FILE).read_text(encoding="utf-8"))
