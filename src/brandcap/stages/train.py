"""The train stage: one experiment (a freezing strategy) with one training seed, trained with the Hugging Face Trainer.

    from brandcap.config.params import load_params
    from brandcap.stages.train import run_train
    run_train(load_params("params.yaml"), "freeze_llm", 4, base_dir=Path("models/base"),
              train_jsonl=Path("data/processed/train.jsonl"),
              checkpoints_dir=Path("results/checkpoints/freeze_llm/seed-4"),
              log_dir=Path("results/train/freeze_llm/seed-4"), dvclive_dir=Path("results/dvclive/freeze_llm/seed-4"),
              resume_dir=Path(".resume/train/freeze_llm/seed-4"))

The seed (one of train.seeds) sets the model's random initialisation (LoRA adapters) and the
order of the training data; the data split keeps the top-level seed.

Outputs
- `checkpoints_dir/epoch-{N}/` for N in train.save_epochs: only what was trained (see checkpoints.py),
  in the training precision (a bf16 run saves bf16 weights).
- `dvclive_dir/`: the step metrics in DVCLive's files (brandcap.model.training_log): per logging step
  epoch, loss, learning_rate, grad_norm, samples_per_second; `metrics.json` with the last values and the
  run's wall time, throughput and peak memory (`dvc plots show`, `dvc exp show`).
- `log_dir/summary.json`: what DVCLive does not hold: the run's parameters, trainable and total parameter
  counts, precision, resume step, checkpoint sizes (and the throughput figures again, for the tables).

Resume: the Trainer's own checkpoints (optimizer, scheduler, RNG) go to `resume_dir`, outside the
declared outputs because orchestrators delete outputs before rerunning a job. Epoch checkpoints
and the log are kept there too, so a rerun after an interruption continues from the last
finished epoch and restores the epoch checkpoints written before it; the step records are kept there
(`log.jsonl`) and written out as DVCLive's files when the run ends. `resume_dir` is removed
after success; a resume state written with other params or data is discarded, not reused.
"""

from __future__ import annotations

import logging
import resource
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import SAFE_WEIGHTS_NAME

from brandcap.config.params import Params, TrainParams, check_training_seed, experiment_settings
from brandcap.files import atomic
from brandcap.files.append_only import read_append_only
from brandcap.files.atomic import read_json
from brandcap.model.chat import check_prompt_fits, check_prompt_settings
from brandcap.model.checkpoints import (
    CHECKPOINT_META,
    read_checkpoint_meta,
    save_checkpoint,
    state_bytes,
    trainable_state_dict,
)
from brandcap.model.general_mix import GenericPairs, MixedCaptionPool, MixedEpochCallback, MixedEpochSamples
from brandcap.model.step_progress import StepProgressCallback
from brandcap.model.strategies import apply_strategy, count_parameters
from brandcap.model.training_data import CaptionCollator, CaptionDataset
from brandcap.model.training_log import write_training_log
from brandcap.model.vision_cache import (
    FrozenVisionCache,
    cache_megabytes,
    feed_cached_vision_features,
    vision_cache_blocker,
)
from brandcap.running.launch import check_process_count
from brandcap.running.resume_state import prepare_resume_dir, stage_fingerprint

log = logging.getLogger(__name__)

ELAPSED_FILE = "brandcap_elapsed.json"
EPOCHS_SUBDIR = "epochs"
RESUME_LOG = "log.jsonl"
RESUME_FIX = "delete the run's resume folder (.resume/train/<experiment>/seed-<S>) to train it from the start"
# Epoch checkpoints are stored in the training precision (the fp32 master weights are rounded, as
# the forward passes were); resume checkpoints keep fp32 so a resumed run continues exactly.
CHECKPOINT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# --------------------------------------------------------------------------- settings
def gradient_accumulation_steps(train: TrainParams) -> int:
    """Accumulation so that per_device_batch_size x accumulation x devices == batch_size (params checked it divides)."""
    return train.batch_size // (train.per_device_batch_size * train.devices)


