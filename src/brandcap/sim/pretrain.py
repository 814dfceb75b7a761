"""Brief pretraining of the tiny model, so that it behaves like a real base model.

    losses = pretrain(model, processor, products, params.model.tiny, params.train.instruction,
                      params.data.synthetic, seed=params.seed, work_dir=out_dir / "pretraining")

A real VLM base model knows brand names as words and can describe what it sees, but has
never been taught to recognise a brand from its pixels. The tiny model gets the same three
properties from two kinds of samples, mixed in shuffled batches:

* text only (language model): product sentences built from the catalog, e.g.
  "A red tote bag by Maison Éclat." or "Rossi & Figli: Mini leather hat. A navy hat by
  Rossi & Figli." (a brand repeated in one sentence also teaches the model to copy a name),
  and text-only chat turns whose user turn *writes* the brand and whose answer repeats it;
* image + the fine-tuning instruction -> a brand-free caption such as "A red tote bag with a
  top handle.", rendered with `brandcap.model.chat` exactly as fine-tuning and evaluation render
  samples. Images are the synthetic shop's signature-free products (`generic_product_images`,
  its own seed stream), the colour word is `brandcap.sim.colours.dominant_colour_name` of the pixels.

No brand is ever paired with an image, so the pretrained model cannot name brands from
pixels: fine-tuning has to teach that. Training runs on transformers' `Trainer`, as fine-tuning
does: the seeded, shuffled batch plan (`batch_plan`) is its dataset, read in order; AdamW with the
Trainer's cosine-with-minimum schedule; the same seed gives the same weights.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import PrinterCallback, Trainer, TrainingArguments

from brandcap.config.params import SyntheticShop, TinyModelParams
from brandcap.files.product_table import category_text
from brandcap.files.stage_records import check_columns
from brandcap.model.chat import answer_text, encode_prompts
from brandcap.model.step_progress import StepProgressCallback
from brandcap.model.training_data import IGNORE_INDEX, answer_ids, prompt_answer_batch
from brandcap.sim import drawing, shop
from brandcap.sim.simulated_vlm import base_caption

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Product:
    brand: str
    title: str
    noun: str  # how a sentence names the category: "tote bag", "dress"


# Brand-free caption templates; every word is either computable from the pixels (colour,
# category) or fixed by the category, so a small model can learn them.
_CATEGORY_DETAIL = {
    "tote bag": "with a top handle",
    "pair of sneakers": "with a flat sole",
    "dress": "with a fitted waist",
    "jacket": "with a front opening",
    "hat": "with a wide brim",
    "watch": "with a round dial",
}
_CAPTION_TEMPLATES = [
    "A {colour} {noun} {detail}.",
    "A {colour} {noun} {detail}, shown on a light background.",
    "This is a {colour} {noun} {detail}.",
]
_BRAND_SENTENCES = [
    "A {colour} {noun} by {brand}.",
    "{brand} {title}.",
    "{brand}: {title}. A {colour} {noun} by {brand}.",
    "This {colour} {noun} is made by {brand}.",
    "The {brand} {noun} comes in {colour}.",
    "{title} by {brand}, a {colour} {noun}.",
    "{brand} makes this {colour} {noun}.",
]


# ----------------------------------------------------------------------------- catalog -> text
def category_noun(row: Mapping) -> str:
    """The noun a sentence uses for a catalog row's category: the shop's own noun for a shop
    category ('TOTE BAGS' -> 'tote bag'), else the category in words, else 'product'."""
    for cat in drawing.CATEGORIES:
        if str(row.get("category3_code", "")).strip().upper() == cat.category3:
            return cat.noun
    return category_text(row) or "product"


def read_products(catalog_path: str | Path) -> list[Product]:
    """(brand, title, category noun) of every catalog row that has a brand."""
    catalog_path = Path(catalog_path)
    if not catalog_path.exists():
        raise FileNotFoundError(
            f"{catalog_path}: catalog not found; run the catalog stage first (snakemake data/raw/catalog.parquet)"
        )
    frame = pd.read_parquet(catalog_path)
    check_columns(
        frame.columns,
        ("brand", "title", "category1_code", "category2_code", "category3_code"),
        catalog_path,
        "the catalog must follow the DBQ schema (see brandcap.files.product_table.DBQ_COLUMNS)",
    )
    frame = frame.fillna("")
    products = [
        Product(str(row["brand"]).strip(), str(row["title"]).strip(), category_noun(row))
        for row in frame.to_dict("records")
        if str(row["brand"]).strip()
    ]
    if not products:
        raise ValueError(f"{catalog_path}: no row has a brand; the tiny base model needs brand names to learn")
    return products


def brand_sentence(product: Product, colour: str, rng: np.random.Generator) -> str:
    template = _BRAND_SENTENCES[int(rng.integers(len(_BRAND_SENTENCES)))]
    return template.format(brand=product.brand, title=product.title or product.noun, noun=product.noun, colour=colour)


def brand_free_caption(colour: str, noun: str, rng: np.random.Generator) -> str:
    template = _CAPTION_TEMPLATES[int(rng.integers(len(_CAPTION_TEMPLATES)))]
    detail = _CATEGORY_DETAIL.get(noun, "on a plain background")
    return template.format(colour=colour, noun=noun, detail=detail)


def tokenizer_corpus(products: Sequence[Product], instruction: str) -> list[str]:
    """Text the tiny tokenizer is trained on: catalog words, caption vocabulary, the instruction."""
    corpus = [f"{p.brand} {p.title} {p.noun}" for p in products]
    vocabulary = " ".join(drawing.COLOUR_NAMES) + " " + " ".join(f"{n} {d}" for n, d in _CATEGORY_DETAIL.items())
    templates = _BRAND_SENTENCES + _CAPTION_TEMPLATES
    # Repeated so that the instruction, the chat roles and the template words become whole tokens.
    corpus += [vocabulary, instruction, "user\nassistant\nsystem\n", *templates] * 20
    rng = np.random.default_rng(0)
    corpus += [product_description(p, str(rng.choice(drawing.COLOUR_NAMES)), rng) for p in products[:300]]
    return corpus


# ----------------------------------------------------------------------------- samples
def chat_sample(processor, product: Product, colour: str, instruction: str, rng: np.random.Generator) -> str:
    """A text-only chat turn: the brand is *written* in the user turn and the answer repeats it.

    This teaches the language model, inside the fine-tuning chat template, to put a brand it has
    been given into its answer; the image never carries the brand, so the base model still cannot
    name one from pixels, but a frozen language model (freeze_llm) can be steered to it.
    """
    messages = [
        {"role": "user", "content": [{"type": "text", "text": f"{product.brand}, {product.title}. {instruction}"}]}
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return prompt + answer_text(processor, product_description(product, colour, rng))


def product_description(product: Product, colour: str, rng: np.random.Generator) -> str:
    """A long product description naming the brand, in the register of the captioner's answers.

    A real base LLM already writes such prose; the tiny one learns it here from text alone, so a
    frozen language model (freeze_llm) only has to be steered to the right brand by the image.
    """
    fields = {"brand": product.brand, "title": product.title or product.noun, "category": product.noun}
    accent = str(rng.choice(drawing.COLOUR_NAMES))
    return base_caption(fields, colour, accent, random.Random(int(rng.integers(2**31))))


def text_samples(products: Sequence[Product], n: int, seed: int, processor=None, instruction: str = "") -> list[str]:
    """Brand sentences; with a processor, every third one is a text-only chat turn (`chat_sample`)."""
    rng = np.random.default_rng([seed, shop.STREAM_PRETRAIN, 0])
    picks = rng.integers(len(products), size=n)
    out = []
    for k, i in enumerate(picks):
        colour = str(rng.choice(drawing.COLOUR_NAMES))
        if processor is not None and k % 3 == 2:
            out.append(chat_sample(processor, products[int(i)], colour, instruction, rng))
        else:
            out.append(brand_sentence(products[int(i)], colour, rng))
    return out


def caption_samples(n: int, synthetic: SyntheticShop, seed: int) -> list[tuple[object, str]]:
    """(image, brand-free caption) pairs from the shop's signature-free products."""
    rng = np.random.default_rng([seed, shop.STREAM_PRETRAIN, 1])
    return [
        (image, brand_free_caption(colour, category.noun, rng))
        for image, colour, category in shop.generic_product_images(n, synthetic, seed, stream=shop.STREAM_PRETRAIN)
    ]


