"""How much of a training batch is padding, and how much of it is learnt: the padding-free lever of the speed issue.

    python benchmarks/padding.py   # in a built default run (after make run)
    python benchmarks/padding.py --processed data/processed --base models/base --batch-size 16

Collates the training split in the train stage's batches (the stage's own CaptionCollator, train.per_device_batch_size
samples each, in file order) and counts, over one epoch: positions computed (batch x longest sequence), real tokens
(attention mask), image tokens, and answer tokens (the positions with a label, the only ones the loss learns from).
Prints the ratios: padding / computed is what a padding-free (packed) batch would save in the language model at most;
answer / real is the share of the real sequence that is learnt. It reads the built run; it writes nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from transformers import AutoProcessor

from brandcap.config.params import load_params
from brandcap.model.training_data import CaptionCollator, CaptionDataset


def count_tokens(processed: Path, base: Path, params_file: Path, batch_size: int | None) -> dict[str, int]:
    params = load_params(params_file)
    processor = AutoProcessor.from_pretrained(base)
    collator = CaptionCollator(processor, params.train.instruction, params.train.max_length)
    dataset = CaptionDataset(processed / "train.jsonl")
    size = batch_size or params.train.per_device_batch_size
    image_token = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    counts = {"computed": 0, "real": 0, "image": 0, "answer": 0, "batches": 0}
    for start in range(0, len(dataset), size):
        batch = collator([dataset[i] for i in range(start, min(start + size, len(dataset)))])
        counts["computed"] += batch["input_ids"].numel()
        counts["real"] += int(batch["attention_mask"].sum())
        counts["image"] += int((batch["input_ids"] == image_token).sum())
        counts["answer"] += int((batch["labels"] != -100).sum())
        counts["batches"] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processed", type=Path, default=Path("data/processed"))
    parser.add_argument("--base", type=Path, default=Path("models/base"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--batch-size", type=int, default=None, help="default: train.per_device_batch_size")
    args = parser.parse_args()
    c = count_tokens(args.processed, args.base, args.params, args.batch_size)
    print(
        f"{c['batches']} batches; positions computed {c['computed']}, real tokens {c['real']}, "
        f"image tokens {c['image']}, answer tokens {c['answer']}"
    )
    print(f"padding / computed   {(c['computed'] - c['real']) / c['computed']:.3f}")
    print(f"answer / real        {c['answer'] / c['real']:.3f}")
    print(f"answer / computed    {c['answer'] / c['computed']:.3f}")


if __name__ == "__main__":
    main()