def resolve_precision(precision: str) -> str:
    """'auto' -> bf16 on a CUDA device that supports it, else fp32."""
    if precision == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if precision in ("bf16", "fp16") and not torch.cuda.is_available():
        raise ValueError(f"train.precision is {precision} but no CUDA device is available; use auto or fp32")
    return precision


def check_deepspeed_config(path: str) -> None:
    """The config exists and does not partition parameters (ZeRO-3), which the delta checkpoints cannot gather."""
    if not path:
        return
    config = read_json(path, "train.deepspeed: give a config such as configs/deepspeed/zero2.json or leave it empty")
    stage = config.get("zero_optimization", {}).get("stage", 0)
    if stage == 3:
        raise ValueError(
            f"train.deepspeed: {path} uses ZeRO stage 3, which shards the weights across GPUs; the epoch "
            "checkpoints save unsharded trainable weights, so use ZeRO-2 (configs/deepspeed/zero2.json)"
        )


def reset_peak_memory() -> None:
    """Start counting `peak_memory` afresh (CUDA counts from the process start otherwise)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> tuple[int, str]:
    """(bytes, kind): CUDA max allocated on a GPU, else this process's peak resident set size."""
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated()), "cuda_max_allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process_peak_rss"


def run_fingerprint(
    params: Params,
    experiment: str,
    seed: int,
    base_dir: Path,
    train_jsonl: Path,
    dataset: CaptionDataset,
    generic: GenericPairs | None = None,
) -> dict:
    """What a resume state depends on (brandcap.running.resume_state): the base model's, the records' and the
    images' content, the params the run reads (its training seed among them) and the code; a state
    made under another is not reused. A run that mixes in generic pairs also depends on their records,
    images, ratio and question."""
    inputs = {"base": base_dir, "train": train_jsonl, "images": [record["image"] for record in dataset.records]}
    read = {
        "experiment": experiment,
        "seed": seed,
        "train": params.train.model_dump(mode="json"),
        "image_tiling": params.model.image_tiling.model_dump(mode="json"),
        "general_mix": experiment_settings(params, experiment).general_mix,
    }
    if generic is not None:
        inputs |= {"general_train": generic.path, "general_images": [record["image"] for record in generic.records]}
        read["general_instruction"] = generic.instruction
    return stage_fingerprint("brandcap.stages.train", inputs, read)


class ElapsedTimeCallback(TrainerCallback):
    """Keeps the training time so far inside every Trainer checkpoint, so that the summary of a resumed
    run covers the whole run, not only its last part."""

    def __init__(self, before: float):
        self.before, self.started = before, time.perf_counter()

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.started

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            atomic.write_json(checkpoint / ELAPSED_FILE, {"wall_time_s": self.elapsed()})


def elapsed_before(checkpoint: str | None) -> float:
    """Training seconds spent before `checkpoint` (0 for a fresh run or a checkpoint without the record)."""
    if not checkpoint or not (Path(checkpoint) / ELAPSED_FILE).exists():
        return 0.0
    return float(read_json(Path(checkpoint) / ELAPSED_FILE, RESUME_FIX)["wall_time_s"])


# --------------------------------------------------------------------------- callbacks
class EpochCheckpointCallback(TrainerCallback):
    """Saves the trained delta at exactly the listed epochs (kept in resume_dir, mirrored to the outputs)."""

    def __init__(
        self,
        save_epochs: Sequence[int],
        strategy: str,
        store_dir: Path,
        checkpoints_dir: Path,
        meta: dict[str, Any],
        dtype: torch.dtype,
    ):
        self.save_epochs = set(save_epochs)
        self.dtype = dtype
        self.strategy = strategy
        self.store_dir = store_dir
        self.checkpoints_dir = checkpoints_dir
        self.meta = meta

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        epoch = int(round(state.epoch))
        if epoch in self.save_epochs and state.is_world_process_zero:
            name = f"epoch-{epoch}"
            save_checkpoint(
                model,
                self.store_dir / name,
                self.strategy,
                {**self.meta, "epoch": epoch, "global_step": state.global_step},
                self.dtype,
            )
            atomic.mirror_directory(self.store_dir / name, self.checkpoints_dir / name)
            log.info("saved checkpoint %s", self.checkpoints_dir / name)
        return control


