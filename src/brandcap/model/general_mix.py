"""Generic-data mixing (train.general_mix): each epoch, generic image-caption pairs join the task samples,
so that fine-tuning keeps some general captioning ability (against forgetting).

    generic = GenericPairs("data/raw/general_train/general_train.jsonl", params.eval.general_instruction)
    pool = MixedCaptionPool(task_dataset, generic)                   # task samples first, then every generic pair
    samples = MixedEpochSamples(pool, len(task_dataset), len(generic), general_mix, seed)
    Trainer(train_dataset=samples, callbacks=[MixedEpochCallback(samples), ...], ...)

Epoch e trains on every task sample plus `mixed_count(general_mix, n_task)` generic pairs drawn by
numpy's generator seeded with (seed, e): without replacement while the generic set is large enough,
whole shuffled passes over it otherwise. The Trainer's own seeded sampler shuffles them together, as
it shuffles the task samples without mixing. The draw depends on (seed, epoch) alone, so a resumed run
sees the data an uninterrupted one sees. Only public Trainer extension points are used: the dataset
and a callback that sets the epoch at its start.

A generic pair is asked the general question (eval.general_instruction, the forgetting probe's) and
answered with its caption: the sample carries the question as "instruction", and
`brandcap.model.training_data.CaptionCollator` renders it through the same chat template.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from transformers import TrainerCallback

from brandcap.files.images import open_rgb
from brandcap.files.stage_records import ImageCaptionRecord, read_records
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
        self.records = read_records(
            self.path, ImageCaptionRecord, "generic training set", fix="run the general_train_set stage first"
        )
        if not self.records:
            raise ValueError(
                f"{self.path}: the generic training set is empty but train.general_mix asks for generic pairs; set "
                "data.general_train_set (source: hf) or data.synthetic.n_general_train, or set general_mix to 0"
            )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        image = open_rgb(rec["image"], self.path, fix="rerun the general_train_set stage")
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


class MixedEpochSamples(Dataset):
    """One epoch's samples as the Trainer indexes them: every task sample, then the epoch's generic draw
    (indices into `pool`, a MixedCaptionPool or the frozen vision cache's view of one). The Trainer's own
    seeded sampler shuffles them; `MixedEpochCallback` sets the epoch when it begins, before the epoch's
    data loader starts iterating (so worker processes, which copy the dataset then, see it too)."""

    def __init__(self, pool: Dataset, n_task: int, n_generic: int, general_mix: float, seed: int):
        self.pool, self.n_task, self.n_generic, self.seed = pool, n_task, n_generic, seed
        self.n_mixed = mixed_count(general_mix, n_task)
        self.set_epoch(0)

    def epoch_indices(self, epoch: int) -> list[int]:
        """Pool indices of `epoch`: the task samples in order, then the generic draw."""
        return [
            *range(self.n_task),
            *(self.n_task + epoch_draw(self.n_generic, self.n_mixed, self.seed, epoch)).tolist(),
        ]

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.indices = epoch, self.epoch_indices(epoch)

    def __len__(self) -> int:
        return self.n_task + self.n_mixed

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.pool[self.indices[index]]


class MixedEpochCallback(TrainerCallback):
    """Tells the MixedEpochSamples which epoch begins (the Trainer's state counts completed epochs, so it
    is right after a resume too)."""

    def __init__(self, samples: MixedEpochSamples):
        self.samples = samples

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.samples.set_epoch(math.floor(state.epoch + 1e-6))