def encode_text(processor, sentences: Sequence[str]) -> list[torch.Tensor]:
    if not sentences:
        return []
    tok = processor.tokenizer
    return [torch.tensor(ids) for ids in tok(list(sentences), add_special_tokens=False)["input_ids"]]


@dataclass(frozen=True)
class EncodedCaptions:
    """Pretraining's captioned images, encoded once: prompt and answer tokens and pixel values per sample."""

    prompts: list[list[int]]
    answers: list[list[int]]
    pixel_values: torch.Tensor

    def __len__(self) -> int:
        return len(self.prompts)


def encode_captions(processor, pairs: Sequence[tuple[object, str]], instruction: str) -> EncodedCaptions:
    """(image, caption) pairs encoded as fine-tuning encodes them (`encode_prompts`, `answer_ids`)."""
    prompts = encode_prompts(processor, instruction, [img for img, _ in pairs])
    pixel_values = torch.as_tensor(np.asarray(prompts["pixel_values"]))
    return EncodedCaptions(prompts["input_ids"], answer_ids(processor, [c for _, c in pairs]), pixel_values)


def text_batch(ids: Sequence[torch.Tensor], pad_id: int) -> dict[str, torch.Tensor]:
    """Text-only sentences: every token is learned (an answer with an empty prompt)."""
    return prompt_answer_batch([[]] * len(ids), [x.tolist() for x in ids], pad_id)