class JsonlLogCallback(TrainerCallback):
    """One record per logging step, kept in resume_dir so a resumed run's log stays complete (the run's DVCLive
    files are written from it when the run ends)."""

    def __init__(self, resume_log: Path, n_samples: int):
        self.resume_log = resume_log
        self.n_samples = n_samples
        self.records: list[dict[str, Any]] = []
        self.last_time = 0.0
        self.last_epoch = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return control
        # Records logged after the state we resume from will be logged again.
        previous = read_append_only(self.resume_log) if self.resume_log.exists() else []
        self.records = [r for r in previous if r["step"] <= state.global_step]
        self._write()
        self.last_time, self.last_epoch = time.perf_counter(), float(state.epoch or 0.0)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return control
        now, epoch = time.perf_counter(), float(state.epoch or 0.0)
        samples = (epoch - self.last_epoch) * self.n_samples
        self.records.append(
            {
                "step": state.global_step,
                "epoch": round(epoch, 4),
                "loss": logs["loss"],
                "learning_rate": logs.get("learning_rate"),
                "grad_norm": logs.get("grad_norm"),
                "samples_per_second": round(samples / max(now - self.last_time, 1e-9), 3),
            }
        )
        self.last_time, self.last_epoch = now, epoch
        self._write()
        return control

    def _write(self) -> None:
        atomic.write_jsonl(self.resume_log, self.records)


# --------------------------------------------------------------------------- trainer
class DeltaTrainer(Trainer):
    """A Trainer whose resume checkpoints hold only the trainable weights, under their module names.

    Why: in transformers 5, `save_pretrained` writes InternVL weights under the original checkpoint
    names (`language_model.model.*`) while the Trainer resumes with a plain `load_state_dict`, so a
    resumed run would silently keep the base weights. The public `save_model` is overridden to write
    `named_parameters` names, which the stock resume loads by name; the frozen weights (which come from
    the base model) are not copied into every resume checkpoint. `ResumedWeightsCheck` then verifies
    that the resume really restored them, so a transformers upgrade that loads otherwise fails loudly.
    Peft adapters, DeepSpeed and FSDP keep the stock path.
    """

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        if not _saves_trainable_only(self):
            return super().save_model(output_dir, _internal_call)
        output_dir = Path(output_dir or self.args.output_dir)
        if self.args.should_save:
            output_dir.mkdir(parents=True, exist_ok=True)
            save_file(trainable_state_dict(self.model), output_dir / SAFE_WEIGHTS_NAME)


def _saves_trainable_only(trainer: Trainer) -> bool:
    from peft import PeftModel

    return not (isinstance(trainer.model, PeftModel) or trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled)


def expect_trainable_only_resume(model, resume_from: str | None) -> None:
    """Before resuming: the checkpoint must hold exactly the weights this run trains (a clear error
    otherwise), and the frozen ones are declared absent on purpose, so the Trainer's load does not
    warn about each of them."""
    weights_path = Path(resume_from or "") / SAFE_WEIGHTS_NAME
    if resume_from is None or not weights_path.exists():
        return
    expected = {name for name, p in model.named_parameters() if p.requires_grad}
    with safe_open(weights_path, "pt") as f:
        stored = set(f.keys())
    if stored != expected:
        raise RuntimeError(
            f"{weights_path}: holds other weights than this run trains "
            f"({sorted(stored ^ expected)[:3]}...); delete {Path(resume_from).parent} and rerun"
        )
    model._keys_to_ignore_on_save = [k for k in model.state_dict() if k not in expected]


class ResumedWeightsCheck(TrainerCallback):
    """At the start of a resumed run, the trainable weights must equal the resume checkpoint's."""

    def __init__(self, resume_from: str | None):
        self.weights_path = Path(resume_from or "") / SAFE_WEIGHTS_NAME if resume_from else None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.weights_path is None or not self.weights_path.exists():
            return
        stored = load_file(self.weights_path)
        params = dict(model.named_parameters())
        differing = [k for k, v in stored.items() if not torch.equal(params[k].detach().cpu(), v)]
        if differing:
            raise RuntimeError(
                f"resuming from {self.weights_path.parent} did not restore {len(differing)} trainable weights "
                f"(e.g. {differing[0]}): the installed transformers loads checkpoints differently; "
                f"delete {self.weights_path.parent.parent} to train from the start"
            )


