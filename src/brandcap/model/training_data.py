"""Training samples: `train.jsonl` records rendered through the same chat template as evaluation.

    dataset = CaptionDataset("data/processed/train.jsonl")
    collate = CaptionCollator(processor, params.train.instruction, params.train.max_length)
    batch = collate([dataset[0], dataset[1]])   # input_ids, attention_mask, pixel_values, labels

Each sample is `prompt_text(processor, instruction)` (user turn: image + instruction, then the
assistant header) followed by `answer_text(processor, caption)` (caption + end-of-turn token).
The prompt is encoded by `brandcap.model.chat.encode_prompts` exactly as evaluation encodes it (images
tiled as the processor's saved tiling says and expanded into image tokens) and the answer by
the tokenizer; the two are concatenated, so the prompt
tokens are identical to the evaluation prompt's by construction and the label boundary is exact.
Labels are -100 on the prompt and on padding; only the answer and its end token are learned.
Padding is on the right; truncation cuts the answer only, never image tokens. `prompt_answer_batch`
is this layout, and the only one: pretraining (`brandcap.sim.pretrain`) and the evaluate stage's
test loss build their batches with it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from brandcap.files.images import open_rgb
from brandcap.files.stage_records import SplitRecord, read_records
from brandcap.model.chat import answer_text, encode_prompts

IGNORE_INDEX = -100


class CaptionDataset(Dataset):
    """Records `{product_id, image, brand, caption}` of a train.jsonl; `image` is relative to the cwd."""

    def __init__(self, jsonl_path: str | Path):
        self.path = Path(jsonl_path)
        self.records = read_records(
            self.path,
            SplitRecord,
            "training split",
            allow_empty=False,
            fix="run the clean stage (an empty split: check its report, clean_report.json)",
        )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        image = open_rgb(rec["image"], f"{self.path} (product {rec['product_id']})")
        return {"image": image, "caption": rec["caption"], "product_id": rec["product_id"], "brand": rec["brand"]}


def answer_ids(processor, captions: Sequence[str]) -> list[list[int]]:
    """Each caption's answer tokens: the caption and the end-of-turn token, no special tokens added."""
    return processor.tokenizer([answer_text(processor, c) for c in captions], add_special_tokens=False)["input_ids"]


def prompt_answer_batch(
    prompts: Sequence[Sequence[int]],
    answers: Sequence[Sequence[int]],
    pad_id: int,
    max_length: int | None = None,
    padding_side: str = "right",
) -> dict[str, torch.Tensor]:
    """The one prompt/answer layout of training, pretraining and the test loss.

    Row i is prompts[i] + answers[i], the answer cut so the row fits `max_length` (None: no cut);
    `labels` are the answer tokens and IGNORE_INDEX on the prompt and the padding; rows are padded
    with `pad_id` on `padding_side` ("left" puts every answer's end at the last position).
    """
    answers = [
        list(a) if max_length is None else list(a)[: max(max_length - len(p), 0)] for p, a in zip(prompts, answers)
    ]
    width = max(len(p) + len(a) for p, a in zip(prompts, answers))
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    labels = torch.full((len(prompts), width), IGNORE_INDEX, dtype=torch.long)
    for i, (prompt, answer) in enumerate(zip(prompts, answers)):
        n = len(prompt) + len(answer)
        row = slice(width - n, width) if padding_side == "left" else slice(0, n)
        input_ids[i, row] = torch.tensor(list(prompt) + answer, dtype=torch.long)
        attention_mask[i, row] = 1
        labels[i, row] = torch.tensor([IGNORE_INDEX] * len(prompt) + answer, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class CaptionCollator:
    """Turns samples `{image, caption}` into a right-padded, label-masked training batch."""

    def __init__(self, processor, instruction: str, max_length: int):
        self.processor = processor
        self.instruction = instruction
        self.max_length = max_length
        self.pad_id = processor.tokenizer.pad_token_id
        if self.pad_id is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token before training")

    def prompt_inputs(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """The evaluation-identical prompt encoding (same tiling) of the samples' images: token ids per sample
        and pixel values. A sample's question is its "instruction" when it has one (a generic pair mixed in
        by brandcap.model.general_mix), else the collator's (train.instruction)."""
        questions = [s.get("instruction") or self.instruction for s in samples]
        return encode_prompts(self.processor, questions, [s["image"] for s in samples])

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        prompts = self.prompt_inputs(samples)
        batch = self.text_batch(prompts["input_ids"], [s["caption"] for s in samples])
        batch["pixel_values"] = torch.from_numpy(self.stack_pixel_values(prompts))
        return batch

    @staticmethod
    def stack_pixel_values(prompts) -> np.ndarray:
        """All tiles of the encoded prompts, in sample order, as one array."""
        return np.stack([np.asarray(p) for p in prompts["pixel_values"]])

    def text_batch(self, prompts: list[list[int]], captions: list[str]) -> dict[str, torch.Tensor]:
        """Encoded prompts followed by their encoded answers: input_ids, attention_mask, labels."""
        longest_prompt = max(len(ids) for ids in prompts)
        if longest_prompt >= self.max_length:
            raise ValueError(
                f"train.max_length ({self.max_length}) leaves no room for the answer: the prompt alone is "
                f"{longest_prompt} tokens (image tokens cannot be cut); raise train.max_length or lower "
                "model.image_tiling.max_tiles"
            )
        batch = prompt_answer_batch(prompts, answer_ids(self.processor, captions), self.pad_id, self.max_length)
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": batch["labels"]}