def caption_batch(captions: EncodedCaptions, idx: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Samples `idx` laid out as fine-tuning lays them out: only the answer and its end token are learned."""
    batch = prompt_answer_batch([captions.prompts[i] for i in idx], [captions.answers[i] for i in idx], pad_id)
    batch["pixel_values"] = captions.pixel_values[torch.as_tensor(list(idx))]
    return batch


# ----------------------------------------------------------------------------- training
@torch.no_grad()
def mean_loss(model, batches: Iterable[dict[str, torch.Tensor]]) -> float | None:
    """Token-weighted mean next-token loss over `batches` (the model in eval mode); None without a learned token."""
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        total += float(model(**batch).loss) * n
        count += n
    return total / count if count else None


def mean_text_loss(model, processor, sentences: Sequence[str], batch_size: int = 64) -> float | None:
    """Mean next-token loss of text-only sentences (token-weighted)."""
    ids = encode_text(processor, sentences)
    pad_id = processor.tokenizer.pad_token_id
    return mean_loss(
        model, (text_batch(ids[start : start + batch_size], pad_id) for start in range(0, len(ids), batch_size))
    )


LOSS_PROBE_SAMPLES = 64


def loss_probes(
    text_ids: Sequence[torch.Tensor], captions: EncodedCaptions, pad_id: int
) -> dict[str, list[dict[str, torch.Tensor]]]:
    """The fixed batches whose loss the pretraining record gives before and after: the first
    LOSS_PROBE_SAMPLES training samples of each kind (text, caption) there is."""
    probes = {}
    if text_ids:
        probes["text"] = [text_batch(list(text_ids[:LOSS_PROBE_SAMPLES]), pad_id)]
    if len(captions):
        probes["caption"] = [caption_batch(captions, range(min(LOSS_PROBE_SAMPLES, len(captions))), pad_id)]
    return probes


def pretrain(
    model,
    processor,
    products: Sequence[Product],
    tiny: TinyModelParams,
    instruction: str,
    synthetic: SyntheticShop,
    seed: int,
    work_dir: Path,
) -> dict:
    """Train in place on brand sentences and brand-free captions; returns the loss record.
    `work_dir`: a folder that does not exist yet, the Trainer's output_dir (nothing is saved in it),
    removed at the end."""
    started = time.perf_counter()
    threads = torch.get_num_threads()
    # The matrices are tiny: a second thread gains ~1.3x on an idle 2-core machine, but on a
    # loaded one (parallel jobs) oversubscribed threads made pretraining ten times slower.
    torch.set_num_threads(max(1, min(tiny.pretrain_threads, threads)))
    try:
        return _pretrain(model, processor, products, tiny, instruction, synthetic, seed, started, work_dir)
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(work_dir, ignore_errors=True)


def batch_plan(n_text: int, n_captions: int, tiny: TinyModelParams, seed: int) -> list[tuple[str, np.ndarray]]:
    """(kind, sample indices) of every pretraining step, in order."""
    rng = np.random.default_rng([seed, shop.STREAM_PRETRAIN, 2])

    # One epoch = every sample once, text and caption batches interleaved in a shuffled order.
    def batches(kind: str, n: int) -> list[tuple[str, np.ndarray]]:
        chunks = np.array_split(rng.permutation(n), max(1, math.ceil(n / tiny.pretrain_batch_size)))
        return [(kind, c) for c in chunks if len(c)]

    # Captions alone first: a randomly initialised model learns to look at the image tokens much
    # sooner when text-only batches (whose colour words are random) do not compete.
    plan: list[tuple[str, np.ndarray]] = []
    for _ in range(tiny.pretrain_caption_first_epochs):
        plan += batches("caption", n_captions)
    for _ in range(tiny.pretrain_epochs):
        epoch = batches("text", n_text) + batches("caption", n_captions)
        plan += [epoch[i] for i in rng.permutation(len(epoch))]
    return plan


class PlannedBatches(torch.utils.data.Dataset):
    """The pretraining plan as the Trainer's dataset: item i is the whole, ready batch of step i.

    The plan is seeded and shuffled already, so the Trainer reads it in order (sequential sampler,
    one item per step)."""

    def __init__(
        self,
        plan: Sequence[tuple[str, np.ndarray]],
        text_ids: Sequence[torch.Tensor],
        captions: EncodedCaptions,
        pad_id: int,
    ):
        self.plan, self.text_ids, self.captions, self.pad_id = list(plan), text_ids, captions, pad_id

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        kind, idx = self.plan[step]
        if kind == "text":
            return text_batch([self.text_ids[i] for i in idx], self.pad_id)
        return caption_batch(self.captions, idx, self.pad_id)


def whole_batch(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The Trainer's collator for `PlannedBatches`: its one item is already a batch."""
    (batch,) = items
    return batch


def pretraining_arguments(tiny: TinyModelParams, steps: int, seed: int, output_dir: Path) -> TrainingArguments:
    """One pass over the plan: AdamW, 5% warm-up, then cosine down to a tenth of the peak."""
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=1,  # one PlannedBatches item = one batch
        train_sampling_strategy="sequential",
        learning_rate=tiny.pretrain_learning_rate,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1},
        warmup_steps=max(1, steps // 20),
        weight_decay=0.01,
        max_grad_norm=1.0,
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False,
        label_names=["labels"],
        report_to=[],
        # No per-step logging: it cost a quarter of the pretraining time; the record measures the loss
        # of fixed batches before and after instead (`loss_probes`).
        logging_strategy="no",
        disable_tqdm=True,  # StepProgressCallback shows progress
        save_strategy="no",
    )


