"""The train stage on a tiny InternVL: loss goes down, delta checkpoints rebuild the trained model,
an interrupted run resumes, logs and summary are complete.

    .venv/bin/python -m pytest tests/test_train.py -q
"""

from __future__ import annotations

import json
import logging
import shutil
import time

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageTextToText, TrainerCallback
from transformers.utils import SAFE_WEIGHTS_NAME

from brandcap.config.params import LoraParams, ParamsError, validate_params
from brandcap.model.checkpoints import (
    CHECKPOINT_META,
    TRAINABLE_WEIGHTS,
    load_for_inference,
    save_checkpoint,
    state_bytes,
)
from brandcap.model.strategies import apply_strategy
from brandcap.model.training_data import CaptionCollator, CaptionDataset
from brandcap.model.training_log import read_step_metrics
from brandcap.model.vision_cache import cache_megabytes, vision_cache_blocker
from brandcap.stages.train import (
    CHECKPOINT_DTYPES,
    ResumedWeightsCheck,
    elapsed_before,
    expect_trainable_only_resume,
    gradient_accumulation_steps,
    resolve_precision,
    run_train,
)
from tests.conftest import (
    count_vision_tower_runs,
    delta_weights,
    interrupt_after_epoch,
    run_tiny_training,
    train_params,
)


@pytest.fixture(scope="module")
def probe_batch(workdir):
    """A fixed batch to compare logits on."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        dataset = CaptionDataset("train.jsonl")
        processor = load_for_inference(workdir / "base", None)[1]
        batch = CaptionCollator(processor, train_params().train.instruction, 256)([dataset[i] for i in range(3)])
    batch.pop("labels")
    return batch


class CaptureLogits(TrainerCallback):
    """Logits of the live trained model on the probe batch, when training ends."""

    def __init__(self, batch):
        self.batch, self.logits = batch, None

    def on_train_end(self, args, state, control, model=None, **kwargs):
        model.eval()
        with torch.no_grad():
            self.logits = model(**self.batch).logits.clone()


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


@pytest.fixture(scope="module")
def straight_runs(workdir, probe_batch):
    """Uninterrupted 2-epoch runs, one per strategy asked for, with the trained model's logits."""
    runs = {}

    def run(experiment):
        if experiment not in runs:
            capture = CaptureLogits(probe_batch)
            runs[experiment] = (run_tiny_training(workdir, experiment, callbacks=[capture]), capture.logits)
        return runs[experiment]

    return run


@pytest.fixture(scope="module")
def freeze_llm_run(workdir, straight_runs):
    # a stale resume state from other params must be discarded, not resumed
    stale = workdir / "run-freeze_llm" / "resume"
    (stale / "checkpoint-999").mkdir(parents=True)
    (stale / "fingerprint.json").write_text(json.dumps({"inputs": {}, "params": "other params", "code": ""}))
    return straight_runs("freeze_llm")


