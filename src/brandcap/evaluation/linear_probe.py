"""A linear probe: is the brand in a model's image features, before any fine-tuning?

    from brandcap.evaluation.linear_probe import image_features, linear_probe_predictions
    x_train = image_features(model, processor, train_images)
    guesses = linear_probe_predictions(x_train, train_brands, image_features(model, processor, test_images))

`image_features` embeds each image as the language model reads it: InternVL's vision tower, pixel
shuffle and projector (`get_image_features`), the image tokens flattened (tiles of one image
averaged, when the processor tiles). `linear_probe_predictions` standardises the features on the
training rows and fits one linear layer from them to the brand (full-batch AdamW, seeded), then
names a brand for each test row. A probe well above the majority brand says the brand can be read
off the features linearly; fine-tuning that stays below the probe has not used all of it. The probe
is trained on the brand labels, so it is a reference for what the features hold, not a baseline of
what a model does without fine-tuning.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from brandcap.model.chat import image_tiling_kwargs

PROBE_STEPS = 300
PROBE_LEARNING_RATE = 1e-2
PROBE_WEIGHT_DECAY = 1e-2


@torch.no_grad()
def image_features(model, processor, images: Sequence[Image.Image], batch_size: int = 64) -> np.ndarray:
    """(n, features) float32: each image's projected image tokens, flattened."""
    rows = []
    for start in range(0, len(images), batch_size):
        batch = list(images[start : start + batch_size])
        encoded = processor.image_processor(batch, return_tensors="pt", **image_tiling_kwargs(processor))
        features = model.model.get_image_features(pixel_values=encoded["pixel_values"].to(model.dtype))
        features = getattr(features, "pooler_output", features).float()
        tiles_per_image = [int(n) for n in encoded.get("num_patches", [1] * len(batch))]
        rows += [tiles.mean(0).flatten().numpy() for tiles in torch.split(features, tiles_per_image)]
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def linear_probe_predictions(
    train_features: np.ndarray,
    train_brands: Sequence[str],
    test_features: np.ndarray,
    steps: int = PROBE_STEPS,
    seed: int = 0,
) -> tuple[list[str], float]:
    """(one brand per test row, the probe's accuracy on its own training rows)."""
    if len(train_features) != len(train_brands) or not len(train_brands):
        raise ValueError(
            f"linear probe: {len(train_features)} training feature rows for {len(train_brands)} brands; need the same, non-zero number"
        )
    brands = sorted(set(train_brands))
    x_train, x_test = (
        torch.as_tensor(train_features, dtype=torch.float32),
        torch.as_tensor(test_features, dtype=torch.float32),
    )
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    y_train = torch.tensor([brands.index(b) for b in train_brands])
    generator = torch.Generator().manual_seed(seed)
    probe = torch.nn.Linear(x_train.shape[1], len(brands))
    with torch.no_grad():
        bound = 1 / x_train.shape[1] ** 0.5
        probe.weight.uniform_(-bound, bound, generator=generator)
        probe.bias.zero_()
    optimiser = torch.optim.AdamW(probe.parameters(), lr=PROBE_LEARNING_RATE, weight_decay=PROBE_WEIGHT_DECAY)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(probe(x_train), y_train)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        train_accuracy = float((probe(x_train).argmax(1) == y_train).float().mean())
        return [brands[i] for i in probe(x_test).argmax(1).tolist()], round(train_accuracy, 4)