# --------------------------------------------------------------------------- the stage
def _prepare_run_state(
    args: TrainingArguments, resume_dir: Path, fingerprint: dict, checkpoints_dir: Path
) -> str | None:
    """The Trainer checkpoint to resume from, or None. The main process discards a stale resume state and
    restores earlier epoch checkpoints while the other processes wait; then every process reads the result."""
    with args.main_process_first(local=False, desc="resume state"):
        if args.process_index == 0:
            resume_from = _prepare_resume_dir(resume_dir, fingerprint)
            resumed_epoch = _trainer_state_epoch(resume_from)
            restored = _restore_epoch_checkpoints(resume_dir / EPOCHS_SUBDIR, checkpoints_dir, resumed_epoch)
            if resume_from:
                log.info(
                    "resuming from %s (epoch %d; epoch checkpoints restored: %s)", resume_from, resumed_epoch, restored
                )
    return get_last_checkpoint(str(resume_dir))


def _prepare_resume_dir(resume_dir: Path, fingerprint: dict) -> str | None:
    """The Trainer checkpoint to resume from, or None; discards a state made for another run."""
    prepare_resume_dir(resume_dir, fingerprint)
    return _last_complete_checkpoint(resume_dir)


def _last_complete_checkpoint(resume_dir: Path) -> str | None:
    """The newest Trainer checkpoint whose trainer_state.json (written last) exists; torn ones are removed."""
    while (last := get_last_checkpoint(str(resume_dir))) is not None:
        if (Path(last) / "trainer_state.json").exists():
            return last
        log.warning("removing %s: a checkpoint torn by an interruption", last)
        shutil.rmtree(last)
    return None


def _restore_epoch_checkpoints(store_dir: Path, checkpoints_dir: Path, up_to_epoch: int) -> list[int]:
    """Re-create epoch checkpoints written before the resume point; drop ones past it (they are redone)."""
    restored = []
    if not store_dir.exists():
        return restored
    for ckpt in sorted(store_dir.glob("epoch-*")):
        epoch = int(ckpt.name.split("-", 1)[1])
        if epoch <= up_to_epoch and (ckpt / CHECKPOINT_META).exists():
            if not (checkpoints_dir / ckpt.name / CHECKPOINT_META).exists():
                atomic.mirror_directory(ckpt, checkpoints_dir / ckpt.name)
            restored.append(epoch)
        else:
            shutil.rmtree(ckpt)
    return restored


def _trainer_state_epoch(checkpoint: str | None) -> int:
    if not checkpoint:
        return 0
    state = read_json(Path(checkpoint) / "trainer_state.json", RESUME_FIX)
    return int(round(state.get("epoch") or 0))


def _trainer_state_step(checkpoint: str | None) -> int:
    if not checkpoint:
        return 0
    return int(read_json(Path(checkpoint) / "trainer_state.json", RESUME_FIX).get("global_step", 0))


def training_arguments(
    train: TrainParams, learning_rate: float, seed: int, resume_dir: Path, precision: str
) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(resume_dir),
        num_train_epochs=train.epochs,
        per_device_train_batch_size=train.per_device_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps(train),
        learning_rate=learning_rate,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_ratio,  # transformers 5: a value below 1 is a fraction of all steps
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        seed=seed,
        data_seed=seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        # transformers 5 name for gradient checkpointing; non-reentrant works with frozen embeddings
        activation_checkpointing=train.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if train.gradient_checkpointing else None,
        deepspeed=train.deepspeed or None,
        dataloader_num_workers=train.dataloader_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        # without CUDA, accelerate joins a torchrun process group (gloo) only when told to use the CPU
        use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False,
        label_names=["labels"],
        report_to=[],
        logging_strategy="steps",
        logging_steps=train.logging_steps,
        logging_first_step=True,
        disable_tqdm=True,  # StepProgressCallback shows progress (a bar only on a terminal)
        save_strategy="epoch",
        save_total_limit=1,
        save_only_model=False,
    )


