"""Generic-data mixing (train.general_mix) on a tiny InternVL: per-epoch counts and draws, the general question,
batches unchanged without mixing, the frozen vision cache and resume with mixed data.

    .venv/bin/python -m pytest tests/test_general_mix.py -q
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Trainer, TrainerState

from brandcap.config.params import experiment_settings
from brandcap.model.chat import encode_prompts
from brandcap.model.checkpoints import load_for_inference
from brandcap.model.general_mix import GenericPairs, MixedCaptionPool, MixedEpochCallback, MixedEpochSamples, epoch_draw
from brandcap.model.training_data import CaptionCollator, CaptionDataset
from brandcap.model.training_log import read_step_metrics
from brandcap.stages.train import DeltaTrainer, _generic_pool, _training_inputs, mixed_epochs, training_arguments
from tests.conftest import (
    TINY_TRAIN_SAMPLES,
    count_vision_tower_runs,
    delta_weights,
    interrupt_after_epoch,
    run_tiny_training,
    train_params,
)

N_GENERIC = 6
GENERIC_FILE = "general_train.jsonl"


@pytest.fixture(scope="module")
def generic_set(workdir):
    """N_GENERIC grey-ish generic pairs beside the tiny training set; the JSONL's name, relative to workdir."""
    (workdir / "generic").mkdir()
    records = []
    for i in range(N_GENERIC):
        Image.fromarray(np.full((48, 48, 3), 90 + 20 * i, np.uint8)).save(workdir / "generic" / f"g{i}.png")
        records.append(
            {"id": f"generic-{i:05d}", "image": f"generic/g{i}.png", "caption": f"A plain grey square number {i}."}
        )
    (workdir / GENERIC_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    return GENERIC_FILE


# --------------------------------------------------------------------------- the per-epoch draw
def test_each_epoch_has_every_task_sample_and_round_mix_times_n_generic_pairs():
    samples = MixedEpochSamples(list(range(28)), n_task=8, n_generic=20, general_mix=1.5, seed=3)
    assert len(samples) == 8 + 12
    draws = []
    for epoch in range(3):
        samples.set_epoch(epoch)
        indices = [samples[i] for i in range(len(samples))]
        assert indices[:8] == list(range(8))
        generic = indices[8:]
        assert len(generic) == 12 and len(set(generic)) == 12 and min(generic) >= 8  # without replacement
        draws.append(sorted(generic))
    assert draws[0] != draws[1] != draws[2]  # a new draw every epoch
    assert MixedEpochSamples(list(range(28)), 8, 20, 0.2, 3).n_mixed == 2  # round(1.6)


def test_the_callback_sets_the_epoch_that_begins_also_after_a_resume():
    samples = MixedEpochSamples(list(range(28)), 8, 20, 1.5, 3)
    state = TrainerState()
    for completed in (0.0, 1.0, 3.0):  # a fresh run, then after one epoch, then resumed after three
        state.epoch = completed
        MixedEpochCallback(samples).on_epoch_begin(None, state, None)
        assert samples.epoch == int(completed) and samples.indices == samples.epoch_indices(int(completed))


def test_the_draw_is_fixed_by_seed_and_epoch_and_repeats_only_past_the_set_size():
    assert list(epoch_draw(20, 12, seed=3, epoch=1)) == list(epoch_draw(20, 12, seed=3, epoch=1))
    assert list(epoch_draw(20, 12, seed=3, epoch=1)) != list(epoch_draw(20, 12, seed=5, epoch=1))
    assert MixedEpochSamples([], 8, 20, 1.5, 3).epoch_indices(2) == MixedEpochSamples([], 8, 20, 1.5, 3).epoch_indices(
        2
    )
    counts = Counter(epoch_draw(5, 12, seed=3, epoch=0).tolist())  # 2 whole passes and 2 more
    assert sorted(counts) == list(range(5)) and sorted(counts.values()) == [2, 2, 2, 3, 3]


def test_experiments_override_general_mix():
    params = train_params(
        general_mix=0.5,
        experiments={
            "plain": {"strategy": "lora"},
            "mixed": {"strategy": "lora", "general_mix": 2.0},
            "off": {"strategy": "lora", "general_mix": 0},
        },
    )
    assert [experiment_settings(params, name).general_mix for name in ("plain", "mixed", "off")] == [0.5, 2.0, 0.0]


# --------------------------------------------------------------------------- samples and batches
def test_generic_pairs_are_asked_the_general_question(workdir, generic_set, monkeypatch):
    monkeypatch.chdir(workdir)
    params = train_params()
    processor = load_for_inference(workdir / "base", None)[1]
    pool = MixedCaptionPool(CaptionDataset("train.jsonl"), GenericPairs(generic_set, params.eval.general_instruction))
    collate = CaptionCollator(processor, params.train.instruction, params.train.max_length)
    task, generic = pool[0], pool[TINY_TRAIN_SAMPLES + 1]
    assert generic["caption"] == "A plain grey square number 1." and "instruction" not in task
    prompts = collate.prompt_inputs([task, generic])["input_ids"]
    assert prompts[1] == encode_prompts(processor, params.eval.general_instruction, [generic["image"]])["input_ids"][0]
    assert prompts[0] == encode_prompts(processor, params.train.instruction, [task["image"]])["input_ids"][0]
    assert prompts[0] != prompts[1]


def _trainer(workdir, params, general_mix, general_train=None):
    """The Trainer run_train builds (model, arguments, samples, collator), without training it."""
    hf_model, processor = load_for_inference(workdir / "base", None)
    args = training_arguments(params.train, params.train.learning_rate, 3, workdir / "unused", "fp32")
    dataset = CaptionDataset("train.jsonl")
    generic, pool = _generic_pool(params, general_mix, general_train, dataset)
    pool, collator = _training_inputs(hf_model, processor, pool, params.train, args.device, "fp32")
    samples, callbacks = mixed_epochs(pool, len(dataset), generic, general_mix, 3)
    return DeltaTrainer(model=hf_model, args=args, train_dataset=samples, data_collator=collator, callbacks=callbacks)


def _epoch_batches(trainer, epoch):
    state = TrainerState()
    state.epoch = epoch
    trainer.callback_handler.on_epoch_begin(
        trainer.args, state, trainer.control
    )  # what the Trainer does at each epoch's start
    loader = trainer.get_train_dataloader()
    loader.set_epoch(epoch)
    return list(loader)


def test_without_mixing_the_batches_are_those_of_the_plain_trainer(workdir, generic_set, monkeypatch):
    monkeypatch.chdir(workdir)
    params = train_params(frozen_vision_cache_mb=0)
    ours = _trainer(workdir, params, 0.0, generic_set)
    # what the train stage built before mixing existed: the task samples, the collator, the Trainer's own sampler
    processor = load_for_inference(workdir / "base", None)[1]
    plain = Trainer(
        model=ours.model,
        args=ours.args,
        train_dataset=CaptionDataset("train.jsonl"),
        data_collator=CaptionCollator(processor, params.train.instruction, params.train.max_length),
    )
    for epoch in (0, 1):
        for a, b in zip(_epoch_batches(ours, epoch), _epoch_batches(plain, epoch), strict=True):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mixed_batches_are_the_epochs_draw_shuffled_by_the_trainer_with_the_general_question(
    workdir, generic_set, monkeypatch
):
    """Each epoch's batches equal a plain Trainer's over a fixed list of that epoch's samples: the task
    samples and the epoch's generic pairs (asked the general question), in the Trainer's own shuffle."""
    monkeypatch.chdir(workdir)
    params = train_params(frozen_vision_cache_mb=0, per_device_batch_size=4)
    trainer = _trainer(workdir, params, 0.5, generic_set)
    samples, collate = trainer.train_dataset, trainer.data_collator
    for epoch in (0, 1):
        batches = _epoch_batches(trainer, epoch)
        fixed = [samples.pool[i] for i in samples.epoch_indices(epoch)]
        assert len(fixed) == TINY_TRAIN_SAMPLES + 4 == sum(len(b["input_ids"]) for b in batches)
        plain = Trainer(model=trainer.model, args=trainer.args, train_dataset=fixed, data_collator=collate)
        for got, want in zip(batches, _epoch_batches(plain, epoch), strict=True):
            assert all(torch.equal(got[k], want[k]) for k in want)


# --------------------------------------------------------------------------- training runs
@pytest.fixture(scope="module")
def mixed_runs(workdir, generic_set):
    """freeze_vision with general_mix 0.5 (4 generic pairs + 8 task samples per epoch: 3 steps), with and
    without the frozen vision cache, and cached but interrupted after epoch 1 and resumed."""
    counts, paths = {}, {}
    for tag, cache_mb in (("-mix-cached", 4096), ("-mix-uncached", 0)):
        counts[tag] = count_vision_tower_runs()
        paths[tag] = run_tiny_training(
            workdir,
            "freeze_vision",
            train_params(general_mix=0.5, frozen_vision_cache_mb=cache_mb),
            callbacks=[counts[tag]],
            tag=tag,
            general_train=generic_set,
        )
    params = train_params(general_mix=0.5)
    with pytest.raises(KeyboardInterrupt):
        run_tiny_training(
            workdir,
            "freeze_vision",
            params,
            callbacks=[interrupt_after_epoch(1)],
            tag="-mix-resumed",
            general_train=generic_set,
        )
    paths["-mix-resumed"] = run_tiny_training(
        workdir, "freeze_vision", params, tag="-mix-resumed", general_train=generic_set
    )
    return counts, paths


def _log(paths):
    return read_step_metrics(paths["dvclive_dir"])


def test_mixed_run_trains_the_mixed_epochs_and_says_so(mixed_runs):
    _, paths = mixed_runs
    summary = json.loads((paths["-mix-cached"]["log_dir"] / "summary.json").read_text())
    assert (summary["general_mix"], summary["n_generic_per_epoch"], summary["n_train_samples"]) == (
        0.5,
        4,
        TINY_TRAIN_SAMPLES,
    )
    assert [r["step"] for r in _log(paths["-mix-cached"])] == [1, 2, 3, 4, 5, 6]  # 12 samples, batch 4, 2 epochs


def test_frozen_vision_cache_covers_the_generic_pairs(mixed_runs):
    counts, paths = mixed_runs
    assert (
        counts["-mix-cached"].runs == 0 and counts["-mix-uncached"].runs == 12
    )  # 2 epochs x 3 steps x 2 micro-batches
    for a, b in zip(_log(paths["-mix-cached"]), _log(paths["-mix-uncached"]), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    cached, uncached = (
        delta_weights(paths[tag]["checkpoints_dir"] / "epoch-2") for tag in ("-mix-cached", "-mix-uncached")
    )
    assert all(torch.allclose(cached[k], uncached[k], atol=1e-6) for k in cached)


def test_an_interrupted_mixed_run_resumes_to_the_same_model(mixed_runs):
    _, paths = mixed_runs
    summary = json.loads((paths["-mix-resumed"]["log_dir"] / "summary.json").read_text())
    assert summary["resumed_from_step"] == 3
    for epoch in (1, 2):
        resumed, straight = (
            delta_weights(paths[tag]["checkpoints_dir"] / f"epoch-{epoch}") for tag in ("-mix-resumed", "-mix-cached")
        )
        assert all(torch.allclose(resumed[k], straight[k], atol=1e-6) for k in resumed)


def test_the_resume_fingerprint_covers_the_mix_and_the_generic_set(workdir, generic_set, monkeypatch):
    from brandcap.stages.train import run_fingerprint

    monkeypatch.chdir(workdir)
    dataset = CaptionDataset("train.jsonl")
    generic = GenericPairs(generic_set, "What is in this image?")

    def fingerprint(params, pairs):
        return run_fingerprint(params, "freeze_vision", 3, workdir / "base", workdir / "train.jsonl", dataset, pairs)

    mixed = fingerprint(train_params(general_mix=0.5), generic)
    assert mixed != fingerprint(train_params(general_mix=1.0), generic)
    assert mixed != fingerprint(
        train_params(general_mix=0.5, experiments={"freeze_vision": {"strategy": "freeze_vision", "general_mix": 1.0}}),
        generic,
    )
    image = workdir / generic.records[0]["image"]
    original = image.read_bytes()
    try:
        Image.new("RGB", (48, 48), (1, 2, 3)).save(image)
        assert mixed != fingerprint(train_params(general_mix=0.5), GenericPairs(generic_set, "What is in this image?"))
    finally:
        image.write_bytes(original)
