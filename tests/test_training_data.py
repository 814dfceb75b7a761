"""Training samples: label masking, template parity with evaluation, truncation, bad input.

    .venv/bin/python -m pytest tests/test_training_data.py -q
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from brandcap.chat import prompt_text
from brandcap.params import TinyModelParams
from brandcap.tiny_model import build_tiny_model, image_seq_length
from brandcap.training_data import IGNORE_INDEX, CaptionCollator, CaptionDataset

TINY = TinyModelParams(vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=64, text_layers=2, text_heads=2, vocab_size=400)
CORPUS = [f"A {c} {k} by {b}." for b in ("Gucci", "Prada", "Celine") for c in ("red", "blue") for k in ("bag", "shoe")] * 10
INSTRUCTION = "Describe this product photo."
CAPTIONS = ["A red bag by Gucci.", "A blue shoe by Prada with a long strap and a golden buckle."]


@pytest.fixture(scope="module")
def processor():
    return build_tiny_model(CORPUS, TINY, seed=0)[1]


def _image(colour, size=(48, 48)):
    return Image.fromarray(np.full((*size, 3), colour, np.uint8))


@pytest.fixture
def samples():
    return [{"image": _image((200, 0, 0)), "caption": CAPTIONS[0]}, {"image": _image((0, 0, 200)), "caption": CAPTIONS[1]}]


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
        evaluation = processor(text=prompt_text(processor, INSTRUCTION), images=[sample["image"]], return_tensors="pt")
        n = evaluation["input_ids"].shape[1]
        assert batch["input_ids"][row, :n].tolist() == evaluation["input_ids"][0].tolist()
        assert (batch["labels"][row, :n] == IGNORE_INDEX).all()
        assert batch["labels"][row, n] != IGNORE_INDEX  # the answer starts right after the prompt
        assert np.allclose(batch["pixel_values"][row].numpy(), evaluation["pixel_values"][0].numpy())
    image_tokens = (batch["input_ids"] == processor.image_token_id).sum(dim=1)
    assert image_tokens.tolist() == [image_seq_length(TINY)] * 2


def test_images_tiled_into_several_patches_keep_all_their_tokens(processor, samples):
    # InternVLProcessor tiles a non-square image (crop_to_patches); each tile brings its own image tokens
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
    prompt_len = len(collate.prompt_inputs([samples[0]["image"]])["input_ids"][0])
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
    (tmp_path / "train.jsonl").write_text(json.dumps({"product_id": "p1", "image": "img/p1.png", "brand": "Gucci", "caption": CAPTIONS[0]}) + "\n")
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
