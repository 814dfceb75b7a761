"""Frozen vision tower cache: with the vision tower frozen, its output per training image is the same
in every epoch, so it is computed once and fed to the model instead of rerunning the tower each step.

    cache = FrozenVisionCache.build(model, collator, dataset, device, autocast_dtype)   # None when it does not apply
    hook = feed_cached_vision_features(model)      # the model takes `vision_features` instead of `pixel_values`
    Trainer(model, train_dataset=cache.dataset(dataset), data_collator=cache.collator(collator), ...)

What is cached per sample: its prompt token ids (encoded by the collator, i.e. as evaluation
encodes them) and the input of the multi-modal projector (the vision tower's output after
InternVL's pixel shuffle), captured from the model's own `get_image_features` under the training
autocast, so the training maths are those of the uncached run. The projector itself trains in
every strategy, so it still runs each step; the cached features enter the model through its public
`mm_encoder_outputs` argument. A forward pre-hook on the model (it sees the batch however the
Trainer wraps the model: peft, DDP) turns `vision_features` into that argument.

The cache applies only when no vision-tower parameter trains and the tower has no dropout (with
dropout its training-mode output would differ from step to step), and only when it fits
`train.frozen_vision_cache_mb`; each process of a multi-process run builds its own, and a resumed
run builds it again.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from transformers.modeling_outputs import BaseModelOutputWithPooling

from brandcap.model.training_data import CaptionCollator, CaptionDataset

log = logging.getLogger(__name__)

FEATURES_KEY = "vision_features"


def vision_cache_blocker(model: nn.Module) -> str | None:
    """Why the vision tower's outputs cannot be cached for this model as it will train, or None when they can.

    `model` is the Hugging Face InternVL model after the freezing strategy was applied."""
    tower = model.model.vision_tower
    if any(p.requires_grad for p in tower.parameters()):
        return "the vision tower trains"
    dropouts = [m.p for m in tower.modules() if isinstance(m, nn.Dropout)]
    dropouts += [
        m.attention_dropout for m in tower.modules() if isinstance(getattr(m, "attention_dropout", None), float)
    ]
    if any(p > 0 for p in dropouts):
        return "the vision tower has dropout (its outputs change from step to step)"
    return None


def cache_megabytes(model: nn.Module, processor, n_samples: int) -> float:
    """Upper bound of the cache's size: every sample at the most tiles the processor's tiling allows, in
    fp32 (under bf16/fp16 autocast the tower's output can still come out in fp32)."""
    image_processor = processor.image_processor
    tiles = int(image_processor.max_patches) + 1 if image_processor.crop_to_patches else 1
    config = model.config
    width = config.vision_config.hidden_size * int(round(1 / config.downsample_ratio)) ** 2
    return n_samples * tiles * processor.image_seq_length * width * torch.float32.itemsize / 1e6


class FrozenVisionCache:
    """Per training sample: prompt token ids and the projector's input (the frozen vision tower's output)."""

    def __init__(self, prompt_ids: list[list[int]], features: list[torch.Tensor]):
        self.prompt_ids, self.features = prompt_ids, features

    @classmethod
    def build(
        cls,
        model: nn.Module,
        collator: CaptionCollator,
        dataset: CaptionDataset,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        batch_size: int = 32,
    ) -> FrozenVisionCache:
        """Run the frozen tower once over every sample, in batches, on `device` under the training autocast."""
        model.to(device)
        prompt_ids: list[list[int]] = []
        features: list[torch.Tensor] = []
        captured: list[torch.Tensor] = []
        hook = model.model.multi_modal_projector.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        autocast = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
        try:
            with torch.no_grad(), autocast:
                for start in range(0, len(dataset), batch_size):
                    samples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
                    prompts = collator.prompt_inputs(samples)
                    pixel_values = torch.from_numpy(collator.stack_pixel_values(prompts)).to(device)
                    captured.clear()
                    model.model.get_image_features(pixel_values=pixel_values)
                    tiles = [_tile_count(ids, collator) for ids in prompts["input_ids"]]
                    features += [f.detach().cpu().clone() for f in torch.split(captured[0], tiles)]
                    prompt_ids += [list(ids) for ids in prompts["input_ids"]]
        finally:
            hook.remove()
        return cls(prompt_ids, features)

    def dataset(self, dataset: CaptionDataset) -> CachedVisionDataset:
        return CachedVisionDataset(self, dataset)

    def collator(self, collator: CaptionCollator) -> CachedVisionCollator:
        return CachedVisionCollator(collator)


def _tile_count(prompt_ids, collator: CaptionCollator) -> int:
    image_token_id = collator.processor.image_token_id
    return sum(1 for t in prompt_ids if t == image_token_id) // collator.processor.image_seq_length


class CachedVisionDataset(Dataset):
    """The training samples with their cached prompt ids and vision features instead of the image."""

    def __init__(self, cache: FrozenVisionCache, dataset: CaptionDataset):
        self.cache, self.records = cache, dataset.records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "prompt_ids": self.cache.prompt_ids[index],
            FEATURES_KEY: self.cache.features[index],
            "caption": self.records[index]["caption"],
        }


class CachedVisionCollator:
    """CaptionCollator's batch with the cached vision features (all tiles, in sample order) for pixel values."""

    def __init__(self, collator: CaptionCollator):
        self.collator = collator

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator.text_batch([s["prompt_ids"] for s in samples], [s["caption"] for s in samples])
        batch[FEATURES_KEY] = torch.cat([s[FEATURES_KEY] for s in samples])
        return batch


def feed_cached_vision_features(model: nn.Module) -> torch.utils.hooks.RemovableHandle:
    """Let `model` (the Hugging Face InternVL model) take `vision_features` in place of `pixel_values`: the
    projector runs on them and the result enters through the model's `mm_encoder_outputs` argument."""

    def use_features(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        features = kwargs.pop(FEATURES_KEY, None)
        if features is None:
            return None
        projected = module.model.multi_modal_projector(features)
        kwargs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=projected)}
        return args, kwargs

    return model.register_forward_pre_hook(use_features, with_kwargs=True)
