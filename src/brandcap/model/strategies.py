"""Freezing strategies: which parts of an InternVL model train.

    model = apply_strategy(model, "freeze_llm", params.train.lora)
    trainable, total = count_parameters(model)

Parts are taken from the model's own module attributes (`model.model.vision_tower`,
`model.model.multi_modal_projector`, `model.model.language_model`, `model.lm_head`), never
from guessed name patterns, so a renamed layer cannot silently stay trainable.

| strategy        | vision tower | projector | language model + lm_head |
|-----------------|--------------|-----------|--------------------------|
| freeze_llm      | train        | train     | frozen (the reference study) |
| freeze_vision   | frozen       | train     | train (InternVL's default)   |
| projector_only  | frozen       | train     | frozen                       |
| lora            | frozen       | train iff lora.train_projector | LoRA adapters on lora.target_modules |
| full            | train        | train     | train                        |
"""

from __future__ import annotations

from typing import get_args

from torch import nn

from brandcap.config.params import LoraParams, Strategy

STRATEGIES: tuple[str, ...] = get_args(Strategy)

# Which parts train, for the strategies that only toggle requires_grad.
TRAINED_PARTS: dict[str, tuple[str, ...]] = {
    "freeze_llm": ("vision_tower", "multi_modal_projector"),
    "freeze_vision": ("multi_modal_projector", "language_model", "lm_head"),
    "projector_only": ("multi_modal_projector",),
    "full": ("vision_tower", "multi_modal_projector", "language_model", "lm_head"),
}


def model_parts(model: nn.Module) -> dict[str, nn.Module]:
    """The four parts of an InternVL-style model, by attribute; fails clearly on another architecture."""
    inner = getattr(model, "model", None)
    try:
        parts = {
            "vision_tower": inner.vision_tower,
            "multi_modal_projector": inner.multi_modal_projector,
            "language_model": inner.language_model,
            "lm_head": model.lm_head,
        }
    except AttributeError as err:
        raise TypeError(
            f"{type(model).__name__} is not an InternVL-style model ({err}); the freezing strategies need "
            "model.model.vision_tower, .multi_modal_projector, .language_model and model.lm_head "
            "(use an HF-native InternVL checkpoint, e.g. OpenGVLab/InternVL3-1B-hf)"
        ) from None
    _check_parts_cover_model(model, parts)
    return parts


def _check_parts_cover_model(model: nn.Module, parts: dict[str, nn.Module]) -> None:
    in_parts = {id(p) for part in parts.values() for p in part.parameters()}
    orphans = [name for name, p in model.named_parameters() if id(p) not in in_parts]
    if orphans:
        raise TypeError(
            f"{type(model).__name__} has parameters outside the vision tower, projector, language model and lm_head "
            f"(e.g. {orphans[:3]}); a freezing strategy cannot decide about them"
        )


def part_parameter_names(model: nn.Module, part: nn.Module) -> set[str]:
    """Full names (as in model.named_parameters) of the parameters of one part, matched by identity."""
    ids = {id(p) for p in part.parameters()}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def _module_names_in(model: nn.Module, part: nn.Module) -> dict[int, str]:
    """id(module) -> full module name, for every module inside `part`."""
    ids = {id(m) for m in part.modules()}
    return {id(m): name for name, m in model.named_modules() if id(m) in ids}


def lora_target_names(model: nn.Module, target_modules: list[str]) -> list[str]:
    """Full names of the language model's nn.Linear layers whose last name is in target_modules."""
    language_model = model_parts(model)["language_model"]
    names = _module_names_in(model, language_model)
    targets = sorted(
        names[id(m)]
        for m in language_model.modules()
        if isinstance(m, nn.Linear) and names[id(m)].rsplit(".", 1)[-1] in target_modules
    )
    if not targets:
        raise ValueError(
            f"train.lora.target_modules {target_modules} match no linear layer of the language model; "
            "use names such as q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"
        )
    return targets


def apply_strategy(model: nn.Module, strategy: Strategy, lora: LoraParams) -> nn.Module:
    """Set requires_grad for `strategy`; returns the model (a peft model for `lora`)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    parts = model_parts(model)
    model.requires_grad_(False)
    if strategy != "lora":
        for name in TRAINED_PARTS[strategy]:
            parts[name].requires_grad_(True)
        return model

    from peft import LoraConfig, get_peft_model

    projector_name = _module_names_in(model, parts["multi_modal_projector"])[id(parts["multi_modal_projector"])]
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        # exact full names, resolved inside the language model, so the vision tower's
        # q_proj/k_proj/v_proj never get adapters
        target_modules=lora_target_names(model, list(lora.target_modules)),
        modules_to_save=[projector_name] if lora.train_projector else None,
        bias="none",
    )
    return get_peft_model(model, config)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; shared (tied) tensors count once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total