def test_freeze_llm_run_writes_deltas_logs_and_summary(workdir, freeze_llm_run):
    paths, _ = freeze_llm_run
    summary = json.loads((paths["log_dir"] / "summary.json").read_text())
    assert summary["strategy"] == "freeze_llm" and summary["resumed_from_step"] == 0 and summary["seed"] == 3
    assert summary["gradient_accumulation_steps"] == 2 and summary["precision"] == "fp32"
    assert 0 < summary["trainable_params"] < summary["total_params"]
    assert summary["peak_memory_bytes"] > 0 and summary["wall_time_s"] > 0 and summary["samples_per_second"] > 0
    assert set(summary["checkpoint_bytes"]) == {"1", "2"}
    assert 0 < summary["checkpoint_bytes"]["2"] < summary["full_model_bytes"]

    records = read_step_metrics(paths["dvclive_dir"])
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert set(records[0]) == {"step", "epoch", "loss", "learning_rate", "grad_norm", "samples_per_second"}
    assert records[-1]["epoch"] == pytest.approx(2.0)
    # DVCLive's layout, as `dvc plots show` and `dvc exp show` read it; the step log itself is not an output
    dvclive = paths["dvclive_dir"]
    assert sorted(p.relative_to(dvclive).as_posix() for p in dvclive.rglob("*.tsv")) == [
        f"plots/metrics/training/{name}.tsv"
        for name in sorted(("epoch", "loss", "learning_rate", "grad_norm", "samples_per_second"))
    ]
    assert (dvclive / "plots/metrics/training/loss.tsv").read_text().splitlines()[0] == "step\tloss"
    latest = json.loads((dvclive / "metrics.json").read_text())
    assert latest["step"] == 4 and latest["training"]["loss"] == records[-1]["loss"]
    assert latest["training"]["wall_time_s"] == summary["wall_time_s"]
    assert sorted(p.name for p in paths["log_dir"].iterdir()) == ["summary.json"]

    for epoch in (1, 2):
        ckpt = paths["checkpoints_dir"] / f"epoch-{epoch}"
        assert sorted(p.name for p in ckpt.iterdir()) == [CHECKPOINT_META, TRAINABLE_WEIGHTS]
        meta = json.loads((ckpt / CHECKPOINT_META).read_text())
        assert (
            meta["epoch"] == epoch
            and meta["experiment"] == "freeze_llm"
            and meta["strategy"] == "freeze_llm"
            and meta["seed"] == 3
        )
        assert (
            meta["params"]["train"]["epochs"] == 2 and meta["saved_bytes"] == (ckpt / TRAINABLE_WEIGHTS).stat().st_size
        )
        assert meta["weights_dtype"] == "float32"  # an fp32 run saves fp32
        keys = load_file(ckpt / TRAINABLE_WEIGHTS).keys()
        assert keys and all(".vision_tower." in k or ".multi_modal_projector." in k for k in keys)
    # epochs 1 and 2 hold different weights
    first, last = (load_file(paths["checkpoints_dir"] / f"epoch-{e}" / TRAINABLE_WEIGHTS) for e in (1, 2))
    assert any(not torch.equal(first[k], last[k]) for k in first)
    assert not paths["resume_dir"].exists()


def test_delta_checkpoint_reproduces_the_trained_model(workdir, freeze_llm_run, probe_batch):
    paths, trained_logits = freeze_llm_run
    model, _ = load_for_inference(workdir / "base", paths["checkpoints_dir"] / "epoch-2")
    assert not model.training
    assert torch.allclose(_logits(model, probe_batch), trained_logits, atol=1e-5)
    base, _ = load_for_inference(workdir / "base", None)
    assert not torch.allclose(_logits(base, probe_batch), trained_logits, atol=1e-3)


@pytest.fixture(scope="module")
def three_epoch_run(workdir):
    """3 epochs, one checkpoint in the middle: neither every epoch nor only the last."""
    return run_tiny_training(workdir, "freeze_vision", train_params(epochs=3, save_epochs=[2]))


def test_checkpoints_are_saved_at_the_listed_epochs_only(three_epoch_run):
    paths = three_epoch_run
    assert sorted(p.name for p in paths["checkpoints_dir"].iterdir()) == ["epoch-2"]
    meta = json.loads((paths["checkpoints_dir"] / "epoch-2" / CHECKPOINT_META).read_text())
    assert meta["epoch"] == 2 and meta["global_step"] == 4  # 2 optimizer steps per epoch
    assert set(json.loads((paths["log_dir"] / "summary.json").read_text())["checkpoint_bytes"]) == {"2"}


def test_training_lowers_the_loss(three_epoch_run):
    paths = three_epoch_run
    losses = [r["loss"] for r in read_step_metrics(paths["dvclive_dir"])]
    assert len(losses) == 6
    assert losses[-1] < 0.8 * losses[0]


