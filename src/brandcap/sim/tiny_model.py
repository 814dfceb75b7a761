"""A tiny InternVL-architecture model built with the same transformers classes as the real one.

    model, processor = build_tiny_model(corpus, params.model.tiny, seed=4)

`InternVLForConditionalGeneration` (InternViT-style vision tower, pixel-shuffle projector,
Qwen2 language model) with an `InternVLProcessor` whose byte-level BPE tokenizer is trained
here on the shop's text, so nothing is downloaded. The chat template is ChatML with
InternVL's `<IMG_CONTEXT>` image placeholder, which the processor expands.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GotOcr2ImageProcessor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    PreTrainedTokenizerFast,
    Qwen2Config,
)
from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor

from brandcap.config.params import ImageTilingParams, TinyModelParams
from brandcap.model.chat import set_image_tiling

END_OF_TEXT, IM_START, IM_END, PAD = "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"
IMAGE_START, IMAGE_END, IMAGE_CONTEXT, VIDEO = "<img>", "</img>", "<IMG_CONTEXT>", "<video>"
SPECIAL_TOKENS = [END_OF_TEXT, IM_START, IM_END, PAD, IMAGE_START, IMAGE_END, IMAGE_CONTEXT, VIDEO]

# ChatML, as InternVL's Qwen2-based checkpoints use; an image content part becomes <IMG_CONTEXT>.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
DOWNSAMPLE_RATIO = 0.5  # InternVL's pixel shuffle: 4 patches -> 1 image token


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (any text is encodable) trained on `corpus`, with InternVL's image tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD,
        extra_special_tokens={
            "start_image_token": IMAGE_START,
            "end_image_token": IMAGE_END,
            "context_image_token": IMAGE_CONTEXT,
            "video_token": VIDEO,
        },
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def image_seq_length(tiny: TinyModelParams) -> int:
    patches = (tiny.image_size // tiny.patch_size) ** 2
    return int(patches * DOWNSAMPLE_RATIO**2)


def build_processor(
    tokenizer: PreTrainedTokenizerFast, tiny: TinyModelParams, tiling: ImageTilingParams = ImageTilingParams()
) -> InternVLProcessor:
    """InternVL's processor for tiles of `tiny.image_size` px, `image_seq_length(tiny)` tokens each
    (448 px with patch 14 gives the real models' 256), tiling images as `tiling` says."""
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size={"height": tiny.image_size, "width": tiny.image_size}),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(),
        image_seq_length=image_seq_length(tiny),
        chat_template=CHAT_TEMPLATE,
    )
    set_image_tiling(processor, tiling)
    return processor


def build_config(tokenizer: PreTrainedTokenizerFast, tiny: TinyModelParams) -> InternVLConfig:
    vision = dict(
        hidden_size=tiny.vision_hidden,
        num_hidden_layers=tiny.vision_layers,
        num_attention_heads=tiny.vision_heads,
        intermediate_size=tiny.vision_hidden * 4,
        image_size=tiny.image_size,
        patch_size=tiny.patch_size,
    )
    text = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=tiny.text_hidden,
        intermediate_size=tiny.text_hidden * 4,
        num_hidden_layers=tiny.text_layers,
        num_attention_heads=tiny.text_heads,
        num_key_value_heads=tiny.text_heads,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    return InternVLConfig(
        vision_config=vision,
        text_config=text.to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_CONTEXT),
        image_seq_length=image_seq_length(tiny),
        downsample_ratio=DOWNSAMPLE_RATIO,
    )


def build_tiny_model(
    corpus: Iterable[str], tiny: TinyModelParams, seed: int, tiling: ImageTilingParams = ImageTilingParams()
) -> tuple[InternVLForConditionalGeneration, InternVLProcessor]:
    """A randomly initialised tiny InternVL and its processor; untrained, deterministic by seed."""
    tokenizer = train_tokenizer(corpus, tiny.vocab_size)
    processor = build_processor(tokenizer, tiny, tiling)
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(build_config(tokenizer, tiny))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, processor
