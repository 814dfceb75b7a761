"""The export stage on real tiny checkpoints: a standalone model directory that loads alone and answers as
base + checkpoint do; which checkpoint the selection exports; atomic writing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from brandcap.files.atomic import write_json
from brandcap.model.checkpoints import load_for_inference
from brandcap.model.training_data import CaptionCollator, CaptionDataset
from brandcap.running.provenance import data_sha256
from brandcap.stages.export import EXPORT_META, run_export, validation_best
from tests.conftest import run_tiny_training, train_params


@pytest.fixture(scope="module")
def processed(workdir) -> Path:
    """A processed-data folder (for the data hash): the tiny training set as train and test."""
    folder = workdir / "processed"
    folder.mkdir(exist_ok=True)
    for name in ("train.jsonl", "test.jsonl"):
        shutil.copy(workdir / "train.jsonl", folder / name)
    return folder


@pytest.fixture(scope="module")
def trained(workdir) -> dict[str, Path]:
    """Two-epoch runs of the LoRA and freeze_llm strategies: their checkpoint folders."""
    return {exp: run_tiny_training(workdir, exp, tag="-export")["checkpoints_dir"] for exp in ("lora", "freeze_llm")}


def _probe(workdir, processor) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        dataset = CaptionDataset("train.jsonl")
        batch = CaptionCollator(processor, train_params().train.instruction, 256)([dataset[i] for i in range(3)])
    batch.pop("labels")
    return batch


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("experiment", ["lora", "freeze_llm"])
def test_exported_directory_loads_alone_and_gives_the_checkpoints_logits(
    workdir, trained, processed, tmp_path, experiment
):
    checkpoint = trained[experiment] / "epoch-2"
    out = tmp_path / "export" / experiment
    record = run_export(train_params(), workdir / "base", processed, out, checkpoint_dir=checkpoint)

    exported = AutoModelForImageTextToText.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    reference, base_processor = load_for_inference(workdir / "base", checkpoint)
    base, _ = load_for_inference(workdir / "base", None)
    batch = _probe(workdir, processor)
    assert torch.equal(batch["input_ids"], _probe(workdir, base_processor)["input_ids"])  # the processor came along
    torch.testing.assert_close(_logits(exported, batch), _logits(reference, batch), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(_logits(exported, batch), _logits(base, batch), atol=1e-4)  # the training is in it

    assert not any("lora" in name for name in exported.state_dict())  # merged, not an adapter
    assert sorted(p.name for p in out.parent.iterdir()) == [experiment]  # no temporary folder left
    assert record["strategy"] == experiment and record["choice"]["epoch"] == 2
    assert json.loads((out / EXPORT_META).read_text())["provenance"]["data_sha256"] == data_sha256(processed)
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\n")
    assert f"data sha256 `{data_sha256(processed)}`" in card and f"experiment `{experiment}`" in card
    assert "learning_rate: 0.005" in card and "Not evaluated" in card  # training params; no eval dir given
    assert '--mm-processor-kwargs \'{"crop_to_patches": false, "min_patches": 1, "max_patches": 12}\'' in card


# ----------------------------------------------------------------------------- which checkpoint
def _write_evaluations(eval_dir: Path, params, val: dict[tuple[str, int, int], float], base_val: float) -> None:
    write_json(
        eval_dir / "base" / "epoch-0" / "metrics.json",
        {"val_brand_accuracy": base_val, "brand_accuracy": 0.1, "general_cider": 0.0},
    )
    for exp in params.train.experiments:
        for seed in params.train.seeds:
            for epoch in params.train.save_epochs:
                metrics = {
                    "val_brand_accuracy": val.get((exp, seed, epoch), 0.0),
                    "brand_accuracy": 0.5,
                    "general_cider": 0.0,
                }
                write_json(eval_dir / exp / f"seed-{seed}" / f"epoch-{epoch}" / "metrics.json", metrics)


SELECTION_PARAMS = {
    "train": {
        "seeds": [3, 5],
        "epochs": 2,
        "save_epochs": [1, 2],
        "experiments": {"freeze_llm": {"strategy": "freeze_llm"}, "lora": {"strategy": "lora"}},
    }
}


def test_the_selection_exports_what_tables_names_best_and_the_better_seed(tmp_path):
    from brandcap.config.params import validate_params

    params = validate_params(SELECTION_PARAMS)
    # lora epoch 1 has the best mean over seeds (0.6), and seed 5 is the better of its seeds there
    _write_evaluations(
        tmp_path,
        params,
        {("lora", 3, 1): 0.5, ("lora", 5, 1): 0.7, ("freeze_llm", 3, 2): 0.55, ("freeze_llm", 5, 2): 0.55},
        0.2,
    )
    choice = validation_best(params, Path("results/checkpoints"), tmp_path)
    assert (choice.experiment, choice.seed, choice.epoch) == ("lora", 5, 1)
    assert choice.checkpoint == Path("results/checkpoints/lora/seed-5/epoch-1")
    assert choice.metrics["val_brand_accuracy"] == 0.7  # the exported seed's own metrics

    _write_evaluations(
        tmp_path,
        params,
        {("lora", 3, 1): 0.6, ("lora", 5, 1): 0.6, ("freeze_llm", 3, 2): 0.6, ("freeze_llm", 5, 2): 0.6},
        0.2,
    )
    tie = validation_best(params, Path("results/checkpoints"), tmp_path)
    assert (tie.experiment, tie.seed, tie.epoch) == ("freeze_llm", 3, 2) and "a tie with lora" in tie.reason

    _write_evaluations(tmp_path, params, {("lora", 3, 1): 0.2}, 0.2)
    none = validation_best(params, Path("results/checkpoints"), tmp_path)
    assert none.checkpoint is None and none.epoch == 0 and none.reason.startswith("no learning")


def test_export_without_a_checkpoint_or_a_selection_names_the_fix(workdir, processed, tmp_path):
    with pytest.raises(ValueError, match="--checkpoints and --eval-dir"):
        run_export(train_params(), workdir / "base", processed, tmp_path / "out", checkpoints_dir=tmp_path)