def test_lora_adapter_checkpoint_reproduces_the_trained_model(workdir, probe_batch, straight_runs):
    paths, trained_logits = straight_runs("lora")
    ckpt = paths["checkpoints_dir"] / "epoch-2"
    assert {"adapter_config.json", "adapter_model.safetensors", CHECKPOINT_META} <= {p.name for p in ckpt.iterdir()}
    # peft's set order changes from process to process; sorted, the same adapter is the same file
    target_modules = json.loads((ckpt / "adapter_config.json").read_text())["target_modules"]
    assert len(target_modules) > 2 and target_modules == sorted(target_modules)
    summary = json.loads((paths["log_dir"] / "summary.json").read_text())
    assert summary["checkpoint_bytes"]["2"] < summary["full_model_bytes"] / 2
    model, _ = load_for_inference(workdir / "base", ckpt)
    assert type(model).__name__ == "InternVLForConditionalGeneration"  # merged, no peft wrapper
    assert torch.allclose(_logits(model, probe_batch), trained_logits, atol=1e-5)


@pytest.mark.parametrize("experiment", ["freeze_llm", "lora"])
def test_interrupted_run_resumes_and_restores_epoch_checkpoints(workdir, freeze_llm_run, straight_runs, experiment):
    with pytest.raises(KeyboardInterrupt):
        run_tiny_training(workdir, experiment, callbacks=[interrupt_after_epoch(1)], tag="-interrupted")
    out = workdir / f"run-{experiment}-interrupted"
    assert (out / "checkpoints" / "epoch-1" / CHECKPOINT_META).exists()
    assert not (out / "checkpoints" / "epoch-2").exists()
    assert list((out / "resume").glob("checkpoint-*"))
    # a Trainer checkpoint torn by a kill while it was being written is skipped
    (out / "resume" / "checkpoint-99").mkdir()
    (out / "resume" / "checkpoint-99" / "optimizer.pt").write_bytes(b"torn")
    # the summary and the step metrics are written when the run ends; the step records so far are in the resume folder
    assert not (out / "train").exists() and not (out / "dvclive").exists()
    assert (out / "resume" / "log.jsonl").exists()
    # orchestrators delete a failed job's outputs before rerunning it
    shutil.rmtree(out / "checkpoints")

    before = elapsed_before(str(out / "resume" / "checkpoint-2"))
    assert before > 0
    started = time.perf_counter()
    paths = run_tiny_training(workdir, experiment, tag="-interrupted")
    resumed_part = time.perf_counter() - started
    summary = json.loads((paths["log_dir"] / "summary.json").read_text())
    assert summary["resumed_from_step"] == 2  # the end of epoch 1
    # the summary covers the whole run, not only the part after the resume
    assert before < summary["wall_time_s"] <= before + resumed_part
    n_samples, epochs = summary["n_train_samples"], summary["epochs"]
    assert summary["samples_per_second"] == pytest.approx(epochs * n_samples / summary["wall_time_s"], rel=1e-3)
    steps = [r["step"] for r in read_step_metrics(paths["dvclive_dir"])]
    assert steps == [1, 2, 3, 4]
    assert not paths["resume_dir"].exists()
    # the same weights as the uninterrupted run, epoch by epoch
    straight_paths = straight_runs(experiment)[0]
    for epoch in (1, 2):
        resumed = delta_weights(paths["checkpoints_dir"] / f"epoch-{epoch}")
        straight = delta_weights(straight_paths["checkpoints_dir"] / f"epoch-{epoch}")
        assert resumed.keys() == straight.keys()
        assert all(torch.allclose(resumed[k], straight[k], atol=1e-6) for k in resumed)


@pytest.mark.parametrize("experiment", ["freeze_vision", "lora"])
def test_frozen_vision_cache_trains_the_same_model_without_running_the_tower(workdir, experiment):
    counts, paths = {}, {}
    for tag, cache_mb in (("-cached", 4096), ("-uncached", 0)):
        counts[tag] = count_vision_tower_runs()
        paths[tag] = run_tiny_training(
            workdir, experiment, train_params(frozen_vision_cache_mb=cache_mb), callbacks=[counts[tag]], tag=tag
        )
    assert counts["-cached"].runs == 0 and counts["-uncached"].runs == 8  # 2 epochs x 2 steps x 2 micro-batches
    cached_log, uncached_log = (read_step_metrics(p["dvclive_dir"]) for p in paths.values())
    assert [r["step"] for r in cached_log] == [r["step"] for r in uncached_log] == [1, 2, 3, 4]
    for a, b in zip(cached_log, uncached_log):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["grad_norm"] == pytest.approx(
            b["grad_norm"], rel=1e-4
        )
    for epoch in (1, 2):
        cached, uncached = (delta_weights(p["checkpoints_dir"] / f"epoch-{epoch}") for p in paths.values())
        assert cached.keys() == uncached.keys()
        assert all(torch.allclose(cached[k], uncached[k], atol=1e-6) for k in cached)