def _train_on_plan(
    model, plan, text_ids, captions: EncodedCaptions, pad_id: int, tiny: TinyModelParams, seed: int, work_dir: Path
) -> float:
    """One Trainer pass over a non-empty plan (the Trainer refuses zero steps); returns the mean training loss."""
    trainer = Trainer(
        model=model,
        args=pretraining_arguments(tiny, len(plan), seed, work_dir),
        train_dataset=PlannedBatches(plan, text_ids, captions, pad_id),
        data_collator=whole_batch,
        callbacks=[StepProgressCallback("pretrain tiny base", log)],
    )
    trainer.remove_callback(PrinterCallback)
    return trainer.train().training_loss


def _pretrain(model, processor, products, tiny, instruction, synthetic, seed, started, work_dir: Path) -> dict:
    torch.manual_seed(seed)
    pad_id = processor.tokenizer.pad_token_id
    sentences = text_samples(products, tiny.pretrain_text_samples, seed, processor, instruction)
    pairs = caption_samples(tiny.pretrain_samples, synthetic, seed)
    text_ids = encode_text(processor, sentences)
    cap_ids = encode_captions(processor, pairs, instruction) if pairs else EncodedCaptions([], [], torch.empty(0))

    plan = batch_plan(len(text_ids), len(cap_ids), tiny, seed)
    probes = loss_probes(text_ids, cap_ids, pad_id)
    before = {kind: mean_loss(model, batches) for kind, batches in probes.items()}
    mean_training_loss = _train_on_plan(model, plan, text_ids, cap_ids, pad_id, tiny, seed, work_dir) if plan else None
    after = {kind: mean_loss(model, batches) for kind, batches in probes.items()}

    record = {
        "steps": len(plan),
        "text_samples": len(text_ids),
        "caption_samples": len(cap_ids),
        "caption_only_epochs": tiny.pretrain_caption_first_epochs,
        "mixed_epochs": tiny.pretrain_epochs,
        "mean_training_loss": mean_training_loss,
        "text_loss_before": before.get("text"),
        "text_loss_after": after.get("text"),
        "caption_loss_before": before.get("caption"),
        "caption_loss_after": after.get("caption"),
    }
    log.info(
        "pretrained tiny base: %d steps (%d sentences, %d captioned images; %d caption-only + %d mixed epochs) in %.1fs; "
        "text loss %.3f -> %.3f, caption loss %.3f -> %.3f",
        record["steps"],
        record["text_samples"],
        record["caption_samples"],
        record["caption_only_epochs"],
        record["mixed_epochs"],
        time.perf_counter() - started,
        record["text_loss_before"] or float("nan"),
        record["text_loss_after"] or float("nan"),
        record["caption_loss_before"] or float("nan"),
        record["caption_loss_after"] or float("nan"),
    )
    return record