def _checked_setup(params: Params, seed: int, base_dir: Path, general_mix: float):
    """(precision, processor) after every check that can fail before the model is loaded."""
    from transformers import AutoProcessor

    check_training_seed(params, seed)
    check_deepspeed_config(params.train.deepspeed)
    if not (base_dir / "config.json").exists():
        raise FileNotFoundError(f"{base_dir}: no base model (config.json missing); run the base_model stage first")
    precision = resolve_precision(params.train.precision)
    processor = AutoProcessor.from_pretrained(base_dir)
    check_prompt_settings(processor, params, str(base_dir))
    if general_mix > 0:  # generic pairs are asked the general question
        check_prompt_fits(processor, params.eval.general_instruction, params.train.max_length)
    check_process_count(params.train.devices)
    return precision, processor


def _trainable_model(
    params: Params, experiment: str, seed: int, base_dir: Path, strategy: str, lora
) -> tuple[Any, Any, dict[str, Any]]:
    """The Hugging Face model, the same with `strategy` applied (a peft wrapper for LoRA), and the meta
    every checkpoint of the run carries."""
    from transformers import AutoModelForImageTextToText

    # fp32 master weights; bf16/fp16 run as mixed precision (autocast) through the Trainer
    model = AutoModelForImageTextToText.from_pretrained(base_dir, dtype=torch.float32)
    model.config.use_cache = False
    full_model_bytes = state_bytes(model)
    set_seed(seed)  # LoRA adapters are initialised randomly: the same seed, the same run
    hf_model = model
    model = apply_strategy(model, strategy, lora)
    trainable, total = count_parameters(model)
    log.info(
        "%s seed %d: strategy %s, %d of %d parameters train (%.2f%%)",
        experiment,
        seed,
        strategy,
        trainable,
        total,
        100 * trainable / total,
    )
    meta = {
        "experiment": experiment,
        "seed": seed,
        "base_model": str(base_dir),
        "trainable_params": trainable,
        "total_params": total,
        "full_model_bytes": full_model_bytes,
        "params": params.model_dump(mode="json"),
    }
    return hf_model, model, meta


def _checkpoint_bytes(save_epochs: Sequence[int], checkpoints_dir: Path, resume_dir: Path) -> dict[str, int]:
    """Saved bytes of each listed epoch's checkpoint; fails when one was not written."""
    missing = [e for e in save_epochs if not (checkpoints_dir / f"epoch-{e}" / CHECKPOINT_META).exists()]
    if missing:
        raise RuntimeError(
            f"{checkpoints_dir}: epoch checkpoints {missing} were not written; delete {resume_dir} and rerun"
        )
    return {str(e): read_checkpoint_meta(checkpoints_dir / f"epoch-{e}")["saved_bytes"] for e in save_epochs}


def training_summary(
    train,
    args,
    run: dict[str, Any],
    wall_time: float,
    n_samples: int,
    train_loss: float | None,
    log_records: list[dict[str, Any]],
    checkpoint_bytes: dict[str, int],
) -> dict[str, Any]:
    """summary.json: what ran (`run`: the checkpoint meta plus strategy, rate, precision, resume step) and what it cost."""
    peak_bytes, peak_kind = peak_memory()
    return {
        "experiment": run["experiment"],
        "seed": run["seed"],
        "strategy": run["strategy"],
        "trainable_params": run["trainable_params"],
        "total_params": run["total_params"],
        "peak_memory_bytes": peak_bytes,
        "peak_memory_kind": peak_kind,
        "wall_time_s": round(wall_time, 3),
        "samples_per_second": round(train.epochs * (n_samples + run["n_generic_per_epoch"]) / wall_time, 3)
        if wall_time
        else None,
        "train_loss": train_loss,
        "final_loss": log_records[-1]["loss"] if log_records else None,
        "checkpoint_bytes": checkpoint_bytes,
        "full_model_bytes": run["full_model_bytes"],
        "epochs": train.epochs,
        "save_epochs": list(train.save_epochs),
        "n_train_samples": n_samples,
        "general_mix": run["general_mix"],
        "n_generic_per_epoch": run["n_generic_per_epoch"],
        "effective_batch_size": train.batch_size,
        "per_device_batch_size": train.per_device_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "devices": train.devices,
        "distributed_backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
        "learning_rate": run["learning_rate"],
        "precision": run["precision"],
        "device": str(args.device),
        "resumed_from_step": run["resumed_from_step"],
    }