def test_vision_cache_applies_only_to_a_frozen_tower_without_dropout(workdir):
    model, _ = load_for_inference(workdir / "base", None)
    assert vision_cache_blocker(apply_strategy(model, "freeze_llm", LoraParams())) == "the vision tower trains"
    model = apply_strategy(model, "freeze_vision", LoraParams())
    assert vision_cache_blocker(model) is None
    model.model.vision_tower.embeddings.dropout.p = 0.1
    assert "dropout" in vision_cache_blocker(model)


def test_vision_cache_size_bound_counts_the_most_tiles_in_fp32(workdir):
    model, processor = load_for_inference(workdir / "base", None)
    one_tile = cache_megabytes(model, processor, 10)
    width = model.config.vision_config.hidden_size * 4  # InternVL's pixel shuffle: 2 x 2 patches per token
    assert one_tile == pytest.approx(10 * processor.image_seq_length * width * 4 / 1e6)
    processor.image_processor.crop_to_patches, processor.image_processor.max_patches = True, 12
    assert cache_megabytes(model, processor, 10) == pytest.approx(13 * one_tile)  # 12 tiles + the thumbnail


def test_another_seed_trains_another_model_and_never_resumes_the_first_seeds_state(workdir, straight_runs):
    """train.seeds is a matrix axis: seed 5 initialises the LoRA adapters and orders the data its own way, and a
    resume state left by seed 3 in the same folder is discarded (the fingerprint holds the training seed)."""
    with pytest.raises(KeyboardInterrupt):
        run_tiny_training(workdir, "lora", callbacks=[interrupt_after_epoch(1)], tag="-seeds")  # seed 3
    paths = run_tiny_training(workdir, "lora", tag="-seeds", seed=5)
    summary = json.loads((paths["log_dir"] / "summary.json").read_text())
    assert summary["seed"] == 5 and summary["resumed_from_step"] == 0
    assert json.loads((paths["checkpoints_dir"] / "epoch-2" / CHECKPOINT_META).read_text())["seed"] == 5
    seed_5 = delta_weights(paths["checkpoints_dir"] / "epoch-2")
    seed_3 = delta_weights(straight_runs("lora")[0]["checkpoints_dir"] / "epoch-2")
    assert seed_5.keys() == seed_3.keys()
    assert not all(torch.allclose(seed_5[k], seed_3[k], atol=1e-4) for k in seed_5)


def test_a_seed_outside_train_seeds_is_refused_before_any_work(workdir, tmp_path):
    with pytest.raises(ParamsError, match=r"training seed 9 is not in train.seeds \[3, 5\]"):
        run_train(
            train_params(),
            "freeze_llm",
            9,
            workdir / "base",
            workdir / "train.jsonl",
            tmp_path / "c",
            tmp_path / "l",
            tmp_path / "d",
            tmp_path / "r",
        )
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("strategy", ["projector_only", "freeze_vision", "full"])
def test_every_checkpoint_format_round_trips(workdir, probe_batch, tmp_path, strategy):
    model = AutoModelForImageTextToText.from_pretrained(workdir / "base", dtype=torch.float32)
    full_bytes = state_bytes(model)
    apply_strategy(model, strategy, LoraParams())
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    model.eval()
    expected = _logits(model, probe_batch)
    saved = save_checkpoint(model, tmp_path / "epoch-1", strategy, {"epoch": 1})
    loaded, _ = load_for_inference(workdir / "base", tmp_path / "epoch-1")
    assert torch.allclose(_logits(loaded, probe_batch), expected, atol=1e-5)
    if strategy == "full":
        assert (tmp_path / "epoch-1" / "model.safetensors").exists()
    else:
        assert saved < full_bytes


