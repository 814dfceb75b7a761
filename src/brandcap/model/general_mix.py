"""Generic-data mixing (train.general_mix): each epoch, generic image-caption pairs join the task samples,
so that fine-tuning keeps some general captioning ability (against forgetting).

    generic = GenericPairs("data/raw/general_train/general_train.jsonl", params.eval.general_instruction)
    pool = MixedCaptionPool(task_dataset, generic)                   # task samples first, then every generic pair
    sampler = MixedEpochSampler(len(task_dataset), len(generic), general_mix, seed)
    Trainer(train_dataset=pool, ...) with `sampler` as its training sampler

Epoch e trains on every task sample plus `mixed_count(general_mix, n_task)` generic pairs drawn by
numpy's generator seeded with (seed, e): without replacement while the generic set is large enough,
whole shuffled passes over it otherwise; then all of them are shuffled together. The draw depends on
(seed, epoch) alone, so a resumed run sees the data an uninterrupted one sees. The Trainer tells the
sampler the epoch through `set_epoch` (accelerate forwards it under one process and under several).

A generic pair is asked the general question (eval.general_instruction, the forgetting probe's) and
answered with its caption: the sample carries the question as "instruction", and
`brandcap.model.training_data.CaptionCollator` renders it through the same chat template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset, Sampler

from brandcap.atomic import read_jsonl
from brandcap.model.training_data import CaptionDataset

# numpy seed stream of the per-epoch draw (keeps it apart from other uses of the training seed)
MIX_STREAM = 0x313C


def mixed_count(general_mix: float, n_task: int) -> int:
    """Generic pairs per epoch: round(general_mix x task samples)."""
    return int(round(general_mix * n_task))


def epoch_draw(n_generic: int, count: int, seed: int, epoch: int) -> np.ndarray:
    """`count` indices into the generic set for `epoch`: without replacement while count <= n_generic,
    else whole shuffled passes over the set and a part of one more."""
    if count and not n_generic:
        raise ValueError(f"{count} generic pairs per epoch were asked for but the generic training set is empty")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([seed, MIX_STREAM, epoch])
    passes = -(-count // n_generic)  # ceil
    return np.concatenate([rng.permutation(n_generic) for _ in range(passes)])[:count]


class GenericPairs(Dataset):
    """The generic training set's records `{id, image, caption}` as samples asked `instruction`."""

    def __init__(self, jsonl_path: str | Path, instruction: str):
        self.path, self.instruction = Path(jsonl_path), instruction
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: generic training set not found; run the general_train_set stage first")
        self.records = read_jsonl(self.path)
        if not self.records:
            raise ValueError(f"{self.path}: the generic training set is empty but train.general_mix asks for generic pairs; set "
                             "data.general_train_set (source: hf) or data.synthetic.n_general_train, or set general_mix to 0")
        bad = next((line for line, rec in enumerate(self.records, 1) if not rec.get("image") or not rec.get("caption")), None)
        if bad is not None:
            raise ValueError(f"{self.path}: line {bad} lacks 'image' or 'caption'; regenerate it with the general_train_set stage")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        try:
            with Image.open(rec["image"]) as img:
                image = img.convert("RGB")
        except (OSError, ValueError) as err:
            raise ValueError(f"{self.path}: image {rec['image']!r} cannot be read ({err}); rerun the general_train_set stage") from None
        return {"image": image, "caption": rec["caption"], "instruction": self.instruction}


class MixedCaptionPool(Dataset):
    """Every sample an epoch can draw: the task samples (indices 0..n_task-1), then every generic pair.
    `records` (captions in the same order) is what the frozen vision cache reads."""

    def __init__(self, task: CaptionDataset, generic: GenericPairs):
        self.task, self.generic = task, generic
        self.records = [*task.records, *generic.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n_task = len(self.task)
        return self.task[index] if index < n_task else self.generic[index - n_task]


class MixedEpochSampler(Sampler[int]):
    """Indices into a MixedCaptionPool: per epoch all task samples and the epoch's generic draw, shuffled."""

    def __init__(self, n_task: int, n_generic: int, general_mix: float, seed: int):
        self.n_task, self.n_generic, self.seed = n_task, n_generic, seed
        self.n_mixed = mixed_count(general_mix, n_task)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_task + self.n_mixed

    def epoch_indices(self, epoch: int) -> list[int]:
        generic = self.n_task + epoch_draw(self.n_generic, self.n_mixed, self.seed, epoch)
        order = np.random.default_rng([self.seed, MIX_STREAM, epoch, 1]).permutation(np.concatenate([np.arange(self.n_task), generic]))
        return order.tolist()

    def __iter__(self):
        return iter(self.epoch_indices(self.epoch))
