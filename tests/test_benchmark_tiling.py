"""The pure helpers of `benchmarks/train.py --tiling-report`: token counts through the real
processor path and the analytic FLOP model behind the seed004 time estimate (no model is built)."""

import importlib.util
import sys
from pathlib import Path

import pytest

from brandcap.config.params import ImageTilingParams, TinyModelParams
from brandcap.sim.tiny_model import build_processor, train_tokenizer

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "train.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_train", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@pytest.fixture(scope="module")
def tokenizer(bench):
    return train_tokenizer([bench.caption(i) for i in range(40)], 300)


def counts(bench, tokenizer, tiling):
    processor = build_processor(tokenizer, TinyModelParams(image_size=448, patch_size=14), tiling)
    return {row.shape: row for row in bench.prompt_token_counts(processor, "Describe the product.", caption_tokens=200)}


def test_tiling_off_gives_every_photo_one_tile_of_256_tokens(bench, tokenizer):
    rows = counts(bench, tokenizer, ImageTilingParams(enabled=False))
    assert {(r.tiles, r.image_tokens) for r in rows.values()} == {(1, 256)}
    portrait = rows["portrait 336x448"]
    assert portrait.sample_tokens == portrait.prompt_tokens + 200 + 1  # caption + end-of-turn token


def test_tiling_on_counts_the_tiles_and_thumbnail_the_processor_makes(bench, tokenizer):
    off = counts(bench, tokenizer, ImageTilingParams(enabled=False))["portrait 336x448"]
    rows = counts(bench, tokenizer, ImageTilingParams(enabled=True, max_tiles=12))
    assert (rows["portrait 336x448"].tiles, rows["portrait 336x448"].image_tokens) == (13, 13 * 256)
    assert rows["square 448x448"].tiles == 1  # a square photo of one tile's size is not tiled
    assert rows["portrait 336x448"].prompt_tokens - off.prompt_tokens == 12 * 256


def test_tower_flops_match_the_published_parameter_counts(bench):
    # Qwen2.5-1.5B: 1.31B non-embedding parameters; InternViT-300M: 0.3B; a forward is 2 FLOPs per weight and token
    assert bench.QWEN25_1_5B.forward_flops(1, 1, causal=True) / 2 == pytest.approx(1.31e9, rel=0.01)
    assert bench.INTERNVIT_300M.forward_flops(1, 1, causal=False) / 2 == pytest.approx(0.30e9, rel=0.02)


def test_frozen_llm_costs_two_forwards_trained_vision_three_checkpointing_one_more(bench):
    plain = bench.training_flops(tiles=1, seq_len=500, checkpointing=False)
    checkpointed = bench.training_flops(tiles=1, seq_len=500, checkpointing=True)
    llm_forward = bench.QWEN25_1_5B.forward_flops(1, 500, causal=True)
    assert plain["llm"] == pytest.approx(2 * llm_forward)
    assert checkpointed["llm"] == pytest.approx(3 * llm_forward)
    assert checkpointed["vision"] == pytest.approx(plain["vision"] * 4 / 3)
    assert checkpointed["head"] == plain["head"]