def _train_steps_in_bf16(model, batch, steps=2):
    """A few optimizer steps under CPU bf16 autocast: fp32 master weights, bf16 compute (the Trainer's bf16)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


@pytest.mark.parametrize("strategy", ["freeze_llm", "lora", "full"])
def test_bf16_run_saves_bf16_weights_that_load_for_inference(workdir, probe_batch, tmp_path, strategy):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        processor = load_for_inference(workdir / "base", None)[1]
        dataset = CaptionDataset("train.jsonl")
        batch = CaptionCollator(processor, train_params().train.instruction, 256)([dataset[i] for i in range(4)])
    model = AutoModelForImageTextToText.from_pretrained(workdir / "base", dtype=torch.float32)
    model = apply_strategy(model, strategy, LoraParams(r=4, alpha=8, target_modules=["q_proj", "v_proj"]))
    _train_steps_in_bf16(model, batch)

    for precision in ("fp32", "bf16"):
        save_checkpoint(model, tmp_path / precision, strategy, {"epoch": 1}, CHECKPOINT_DTYPES[precision])
    fp32_bytes, bf16_bytes = (
        sum(f.stat().st_size for f in (tmp_path / d).glob("*.safetensors")) for d in ("fp32", "bf16")
    )
    saved = (
        delta_weights(tmp_path / "bf16") if strategy != "full" else load_file(tmp_path / "bf16" / "model.safetensors")
    )
    assert saved and {t.dtype for t in saved.values()} == {torch.bfloat16}
    assert json.loads((tmp_path / "bf16" / CHECKPOINT_META).read_text())["weights_dtype"] == "bfloat16"
    assert bf16_bytes < 0.55 * fp32_bytes  # half the bytes (plus the safetensors header)
    # the model in training is untouched: its master weights stay fp32
    assert {p.dtype for p in model.parameters()} == {torch.float32}

    loaded, _ = load_for_inference(workdir / "base", tmp_path / "bf16")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}  # cast to the inference dtype
    with torch.no_grad():  # what bf16 storage keeps of the trained weights
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(p.to(torch.bfloat16).float())
    assert torch.allclose(_logits(loaded, probe_batch), _logits(model, probe_batch), atol=1e-5)


def test_loader_refuses_weights_that_do_not_match_the_strategy(workdir, freeze_llm_run, tmp_path):
    ckpt = tmp_path / "epoch-2"
    shutil.copytree(freeze_llm_run[0]["checkpoints_dir"] / "epoch-2", ckpt)
    meta = json.loads((ckpt / CHECKPOINT_META).read_text())
    (ckpt / CHECKPOINT_META).write_text(json.dumps({**meta, "strategy": "projector_only"}))
    with pytest.raises(ValueError, match="unexpected keys.*vision_tower"):
        load_for_inference(workdir / "base", ckpt)
    with pytest.raises(FileNotFoundError, match="not a brandcap checkpoint"):
        load_for_inference(workdir / "base", tmp_path)


def test_effective_batch_and_precision_settings():
    # batch 24 with per-device 3 works on 1, 2, 4 and 8 devices
    for devices, accumulation in ((1, 8), (2, 4), (4, 2), (8, 1)):
        train = train_params(batch_size=24, per_device_batch_size=3, devices=devices).train
        assert gradient_accumulation_steps(train) == accumulation
    expected = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    assert resolve_precision("auto") == expected
    assert resolve_precision("fp32") == "fp32"


def test_missing_base_model_fails_clearly(workdir, tmp_path):
    with pytest.raises(FileNotFoundError, match="base_model stage"):
        run_train(
            train_params(),
            "freeze_llm",
            3,
            tmp_path / "nowhere",
            workdir / "train.jsonl",
            tmp_path / "c",
            tmp_path / "l",
            tmp_path / "d",
            tmp_path / "r",
        )


def test_prompt_settings_are_checked_before_any_work(workdir, tmp_path):
    def run(params):
        run_train(
            params,
            "freeze_llm",
            3,
            workdir / "base",
            workdir / "train.jsonl",
            tmp_path / "c",
            tmp_path / "l",
            tmp_path / "d",
            tmp_path / "r",
        )

    with pytest.raises(
        ValueError, match=r"train.max_length \(16\) leaves no room for the answer: .* 1 tile x 9 = 9 image tokens"
    ):
        run(train_params(max_length=16))
    tiled = validate_params({**train_params().model_dump(), "model": {"image_tiling": {"enabled": True}}})
    with pytest.raises(
        ValueError, match=r"base: its processor tiles images with \(enabled: false\).*rerun the base_model stage"
    ):
        run(tiled)
    assert not any(tmp_path.iterdir())  # nothing written, no resume state


def test_deepspeed_config_is_checked(tmp_path):
    from brandcap.stages.train import check_deepspeed_config

    check_deepspeed_config("")
    with pytest.raises(FileNotFoundError, match="zero2.json"):
        check_deepspeed_config(str(tmp_path / "missing.json"))
    (tmp_path / "zero2.json").write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    check_deepspeed_config(str(tmp_path / "zero2.json"))
    (tmp_path / "zero3.json").write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    with pytest.raises(ValueError, match="ZeRO stage 3"):
        check_deepspeed_config(str(tmp_path / "zero3.json"))


def test_progress_is_a_few_log_lines_without_a_terminal(workdir, caplog, capfd, monkeypatch):
    """Under pytest stderr is no terminal: no bar and no printed log dicts, a bounded number of progress lines."""
    import transformers.utils.logging as hf_logging

    monkeypatch.setattr(
        hf_logging, "_tqdm_active", False
    )  # what the entry scripts do (brandcap.running.progress.quiet_library_bars)
    with caplog.at_level(logging.INFO, logger="brandcap.stages.train"):
        run_tiny_training(workdir, "projector_only", tag="-progress")
    out, err = capfd.readouterr()
    assert "\r" not in out + err and "'loss'" not in out + err
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train projector_only: ")]
    assert 1 <= len(lines) <= 11 and lines[-1].startswith("train projector_only: 4/4 (100%) step")


def _two_layer_model() -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[0].requires_grad_(False)
    return model


def test_a_resume_checkpoint_with_other_weights_is_refused_before_training(tmp_path):
    model = _two_layer_model()
    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    save_file({"0.weight": torch.zeros(2, 2)}, checkpoint / SAFE_WEIGHTS_NAME)
    with pytest.raises(RuntimeError, match="holds other weights than this run trains.*delete"):
        expect_trainable_only_resume(model, str(checkpoint))
    save_file({"1.weight": torch.zeros(2, 2), "1.bias": torch.zeros(2)}, checkpoint / SAFE_WEIGHTS_NAME)
    expect_trainable_only_resume(model, str(checkpoint))
    assert sorted(model._keys_to_ignore_on_save) == ["0.bias", "0.weight"]  # the frozen ones, absent on purpose


def test_a_resume_that_did_not_restore_the_weights_fails_loudly(tmp_path):
    """If a transformers upgrade loaded resume checkpoints otherwise, training must not go on from the base."""
    model = _two_layer_model()
    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    save_file(
        {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}, checkpoint / SAFE_WEIGHTS_NAME
    )
    ResumedWeightsCheck(str(checkpoint)).on_train_begin(None, None, None, model=model)  # restored: fine
    with torch.no_grad():
        model[1].weight.add_(1.0)
    with pytest.raises(RuntimeError, match="did not restore 1 trainable weights"):
        ResumedWeightsCheck(str(checkpoint)).on_train_begin(None, None, None, model=model)
    ResumedWeightsCheck(None).on_train_begin(None, None, None, model=model)  # a fresh run checks nothing
