"""Delta checkpoints: save only what a strategy trained; rebuild base + delta for inference.

    model, processor = load_for_inference(Path("models/base"), Path("results/checkpoints/freeze_llm/seed-4/epoch-2"))
    model, processor = load_for_inference(Path("models/base"), None)   # the base model itself (epoch 0)

    series = CheckpointSeries(Path("models/base"))   # a run's checkpoints, one after another, on one loaded base
    for epoch_dir in epoch_dirs:
        model = series.model(epoch_dir)   # valid until the next call

A checkpoint directory holds one of
- `trainable.safetensors`: the trainable weights (freeze_llm, freeze_vision, projector_only),
- a peft adapter (`adapter_config.json`, `adapter_model.safetensors`) for lora,
- a whole `save_pretrained` model for full,
plus `brandcap_checkpoint.json`: experiment, strategy, epoch, the resolved params, trainable
and total parameters, the weights' dtype (the training precision), the saved size and the full
model's size in bytes. Loading casts the weights to the inference dtype.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from brandcap.files.atomic import read_json, staged_directory
from brandcap.files.product_table import CHECKPOINT_META
from brandcap.model.strategies import TRAINED_PARTS, model_parts, part_parameter_names

TRAINABLE_WEIGHTS = "trainable.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
# Parts whose weights a trainable.safetensors checkpoint holds (full saves the whole model instead)
_SAVED_PARTS = {s: parts for s, parts in TRAINED_PARTS.items() if s != "full"}


def checkpoint_format(strategy: str) -> str:
    return {"lora": "peft_adapter", "full": "full_model"}.get(strategy, "trainable_safetensors")


def state_bytes(model: nn.Module) -> int:
    """Bytes of the model's weights (parameters and persistent buffers, shared tensors once)."""
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def cast_floats(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """`tensor` in `dtype` when it holds floating-point values (integer buffers stay as they are)."""
    return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor


def trainable_state_dict(model: nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The trainable parameters on the CPU, in `dtype` (None = as they are)."""
    return {
        name: cast_floats(p.detach().to("cpu"), dtype).contiguous().clone()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def _state_with_trainable_cast(model: nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """The state dict for `save_pretrained`, trainable weights cast to `dtype` on the CPU; frozen ones
    (which a peft adapter does not save) stay where they are, uncopied."""
    # By storage, not name: tied weights (lm_head and the input embeddings) appear once among the
    # parameters but twice in the state dict, and must stay one tensor.
    trainable = {p.data_ptr() for p in model.parameters() if p.requires_grad}
    cast: dict[int, torch.Tensor] = {}
    state = {}
    for name, t in model.state_dict().items():
        if t.data_ptr() in trainable:
            t = cast.setdefault(t.data_ptr(), cast_floats(t.detach().to("cpu"), dtype))
        state[name] = t
    return state


def _directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def sort_target_modules(adapter_config: Path) -> None:
    """peft keeps `target_modules` as a set and writes it in that process's set order; sorted, the same
    adapter is a byte-identical file in every run (DVC hashes checkpoints: an order change alone would
    rerun every stage downstream)."""
    config = read_json(adapter_config, "save the adapter again")
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
        adapter_config.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def save_checkpoint(
    model: nn.Module, out_dir: Path, strategy: str, meta: dict[str, Any], dtype: torch.dtype | None = None
) -> int:
    """Write the delta of `model` for `strategy` into `out_dir` atomically; returns the saved bytes.

    Floating-point weights are stored in `dtype` (the training precision; None = as they are), so a
    bf16 run's checkpoint is half the size of its fp32 master weights. The directory appears
    complete or not at all: it is written under a temporary name and renamed.
    """
    with staged_directory(out_dir) as tmp:
        if strategy in ("lora", "full"):
            model.save_pretrained(tmp, state_dict=_state_with_trainable_cast(model, dtype))
            if (tmp / ADAPTER_CONFIG).exists():
                sort_target_modules(tmp / ADAPTER_CONFIG)
        else:
            save_file(trainable_state_dict(model, dtype), tmp / TRAINABLE_WEIGHTS, metadata={"strategy": strategy})
        saved = _directory_bytes(tmp)
        weights_dtype = str(dtype or next(model.parameters()).dtype).removeprefix("torch.")
        record = {
            **meta,
            "strategy": strategy,
            "format": checkpoint_format(strategy),
            "weights_dtype": weights_dtype,
            "saved_bytes": saved,
        }
        (tmp / CHECKPOINT_META).write_text(json.dumps(record, indent=2) + "\n")
    return saved


def read_checkpoint_meta(checkpoint_dir: Path) -> dict[str, Any]:
    meta_path = Path(checkpoint_dir) / CHECKPOINT_META
    if not meta_path.exists():
        raise FileNotFoundError(
            f"{checkpoint_dir}: not a brandcap checkpoint ({CHECKPOINT_META} missing); "
            "pass a results/checkpoints/<experiment>/seed-<S>/epoch-<N> directory written by the train stage"
        )
    return read_json(meta_path, "rerun the train stage that wrote this checkpoint")


def _default_dtype(device: str) -> torch.dtype:
    if str(device).startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _load_base(base_dir: Path, dtype: torch.dtype):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(base_dir, dtype=dtype)


def _trainable_weights(model: nn.Module, checkpoint_dir: Path, strategy: str) -> dict[str, torch.Tensor]:
    """A trainable.safetensors checkpoint's weights, checked against the parts `strategy` trains in `model`."""
    if strategy not in _SAVED_PARTS:
        raise ValueError(f"{checkpoint_dir}: strategy {strategy!r} does not store {TRAINABLE_WEIGHTS}")
    weights = load_file(checkpoint_dir / TRAINABLE_WEIGHTS)
    parts = model_parts(model)
    expected = set().union(*(part_parameter_names(model, parts[p]) for p in _SAVED_PARTS[strategy]))
    unexpected, missing = sorted(set(weights) - expected), sorted(expected - set(weights))
    if unexpected or missing:
        raise ValueError(
            f"{checkpoint_dir / TRAINABLE_WEIGHTS}: does not match the base model for strategy {strategy!r} "
            f"(unexpected keys {unexpected[:3]}, missing keys {missing[:3]}); "
            "was it trained on a different base model? Retrain it on this models/base"
        )
    return weights


def _load_trainable(model: nn.Module, checkpoint_dir: Path, strategy: str) -> None:
    # strict=False because the frozen weights come from the base; shapes are still checked
    model.load_state_dict(_trainable_weights(model, checkpoint_dir, strategy), strict=False)


def _load_model(base_dir: Path, checkpoint_dir: Path | None, dtype: torch.dtype):
    """The base model, or the base with a checkpoint's delta applied, freshly loaded from disk (on the CPU)."""
    from transformers import AutoModelForImageTextToText

    if checkpoint_dir is None:
        return _load_base(base_dir, dtype)
    strategy = read_checkpoint_meta(checkpoint_dir)["strategy"]
    if strategy == "full":
        return AutoModelForImageTextToText.from_pretrained(checkpoint_dir, dtype=dtype)
    if strategy == "lora":
        from peft import PeftModel

        if not (checkpoint_dir / ADAPTER_CONFIG).exists():
            raise FileNotFoundError(f"{checkpoint_dir}: LoRA checkpoint without {ADAPTER_CONFIG}; retrain it")
        return PeftModel.from_pretrained(_load_base(base_dir, dtype), checkpoint_dir).merge_and_unload()
    model = _load_base(base_dir, dtype)
    _load_trainable(model, checkpoint_dir, strategy)
    return model


def load_for_inference(
    base_dir: Path, checkpoint_dir: Path | None, device: str = "cpu", dtype: torch.dtype | None = None
):
    """(model, processor): the base model, or the base with a checkpoint's delta applied; in eval mode."""
    from transformers import AutoProcessor

    base_dir = Path(base_dir)
    processor = AutoProcessor.from_pretrained(base_dir)
    model = _load_model(
        base_dir, Path(checkpoint_dir) if checkpoint_dir is not None else None, dtype or _default_dtype(device)
    )
    model.to(device)
    model.eval()
    return model, processor


class CheckpointSeries:
    """Checkpoints of one base model applied one after another, each to the pristine base (in eval mode).

    Checkpoints that store trainable weights (freeze_llm, freeze_vision, projector_only) share one
    loaded base: before one is applied, the base weights that earlier ones replaced are restored
    from a copy on the CPU, so nothing of one checkpoint reaches the next, and the result is the
    model `load_for_inference` builds. A LoRA adapter is merged into the base weights and a full
    checkpoint is a whole model, so those load from disk each time.
    """

    def __init__(self, base_dir: Path, device: str = "cpu", dtype: torch.dtype | None = None):
        self.base_dir, self.device, self.dtype = Path(base_dir), device, dtype or _default_dtype(device)
        self._base: nn.Module | None = None
        self._replaced: dict[str, torch.Tensor] = {}  # the base's own values of the weights a checkpoint replaced

    def model(self, checkpoint_dir: Path) -> nn.Module:
        """The base with `checkpoint_dir` applied; the model returned before is no longer valid."""
        checkpoint_dir = Path(checkpoint_dir)
        strategy = read_checkpoint_meta(checkpoint_dir)["strategy"]
        if strategy not in _SAVED_PARTS:
            self._base, self._replaced = None, {}  # free the shared base before loading a whole model
            return _load_model(self.base_dir, checkpoint_dir, self.dtype).to(self.device).eval()
        base = self._pristine_base()
        weights = _trainable_weights(base, checkpoint_dir, strategy)
        state = base.state_dict()
        for name in weights.keys() - self._replaced.keys():
            self._replaced[name] = state[name].detach().to("cpu", copy=True)
        base.load_state_dict(weights, strict=False)
        return base

    def _pristine_base(self) -> nn.Module:
        if self._base is None:
            self._base, self._replaced = _load_base(self.base_dir, self.dtype).to(self.device).eval(), {}
        else:
            self._base.load_state_dict(self._replaced, strict=False)
        return self._base
