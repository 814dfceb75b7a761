"""The exact trainable parameter set of every freezing strategy on a tiny InternVL model.

.venv/bin/python -m pytest tests/test_strategies.py -q
"""

from __future__ import annotations

import pytest
from torch import nn

from brandcap.config.params import LoraParams, TinyModelParams
from brandcap.model.strategies import STRATEGIES, apply_strategy, count_parameters, model_parts, part_parameter_names
from brandcap.sim.tiny_model import build_tiny_model

TINY = TinyModelParams(
    vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=64, text_layers=2, text_heads=2, vocab_size=400
)
CORPUS = [
    f"A {c} {k} by {b}." for b in ("Gucci", "Prada", "Celine") for c in ("red", "blue") for k in ("bag", "shoe")
] * 10


@pytest.fixture(scope="module")
def built():
    return build_tiny_model(CORPUS, TINY, seed=0)


@pytest.fixture
def model(built):
    from copy import deepcopy

    return deepcopy(built[0])


def _names(model, part_name):
    return part_parameter_names(model, model_parts(model)[part_name])


def _trainable(model):
    return {name for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    "strategy, trained",
    [
        ("freeze_llm", ("vision_tower", "multi_modal_projector")),
        ("freeze_vision", ("multi_modal_projector", "language_model", "lm_head")),
        ("projector_only", ("multi_modal_projector",)),
        ("full", ("vision_tower", "multi_modal_projector", "language_model", "lm_head")),
    ],
)
def test_plain_strategies_train_exactly_their_parts(model, strategy, trained):
    expected = set().union(*(_names(model, part) for part in trained))
    apply_strategy(model, strategy, LoraParams())
    assert _trainable(model) == expected
    assert expected  # the parts are not empty
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen.isdisjoint(expected)
    assert frozen | expected == {name for name, _ in model.named_parameters()}


def test_parts_partition_the_model(model):
    parts = model_parts(model)
    names = {part: _names(model, part) for part in parts}
    assert set().union(*names.values()) == {name for name, _ in model.named_parameters()}
    # parts overlap only through tied tensors (lm_head shares the input embedding, as in Qwen2.5-0.5B)
    assert names["vision_tower"].isdisjoint(names["language_model"] | names["multi_modal_projector"])
    shared = names["lm_head"] & names["language_model"]
    assert all(model.get_parameter(n) is model.lm_head.weight for n in shared)


def test_freeze_llm_is_the_reference_study(model):
    apply_strategy(model, "freeze_llm", LoraParams())
    assert all(not p.requires_grad for p in model.model.language_model.parameters())
    assert all(not p.requires_grad for p in model.lm_head.parameters())
    assert all(p.requires_grad for p in model.model.vision_tower.parameters())
    assert all(p.requires_grad for p in model.model.multi_modal_projector.parameters())


@pytest.mark.parametrize("train_projector", [True, False])
def test_lora_adapts_only_the_language_model(model, train_projector):
    lora = LoraParams(r=4, alpha=8, target_modules=["q_proj", "v_proj"], train_projector=train_projector)
    peft_model = apply_strategy(model, "lora", lora)
    trainable = _trainable(peft_model)
    lora_params = {n for n in trainable if "lora_" in n}
    projector_params = trainable - lora_params
    assert lora_params and all(".language_model." in n for n in lora_params)
    assert not any("vision_tower" in n and "lora_" in n for n, _ in peft_model.named_parameters())
    # an A and a B matrix for every q_proj and v_proj of every language-model layer
    adapted = {n.split(".lora_")[0] for n in lora_params}
    assert len(adapted) == 2 * TINY.text_layers
    assert {a.rsplit(".", 1)[-1] for a in adapted} == {"q_proj", "v_proj"}
    if train_projector:
        projector = peft_model.base_model.model.model.multi_modal_projector
        trained_copy = {id(p) for p in projector.modules_to_save.parameters()}
        assert projector_params and all("multi_modal_projector" in n for n in projector_params)
        assert {id(p) for n, p in peft_model.named_parameters() if n in projector_params} == trained_copy
    else:
        assert projector_params == set()


def test_count_parameters(model):
    total = sum(p.numel() for p in model.parameters())
    apply_strategy(model, "projector_only", LoraParams())
    projector = sum(p.numel() for p in model.model.multi_modal_projector.parameters())
    assert count_parameters(model) == (projector, total)


def test_unknown_lora_targets_fail_clearly(model):
    with pytest.raises(ValueError, match="target_modules"):
        apply_strategy(model, "lora", LoraParams(target_modules=["not_a_layer"]))


def test_other_architectures_are_refused():
    with pytest.raises(TypeError, match="vision_tower"):
        apply_strategy(nn.Linear(2, 2), "freeze_llm", LoraParams())


def test_unknown_strategy(model):
    with pytest.raises(ValueError, match="unknown strategy"):
        apply_strategy(model, "freeze_everything", LoraParams())
    assert set(STRATEGIES) == {"freeze_llm", "freeze_vision", "projector_only", "lora", "full"}