def frozen_vision_cache(
    model,
    processor,
    collator: CaptionCollator,
    dataset: CaptionDataset,
    train: TrainParams,
    device: torch.device,
    precision: str,
) -> FrozenVisionCache | None:
    """The frozen vision tower's outputs for every training sample (brandcap.model.vision_cache), or None
    when the tower trains, has dropout, or its outputs would not fit train.frozen_vision_cache_mb."""
    if train.frozen_vision_cache_mb == 0:
        return None
    blocker = vision_cache_blocker(model)
    if blocker is None:
        megabytes = cache_megabytes(model, processor, len(dataset))
        if megabytes > train.frozen_vision_cache_mb:
            blocker = f"its outputs may take {megabytes:,.0f} MB, above train.frozen_vision_cache_mb ({train.frozen_vision_cache_mb})"
    if blocker is not None:
        log.info("the vision tower runs every step: %s", blocker)
        return None
    started = time.perf_counter()
    autocast_dtype = None if precision == "fp32" else CHECKPOINT_DTYPES[precision]
    cache = FrozenVisionCache.build(model, collator, dataset, device, autocast_dtype)
    log.info(
        "frozen vision tower: outputs of %d images computed once in %.1f s and reused every epoch",
        len(dataset),
        time.perf_counter() - started,
    )
    return cache


def _training_inputs(hf_model, processor, dataset: CaptionDataset, train: TrainParams, device, precision: str):
    """(dataset, collator) for the Trainer: with the frozen vision tower cache when it applies."""
    collator = CaptionCollator(processor, train.instruction, train.max_length)
    cache = frozen_vision_cache(hf_model, processor, collator, dataset, train, device, precision)
    if cache is None:
        return dataset, collator
    feed_cached_vision_features(hf_model)
    return cache.dataset(dataset), cache.collator(collator)


def _generic_pool(
    params: Params, general_mix: float, general_train_jsonl: Path | None, dataset: CaptionDataset
) -> tuple[GenericPairs | None, CaptionDataset | MixedCaptionPool]:
    """(generic pairs, every sample an epoch can draw): the task samples alone when general_mix is 0;
    else the task samples and every generic pair."""
    if general_mix == 0:
        return None, dataset
    if general_train_jsonl is None:
        raise ValueError(
            f"train.general_mix is {general_mix} but no generic training set was given; pass --general-train "
            "data/raw/general_train/general_train.jsonl (the general_train_set stage writes it)"
        )
    generic = GenericPairs(general_train_jsonl, params.eval.general_instruction)
    return generic, MixedCaptionPool(dataset, generic)


def mixed_epochs(
    pool, n_task: int, generic: GenericPairs | None, general_mix: float, seed: int
) -> tuple[Any, list[TrainerCallback]]:
    """(the Trainer's train_dataset, its callbacks): `pool` itself without mixing; else each epoch's mix."""
    if generic is None:
        return pool, []
    samples = MixedEpochSamples(pool, n_task, len(generic), general_mix, seed)
    log.info(
        "mixing %d generic pairs (train.general_mix %s, from %d) into the %d task samples of each epoch",
        samples.n_mixed,
        general_mix,
        len(generic),
        n_task,
    )
    return samples, [MixedEpochCallback(samples)]


