"""Training samples: label masking, template parity with evaluation, image tiling, truncation, bad input.

.venv/bin/python -m pytest tests/test_training_data.py -q
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from brandcap.config.params import ImageTilingParams, ParamsError, TinyModelParams, validate_params
from brandcap.model.chat import (
    check_prompt_fits,
    check_tiling_matches,
    encode_prompts,
    image_tiling_kwargs,
)
from brandcap.model.training_data import IGNORE_INDEX, CaptionCollator, CaptionDataset
from brandcap.sim.tiny_model import build_processor, build_tiny_model, image_seq_length, train_tokenizer

TINY = TinyModelParams(
    vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=64, text_layers=2, text_heads=2, vocab_size=400
)
CORPUS = [
    f"A {c} {k} by {b}." for b in ("Gucci", "Prada", "Celine") for c in ("red", "blue") for k in ("bag", "shoe")
] * 10
INSTRUCTION = "Describe this product photo."
TILED = ImageTilingParams(enabled=True)  # InternVL's own setting: up to 12 tiles + a thumbnail
# The real InternVL3 processor's shape: 448 px tiles, 14 px patches, 256 image tokens per tile
REAL_SHAPE = TinyModelParams(image_size=448, patch_size=14, vocab_size=400)
PORTRAIT = (336, 448)  # width x height of a product photo the downloader normalised (max_side 448)
CAPTIONS = ["A red bag by Gucci.", "A blue shoe by Prada with a long strap and a golden buckle."]


@pytest.fixture(scope="module")
def processor():
    return build_tiny_model(CORPUS, TINY, seed=0, tiling=TILED)[1]


@pytest.fixture(scope="module")
def real_tokenizer():
    return train_tokenizer(CORPUS, REAL_SHAPE.vocab_size)


def real_processor(tokenizer, **tiling):
    return build_processor(tokenizer, REAL_SHAPE, ImageTilingParams(**tiling))


def _image(colour, size=(48, 48)):
    return Image.fromarray(np.full((*size, 3), colour, np.uint8))


@pytest.fixture
def samples():
    return [
        {"image": _image((200, 0, 0)), "caption": CAPTIONS[0]},
        {"image": _image((0, 0, 200)), "caption": CAPTIONS[1]},
    ]


def test_only_the_answer_and_its_end_token_carry_labels(processor, samples):
    batch = CaptionCollator(processor, INSTRUCTION, max_length=512)(samples)
    tok = processor.tokenizer
    for row, caption in enumerate(CAPTIONS):
        labels = batch["labels"][row]
        learned = labels[labels != IGNORE_INDEX].tolist()
        assert tok.decode(learned) == caption + tok.eos_token
        assert learned[-1] == tok.eos_token_id
        # the learned tokens are exactly the last real tokens of the row (right padding)
        length = int(batch["attention_mask"][row].sum())
        assert batch["input_ids"][row, length - len(learned) : length].tolist() == learned
        assert (labels[: length - len(learned)] == IGNORE_INDEX).all()
        assert (labels[length:] == IGNORE_INDEX).all()
        assert (batch["input_ids"][row, length:] == tok.pad_token_id).all()
        assert batch["attention_mask"][row, :length].all()
    # the shorter caption is padded on the right
    assert batch["attention_mask"][0, -1] == 0 and batch["attention_mask"][1, -1] == 1


def test_prompt_part_tokenizes_exactly_like_the_evaluation_prompt(processor, samples):
    batch = CaptionCollator(processor, INSTRUCTION, max_length=512)(samples)
    for row, sample in enumerate(samples):
        evaluation = encode_prompts(processor, INSTRUCTION, [sample["image"]], return_tensors="pt")
        n = evaluation["input_ids"].shape[1]
        assert batch["input_ids"][row, :n].tolist() == evaluation["input_ids"][0].tolist()
        assert (batch["labels"][row, :n] == IGNORE_INDEX).all()
        assert batch["labels"][row, n] != IGNORE_INDEX  # the answer starts right after the prompt
        assert np.allclose(batch["pixel_values"][row].numpy(), evaluation["pixel_values"][0].numpy())
    image_tokens = (batch["input_ids"] == processor.image_token_id).sum(dim=1)
    assert image_tokens.tolist() == [image_seq_length(TINY)] * 2


def test_images_tiled_into_several_patches_keep_all_their_tokens(processor, samples):
    # with tiling on, a non-square image becomes several tiles; each tile brings its own image tokens
    samples[1]["image"] = _image((0, 0, 200), size=(40, 90))
    batch = CaptionCollator(processor, INSTRUCTION, max_length=2048)(samples)
    tiles = batch["pixel_values"].shape[0] - 1
    assert tiles > 1
    image_tokens = (batch["input_ids"] == processor.image_token_id).sum(dim=1)
    assert image_tokens.tolist() == [image_seq_length(TINY), tiles * image_seq_length(TINY)]
    learned = batch["labels"][1][batch["labels"][1] != IGNORE_INDEX].tolist()
    assert processor.tokenizer.decode(learned) == CAPTIONS[1] + processor.tokenizer.eos_token


def test_truncation_cuts_the_answer_never_the_image(processor, samples):
    collate = CaptionCollator(processor, INSTRUCTION, max_length=512)
    prompt_len = len(collate.prompt_inputs([samples[0]])["input_ids"][0])
    batch = CaptionCollator(processor, INSTRUCTION, max_length=prompt_len + 3)(samples)
    assert batch["input_ids"].shape[1] == prompt_len + 3
    assert ((batch["labels"] != IGNORE_INDEX).sum(dim=1) == 3).all()
    assert ((batch["input_ids"] == processor.image_token_id).sum(dim=1) == image_seq_length(TINY)).all()
    with pytest.raises(ValueError, match="train.max_length"):
        CaptionCollator(processor, INSTRUCTION, max_length=prompt_len)(samples)


def test_dataset_reads_records_relative_to_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "img").mkdir()
    _image((10, 200, 10)).save(tmp_path / "img" / "p1.png")
    (tmp_path / "train.jsonl").write_text(
        json.dumps({"product_id": "p1", "image": "img/p1.png", "brand": "Gucci", "caption": CAPTIONS[0]}) + "\n"
    )
    dataset = CaptionDataset("train.jsonl")
    assert len(dataset) == 1
    item = dataset[0]
    assert item["caption"] == CAPTIONS[0] and item["image"].mode == "RGB" and item["image"].size == (48, 48)


def test_dataset_bad_input_names_file_line_and_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"product_id": "p1", "image": "img/p1.png", "brand": "Gucci"}) + "\n")
    with pytest.raises(ValueError, match=r"line 1 lacks \['caption'\]"):
        CaptionDataset(path)
    path.write_text(json.dumps({"product_id": "p1", "image": "missing.png", "brand": "Gucci", "caption": "x"}) + "\n")
    with pytest.raises(ValueError, match="missing.png.*cannot be read"):
        CaptionDataset(path)[0]
    with pytest.raises(FileNotFoundError, match="clean stage"):
        CaptionDataset(tmp_path / "nope.jsonl")


# ----------------------------------------------------------------------------- image tiling, real shape
def _image_tokens(processor, batch):
    return (batch["input_ids"] == processor.image_token_id).sum(dim=1).tolist()


@pytest.mark.parametrize(
    "tiling, tiles",
    [
        ({"enabled": True}, 13),  # a 3:4 grid of 12 tiles + the thumbnail, as transformers does by default
        ({"enabled": True, "max_tiles": 6}, 7),  # 2 x 3 + thumbnail
        ({"enabled": False}, 1),  # what the call default crop_to_patches=True would override
        ({"enabled": True, "max_tiles": 1}, 1),
    ],
)
def test_portrait_photo_tiles_as_params_say(real_tokenizer, tiling, tiles):
    processor = real_processor(real_tokenizer, **tiling)
    portrait = {"image": _image((120, 60, 30), size=PORTRAIT[::-1]), "caption": CAPTIONS[0]}
    batch = CaptionCollator(processor, INSTRUCTION, max_length=4096)([portrait])
    assert tuple(batch["pixel_values"].shape) == (tiles, 3, 448, 448)
    assert _image_tokens(processor, batch) == [tiles * 256]


def test_tiling_is_saved_with_the_processor(real_tokenizer, tmp_path):
    from transformers import AutoProcessor

    processor = real_processor(real_tokenizer, enabled=True, min_tiles=2, max_tiles=6)
    processor.save_pretrained(tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert image_tiling_kwargs(reloaded) == {"crop_to_patches": True, "min_patches": 2, "max_patches": 6}
    square = [_image((0, 90, 0), size=(448, 448))]
    # min_tiles 2: even a square image is cut (2 x 2 tiles + thumbnail), exactly as before saving
    assert len(encode_prompts(reloaded, INSTRUCTION, square)["pixel_values"]) == 5
    assert len(encode_prompts(processor, INSTRUCTION, square)["pixel_values"]) == 5
    check_tiling_matches(reloaded, ImageTilingParams(enabled=True, min_tiles=2, max_tiles=6), str(tmp_path))
    with pytest.raises(
        ValueError,
        match=r"models/base: its processor tiles images with \(enabled: true, min_tiles: 2, max_tiles: 6\).*rerun the base_model stage",
    ):
        check_tiling_matches(reloaded, ImageTilingParams(), "models/base")


def test_max_length_too_short_for_the_most_tiled_image_fails_early(real_tokenizer):
    processor = real_processor(real_tokenizer, enabled=True)
    with pytest.raises(ValueError) as err:
        check_prompt_fits(processor, INSTRUCTION, 1024)
    message = str(err.value)
    assert "train.max_length (1024) leaves no room for the answer" in message
    assert "13 tiles (12 + a thumbnail) x 256 = 3,328 image tokens" in message
    assert "set model.image_tiling.max_tiles: 1 or enabled: false" in message
    # the worst case is measured, not guessed: a 3:4 portrait takes exactly that many tokens
    portrait = encode_prompts(processor, INSTRUCTION, [_image((1, 2, 3), size=PORTRAIT[::-1])])
    prompt_tokens = len(portrait["input_ids"][0])
    assert f"a prompt of {prompt_tokens:,} tokens" in message
    assert check_prompt_fits(processor, INSTRUCTION, prompt_tokens + 1) == prompt_tokens

    one_tile = real_processor(real_tokenizer, enabled=False)
    assert check_prompt_fits(one_tile, INSTRUCTION, 1024) == prompt_tokens - 12 * 256
    with pytest.raises(ValueError, match=r"1 tile x 256 = 256 image tokens.*raise train.max_length above") as err:
        check_prompt_fits(one_tile, INSTRUCTION, 200)
    assert "max_tiles: 1" not in str(err.value)


def test_tiling_params_are_validated():
    with pytest.raises(ParamsError, match="model.image_tiling.min_tiles \\(4\\) is above max_tiles \\(2\\)"):
        validate_params({"model": {"image_tiling": {"enabled": True, "min_tiles": 4, "max_tiles": 2}}})
    assert validate_params({}).model.image_tiling == ImageTilingParams(enabled=False, min_tiles=1, max_tiles=12)


def test_one_layout_pads_either_side_and_cuts_only_the_answer():
    from brandcap.model.training_data import prompt_answer_batch

    right = prompt_answer_batch([[5, 6, 7], [5]], [[8, 9], [8, 9, 10, 11]], pad_id=0, max_length=4)
    assert right["input_ids"].tolist() == [[5, 6, 7, 8], [5, 8, 9, 10]]
    assert right["labels"].tolist() == [[IGNORE_INDEX] * 3 + [8], [IGNORE_INDEX, 8, 9, 10]]
    left = prompt_answer_batch([[5], []], [[8], [8, 9, 10]], pad_id=0, padding_side="left")
    assert left["input_ids"].tolist() == [[0, 5, 8], [8, 9, 10]]
    assert left["attention_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert left["labels"].tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 8], [8, 9, 10]]
