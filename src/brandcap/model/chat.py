"""Rendering and encoding samples through the processor, identically for training and evaluation.

    set_image_tiling(processor, params.model.image_tiling)        # base_model stage, saved with it
    check_prompt_settings(processor, params, "models/base")       # train and evaluate, before any work
    inputs = encode_prompts(processor, params.train.instruction, images, return_tensors="pt")

The reference study's lesson: a prompt format that differs between training and evaluation
can drive accuracy to zero. Both sides call `prompt_text`, so they cannot drift.

Image tiling has the same risk: `InternVLProcessor.__call__` passes `crop_to_patches=True` by
default, overriding what the image processor's saved config says. `encode` is the one place that
calls the processor with images, and it passes the tiling saved in the processor's own image
processor (written there by the base_model stage from `model.image_tiling`), so pretraining,
training, generation and the test loss tile every image alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image


def user_messages(instruction: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]


def prompt_text(processor, instruction: str) -> str:
    """The rendered user turn plus the assistant header: what the model sees before answering."""
    return processor.apply_chat_template(user_messages(instruction), add_generation_prompt=True, tokenize=False)


def answer_text(processor, caption: str) -> str:
    """The assistant answer followed by the end-of-turn token the model must learn to emit."""
    return caption + processor.tokenizer.eos_token


# ----------------------------------------------------------------------------- image tiling
def set_image_tiling(processor, tiling) -> None:
    """Write `model.image_tiling` (an ImageTilingParams) into the processor; `save_pretrained` keeps it."""
    image_processor = processor.image_processor
    image_processor.crop_to_patches = tiling.enabled
    image_processor.min_patches = tiling.min_tiles
    image_processor.max_patches = tiling.max_tiles


def image_tiling_kwargs(processor) -> dict[str, Any]:
    """The processor's saved tiling as call arguments (the call default would otherwise tile)."""
    image_processor = processor.image_processor
    return {
        "crop_to_patches": bool(image_processor.crop_to_patches),
        "min_patches": int(image_processor.min_patches),
        "max_patches": int(image_processor.max_patches),
    }


def describe_tiling(processor) -> str:
    tiling = image_tiling_kwargs(processor)
    if not tiling["crop_to_patches"]:
        return "enabled: false"
    return f"enabled: true, min_tiles: {tiling['min_patches']}, max_tiles: {tiling['max_patches']}"


def check_tiling_matches(processor, tiling, source: str) -> None:
    """`model.image_tiling` in params is what `source`'s processor was saved with; else say how to rebuild."""
    saved = image_tiling_kwargs(processor)
    wanted = {"crop_to_patches": tiling.enabled, "min_patches": tiling.min_tiles, "max_patches": tiling.max_tiles}
    if saved != wanted:
        raise ValueError(
            f"{source}: its processor tiles images with ({describe_tiling(processor)}) but params set "
            f"model.image_tiling ({'enabled: true' if tiling.enabled else 'enabled: false'}, min_tiles: {tiling.min_tiles}, "
            f"max_tiles: {tiling.max_tiles}); rerun the base_model stage so the base model is built with these settings"
        )


# ----------------------------------------------------------------------------- encoding
def encode(processor, texts: list[str], images: list[Image.Image], **kwargs):
    """The one call of the processor with images, with the processor's saved tiling; kwargs go through."""
    return processor(text=texts, images=images, **image_tiling_kwargs(processor), **kwargs)


def encode_prompts(processor, instruction: str | Sequence[str], images: list[Image.Image], **kwargs):
    """Each image's prompt (user turn + assistant header), encoded with its image tokens and pixel values;
    `instruction` is one question for every image or one per image."""
    instructions = [instruction] * len(images) if isinstance(instruction, str) else list(instruction)
    rendered = {question: prompt_text(processor, question) for question in set(instructions)}
    return encode(processor, [rendered[question] for question in instructions], images, **kwargs)


def most_tiled_image(processor) -> Image.Image:
    """A blank image shaped as a 1 x max_tiles strip of tiles: the most tiles the settings allow."""
    size = processor.image_processor.size
    tiling = image_tiling_kwargs(processor)
    columns = tiling["max_patches"] if tiling["crop_to_patches"] else 1
    return Image.new("RGB", (size.width * columns, size.height))


def check_prompt_fits(processor, instruction: str, max_length: int) -> int:
    """Fail before any work when the longest possible prompt leaves no room for an answer; returns its length.

    The image tokens of a prompt depend only on its tile count, so the worst case is an image
    of the most tiled shape, measured with the same `encode_prompts` every stage uses.
    """
    encoded = encode_prompts(processor, instruction, [most_tiled_image(processor)])
    prompt_tokens = len(encoded["input_ids"][0])
    if prompt_tokens < max_length:
        return prompt_tokens
    tiles = len(encoded["pixel_values"])
    per_tile = processor.image_seq_length
    tiles_text = f"{tiles} tiles ({tiles - 1} + a thumbnail)" if tiles > 1 else "1 tile"
    one_tile_prompt = prompt_tokens - (tiles - 1) * per_tile
    fixes = [f"raise train.max_length above {prompt_tokens:,} (plus room for the answer)"]
    if tiles > 1 and one_tile_prompt < max_length:
        fixes.append(
            f"set model.image_tiling.max_tiles: 1 or enabled: false (one tile: a prompt of {one_tile_prompt:,} tokens)"
        )
    raise ValueError(
        f"train.max_length ({max_length}) leaves no room for the answer: with model.image_tiling ({describe_tiling(processor)}) "
        f"one image can become {tiles_text} x {per_tile} = {tiles * per_tile:,} image tokens, a prompt of "
        f"{prompt_tokens:,} tokens; {' or '.join(fixes)}"
    )


def check_prompt_settings(processor, params, source: str) -> int:
    """What the train and evaluate stages check before any work: the processor of `source` tiles
    as `model.image_tiling` says, and the longest prompt fits `train.max_length`."""
    check_tiling_matches(processor, params.model.image_tiling, source)
    return check_prompt_fits(processor, params.train.instruction, params.train.max_length)