def run_train(
    params: Params,
    experiment: str,
    seed: int,
    base_dir: Path,
    train_jsonl: Path,
    checkpoints_dir: Path,
    log_dir: Path,
    dvclive_dir: Path,
    resume_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
    general_train_jsonl: Path | None = None,
) -> None:
    """Train one experiment with training seed `seed`; write its epoch checkpoints, step metrics (DVCLive) and
    summary.json.
    `callbacks`: extra Trainer callbacks (tests interrupt runs with one); `general_train_jsonl`: the generic
    training set, read only when the experiment's train.general_mix is above 0."""
    base_dir, train_jsonl, checkpoints_dir, log_dir, dvclive_dir, resume_dir = map(
        Path, (base_dir, train_jsonl, checkpoints_dir, log_dir, dvclive_dir, resume_dir)
    )
    strategy, learning_rate, lora, general_mix = experiment_settings(params, experiment)
    precision, processor = _checked_setup(params, seed, base_dir, general_mix)

    dataset = CaptionDataset(train_jsonl)
    generic, pool = _generic_pool(params, general_mix, general_train_jsonl, dataset)
    # under torchrun, creating the arguments joins the process group
    args = training_arguments(params.train, learning_rate, seed, resume_dir, precision)
    resume_from = _prepare_run_state(
        args,
        resume_dir,
        run_fingerprint(params, experiment, seed, base_dir, train_jsonl, dataset, generic),
        checkpoints_dir,
    )
    resumed_step = _trainer_state_step(resume_from)  # read now: training deletes older Trainer checkpoints

    hf_model, model, meta = _trainable_model(params, experiment, seed, base_dir, strategy, lora)
    pool, data_collator = _training_inputs(hf_model, processor, pool, params.train, args.device, precision)
    train_dataset, mix_callbacks = mixed_epochs(pool, len(dataset), generic, general_mix, seed)
    log_callback = JsonlLogCallback(resume_dir / RESUME_LOG, len(train_dataset))
    clock = ElapsedTimeCallback(elapsed_before(resume_from))
    trainer = DeltaTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=data_collator,
        callbacks=[
            EpochCheckpointCallback(
                params.train.save_epochs,
                strategy,
                resume_dir / EPOCHS_SUBDIR,
                checkpoints_dir,
                meta,
                CHECKPOINT_DTYPES[precision],
            ),
            log_callback,
            clock,
            StepProgressCallback(f"train {experiment}", log),
            ResumedWeightsCheck(resume_from),
            *mix_callbacks,
            *callbacks,
        ],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict; the step log and the progress lines have them
    expect_trainable_only_resume(model, resume_from)
    reset_peak_memory()
    result = trainer.train(resume_from_checkpoint=resume_from)
    wall_time = clock.elapsed()  # the whole run, across resumes
    if not trainer.is_world_process_zero():
        return

    run = {
        **meta,
        "strategy": strategy,
        "learning_rate": learning_rate,
        "precision": precision,
        "resumed_from_step": resumed_step,
        "general_mix": general_mix,
        "n_generic_per_epoch": len(train_dataset) - len(dataset),
    }
    summary = training_summary(
        params.train,
        args,
        run,
        wall_time,
        len(dataset),
        result.metrics.get("train_loss"),
        log_callback.records,
        _checkpoint_bytes(params.train.save_epochs, checkpoints_dir, resume_dir),
    )
    write_training_log(log_callback.records, run_metrics(summary), dvclive_dir)
    atomic.write_json(log_dir / "summary.json", summary)
    shutil.rmtree(resume_dir, ignore_errors=True)
    log_summary(summary)


def run_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The run-level figures that go beside the step metrics in DVCLive's metrics.json."""
    return {
        "wall_time_s": summary["wall_time_s"],
        "run_samples_per_second": summary["samples_per_second"],
        "peak_memory_bytes": summary["peak_memory_bytes"],
    }


def log_summary(summary: dict[str, Any]) -> None:
    """The run's one-line summary."""
    log.info(
        "%s seed %d done: %d epochs, %d samples (%d generic), %.1f samples/s, %.0f s, final loss %s, peak memory %.0f MB, checkpoints %s",
        summary["experiment"],
        summary["seed"],
        summary["epochs"],
        summary["n_train_samples"] + summary["n_generic_per_epoch"],
        summary["n_generic_per_epoch"],
        summary["samples_per_second"],
        summary["wall_time_s"],
        summary["final_loss"],
        summary["peak_memory_bytes"] / 1e6,
        {k: f"{v / 1e6:.1f} MB" for k, v in summary["checkpoint_bytes"].items()},
    )
