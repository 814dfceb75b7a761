"""The evaluate stage on a real tiny InternVL model: outputs, test loss, resumability."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import InternVLForConditionalGeneration

import brandcap.stages.evaluate as evaluate_module
from brandcap.config.params import ImageTilingParams, Params, TinyModelParams, validate_params
from brandcap.evaluation.caption_metrics import METRIC_NAMES
from brandcap.evaluation.metrics import brand_outcome, named_brands
from brandcap.files.atomic import read_jsonl, write_jsonl
from brandcap.model.chat import prompt_text, set_image_tiling
from brandcap.model.training_data import IGNORE_INDEX, CaptionCollator, CaptionDataset
from brandcap.sim.tiny_model import build_tiny_model
from brandcap.stages.evaluate import generate_captions, load_model, reference_losses, run_evaluate

TILED = {"enabled": True}  # InternVL's tiling: up to 12 tiles + a thumbnail; 9 tokens per 84 px tile here

BRANDS = ["Chloé", "Dolce & Gabbana", "Gucci"]
COLOURS = {"red": (200, 30, 30), "blue": (30, 30, 200), "green": (30, 160, 30)}


def caption(colour: str, brand: str) -> str:
    return f"A {colour} leather bag by {brand} with a gold strap."


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    corpus = [caption(c, b) for c in COLOURS for b in BRANDS] * 20
    model, processor = build_tiny_model(
        corpus, TinyModelParams(vocab_size=400), seed=0, tiling=ImageTilingParams(**TILED)
    )
    out = tmp_path_factory.mktemp("base")
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    test, general = [], []
    for i in range(6):
        colour = list(COLOURS)[i % 3]
        brand = BRANDS[i % 3]
        # One wider image: a different number of image tiles, so prompts differ in length.
        image = root / f"p{i}.png"
        Image.new("RGB", (80 if i == 1 else 64, 64), COLOURS[colour]).save(image)
        test.append({"product_id": f"p{i}", "image": str(image), "brand": brand, "caption": caption(colour, brand)})
    for i in range(3):
        image = root / f"g{i}.png"
        Image.new("RGB", (64, 64), list(COLOURS.values())[i]).save(image)
        general.append(
            {"id": f"g{i}", "image": str(image), "caption": f"A {list(COLOURS)[i]} object on a white background."}
        )
    val = [{**rec, "product_id": f"v{i}"} for i, rec in enumerate(test[:3])]
    write_jsonl(root / "test.jsonl", test)
    write_jsonl(root / "val.jsonl", val)
    write_jsonl(root / "general.jsonl", general)
    write_jsonl(root / "empty.jsonl", [])
    return {
        "test": root / "test.jsonl",
        "val": root / "val.jsonl",
        "general": root / "general.jsonl",
        "empty": root / "empty.jsonl",
    }


def small_params(max_length: int = 256, tiling: dict = TILED, **eval_overrides) -> Params:
    # Room for the whole reference after the prompt (the tiny test tokenizer spends many tokens on it).
    return validate_params(
        {
            "model": {"image_tiling": tiling},
            "train": {"max_length": max_length},
            "eval": {"max_new_tokens": 6, "batch_size": 4, **eval_overrides},
        }
    )


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


@pytest.mark.parametrize("tiling, tiles", [(TILED, [1, 13, 13]), ({"enabled": False}, [1, 1, 1])])
def test_training_generation_and_test_loss_see_the_same_inputs(base_dir, data, tmp_path, tiling, tiles):
    """Same pixel values and image tokens in training and generation; test loss = training loss, per sample."""
    params = small_params(tiling=tiling)
    model, processor = load_model(base_dir, None, "cpu")
    set_image_tiling(processor, params.model.image_tiling)
    portrait = tmp_path / "portrait.png"
    Image.new("RGB", (63, 84), (200, 30, 30)).save(portrait)  # 3:4, as a downloaded product photo
    records = read_jsonl(data["test"])[:2] + [{"image": str(portrait), "caption": caption("red", "Gucci")}]
    images = [Image.open(r["image"]).convert("RGB") for r in records]
    captions = [r["caption"] for r in records]
    prompt = prompt_text(processor, params.train.instruction)
    _, prompt_inputs = generate_captions(model, processor, prompt, images, max_new_tokens=1)
    batched = reference_losses(model, processor, prompt_inputs, captions, max_length=256)

    collate = CaptionCollator(processor, params.train.instruction, max_length=256)
    training = collate([{"image": i, "caption": c} for i, c in zip(images, captions)])
    assert torch.equal(training["pixel_values"], prompt_inputs["pixel_values"])
    for ids in (training["input_ids"], prompt_inputs["input_ids"]):  # a square, a 5:4 and a 3:4 image
        assert (ids == processor.image_token_id).sum(dim=1).tolist() == [9 * n for n in tiles]
    for image, caption_text, (loss_sum, n) in zip(images, captions, batched):
        alone = collate([{"image": image, "caption": caption_text}])
        with torch.no_grad():
            expected = model(**alone).loss
        assert n == (alone["labels"] != -100).sum().item()
        assert loss_sum / n == pytest.approx(float(expected), rel=1e-4)


def test_prompt_settings_are_checked_before_any_work(base_dir, data, tmp_path):
    out, resume = tmp_path / "out", tmp_path / "resume"
    # 13 tiles x 9 tokens = 117 image tokens do not fit in 100
    with pytest.raises(
        ValueError,
        match=r"train.max_length \(100\) leaves no room.*13 tiles \(12 \+ a thumbnail\) x 9 = 117 image tokens",
    ):
        run_evaluate(small_params(max_length=100), base_dir, None, data["test"], data["general"], out, resume)
    with pytest.raises(
        ValueError, match=r"its processor tiles images with \(enabled: true.*rerun the base_model stage"
    ):
        run_evaluate(
            small_params(tiling={"enabled": False}), base_dir, None, data["test"], data["general"], out, resume
        )
    assert not out.exists() and not resume.exists()


def test_evaluate_writes_outputs_and_resumes(base_dir, data, tmp_path, monkeypatch):
    params = small_params()
    out, resume = tmp_path / "out", tmp_path / "resume"
    # As if killed just before the end: the resume state outlives the run (success removes it).
    monkeypatch.setattr(evaluate_module, "finish_resume_dir", lambda path: None)
    run_evaluate(params, base_dir, None, data["test"], data["general"], out, resume)

    predictions = read_jsonl(out / "predictions.jsonl")
    assert [p["product_id"] for p in predictions] == [f"p{i}" for i in range(6)]
    assert set(predictions[0]) == {
        "product_id",
        "brand",
        "reference",
        "prediction",
        "brands_named",
        "outcome",
        "reference_loss",
    }
    for p in predictions:  # the per-item outcome is the metric's own, so metrics.json can be recomputed from it
        assert p["outcome"] == brand_outcome(p["prediction"], p["brand"], BRANDS)
        assert p["brands_named"] == named_brands(p["prediction"], BRANDS)
    assert all(isinstance(p["prediction"], str) and p["reference_loss"] > 0 for p in predictions)
    assert len(read_jsonl(out / "general_predictions.jsonl")) == 3

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_test"] == 6 and metrics["n_general"] == 3
    rates = ["brand_accuracy", "hedged_rate", "wrong_brand_rate", "no_brand_rate"]
    for name in [*rates, "macro_brand_accuracy", "brand_accuracy_lenient"]:
        assert 0 <= metrics[name] <= 1
    assert sum(metrics[name] for name in rates) == pytest.approx(1)
    assert metrics["brand_accuracy"] == sum(p["outcome"] == "correct" for p in predictions) / 6
    for name in ["brand_accuracy", "macro_brand_accuracy"]:
        lo, hi = metrics[f"{name}_ci"]
        assert 0 <= lo <= metrics[name] <= hi <= 1
    assert metrics["n_brands"] == 3
    assert set(metrics["per_brand_accuracy"]) == set(BRANDS)
    assert metrics["test_loss"] > 0
    for name in METRIC_NAMES:
        assert metrics[name] is not None and metrics[f"general_{name}"] is not None
    assert metrics["generation_seconds"] > 0 and metrics["samples_per_second"] > 0

    # A second run generates nothing: the partial file gains no line and outputs stay the same.
    partial = resume / "test.partial.jsonl"
    before = lines(partial)
    assert len(before) == 6
    first_predictions = (out / "predictions.jsonl").read_text()
    run_evaluate(params, base_dir, None, data["test"], data["general"], out, resume)
    assert lines(partial) == before
    assert len(lines(resume / "general.partial.jsonl")) == 3
    assert (out / "predictions.jsonl").read_text() == first_predictions
    assert json.loads((out / "metrics.json").read_text())["generation_seconds"] == metrics["generation_seconds"]

    # A killed run: two finished records and a torn line. Only the four missing are generated.
    partial.write_text("".join(before[:2]) + before[2][:20], encoding="utf-8")
    run_evaluate(params, base_dir, None, data["test"], data["general"], out, resume)
    after = lines(partial)
    assert len(after) == 6 and after[:2] == before[:2]
    assert [json.loads(line)["key"] for line in after[2:]] == [f"p{i}" for i in range(2, 6)]

    # Changed generation settings make the partial results stale: everything is regenerated.
    run_evaluate(small_params(max_new_tokens=1), base_dir, None, data["test"], data["general"], out, resume)
    processor_tokenizer = load_model(base_dir, None, "cpu")[1].tokenizer
    for p in read_jsonl(out / "predictions.jsonl"):
        assert len(processor_tokenizer(p["prediction"], add_special_tokens=False)["input_ids"]) <= 1

    # Other image content (same paths, same records) makes them stale too: no mtime, no path.
    short = small_params(max_new_tokens=1)
    image = Path(read_jsonl(data["test"])[0]["image"])
    original = image.read_bytes()
    kept = lines(partial)
    Image.new("RGB", (32, 32), (1, 2, 3)).save(image)
    try:
        run_evaluate(short, base_dir, None, data["test"], data["general"], out, resume)
    finally:
        image.write_bytes(original)
    assert [json.loads(line)["generation_seconds"] for line in lines(partial)] != [
        json.loads(line)["generation_seconds"] for line in kept
    ]

    # Success removes the resume state: the outputs are the record.
    monkeypatch.undo()
    run_evaluate(params, base_dir, None, data["test"], data["general"], out, resume)
    assert not resume.exists()


def test_the_stage_asks_the_model_with_the_training_prompt_and_no_brand(base_dir, data, tmp_path, monkeypatch):
    """Through run_evaluate itself: the tokens the model generates from are, record by record, the
    prompt part of that record's training sample, and name no brand."""
    fed = []
    original = InternVLForConditionalGeneration.generate

    def recording_generate(self, *args, **kwargs):
        fed.extend(ids[mask.bool()].tolist() for ids, mask in zip(kwargs["input_ids"], kwargs["attention_mask"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(InternVLForConditionalGeneration, "generate", recording_generate)
    params = small_params(max_new_tokens=1)
    run_evaluate(params, base_dir, None, data["test"], data["empty"], tmp_path / "out", tmp_path / "resume")

    processor = load_model(base_dir, None, "cpu")[1]
    collate = CaptionCollator(processor, params.train.instruction, params.train.max_length)
    samples = CaptionDataset(data["test"])
    assert len(fed) == len(samples) == 6
    for i, asked in enumerate(fed):
        training = collate([samples[i]])
        prompt = training["input_ids"][0][training["labels"][0] == IGNORE_INDEX].tolist()
        assert asked == prompt, f"record {i}: the evaluation prompt differs from the training prompt"
        text = processor.tokenizer.decode(asked).lower()
        assert not [b for b in BRANDS if b.lower() in text or b.split()[0].lower() in text], text


def test_empty_general_set_and_sample_cap(base_dir, data, tmp_path):
    out = tmp_path / "out"
    run_evaluate(
        small_params(max_test_samples=4), base_dir, None, data["test"], data["empty"], out, tmp_path / "resume"
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_test"] == 4 and metrics["n_general"] == 0
    assert all(metrics[f"general_{name}"] is None for name in METRIC_NAMES)
    assert len(read_jsonl(out / "predictions.jsonl")) == 4
    assert (out / "general_predictions.jsonl").read_text() == ""


def test_bad_test_file_names_the_problem(base_dir, tmp_path):
    bad = tmp_path / "test.jsonl"
    write_jsonl(bad, [{"product_id": "p0", "image": "x.png", "caption": "A bag."}])
    with pytest.raises(ValueError, match=r"test.jsonl: line 1 lacks \['brand'\]"):
        run_evaluate(small_params(), base_dir, None, bad, None, tmp_path / "out", tmp_path / "resume")


def recording_generation(monkeypatch, answer_for_general: str | None = None) -> list[str]:
    """Record the prompt of every generated item; optionally make the first general answer `answer_for_general`."""
    asked: list[str] = []
    original = evaluate_module.generate_captions

    def recording(model, processor, prompt, images, max_new_tokens):
        asked.extend([prompt] * len(images))
        texts, inputs = original(model, processor, prompt, images, max_new_tokens)
        if answer_for_general is not None and "What is in this image?" in prompt:
            texts = [answer_for_general, *texts[1:]]
        return texts, inputs

    monkeypatch.setattr(evaluate_module, "generate_captions", recording)
    return asked


def test_validation_is_scored_and_the_probe_asks_its_own_question(base_dir, data, tmp_path, monkeypatch):
    """Validation gets the test's prompt and metrics under `val_`; the general set is asked
    eval.general_instruction, and a known brand named on a brand-free image is a hallucination."""
    asked = recording_generation(monkeypatch, answer_for_general="A Gucci bag, I think.")
    params = small_params(max_new_tokens=2)
    out = tmp_path / "out"
    run_evaluate(params, base_dir, None, data["test"], data["general"], out, tmp_path / "resume", val_jsonl=data["val"])

    processor = load_model(base_dir, None, "cpu")[1]
    training_prompt = prompt_text(processor, params.train.instruction)
    assert asked == [training_prompt] * (6 + 3) + [prompt_text(processor, "What is in this image?")] * 3
    val_predictions = read_jsonl(out / "val_predictions.jsonl")
    assert [p["product_id"] for p in val_predictions] == ["v0", "v1", "v2"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_val"] == 3
    assert metrics["val_brand_accuracy"] == sum(p["outcome"] == "correct" for p in val_predictions) / 3
    assert metrics["val_n_brands"] == 3 and metrics["val_loss"] > 0 and len(metrics["val_brand_accuracy_ci"]) == 2
    general = read_jsonl(out / "general_predictions.jsonl")
    assert general[0]["brands_named"] == ["Gucci"]
    assert metrics["general_brand_hallucination_rate"] == pytest.approx(
        sum(bool(g["brands_named"]) for g in general) / 3
    )
    assert metrics["general_brand_hallucination_rate"] >= 1 / 3


def test_prompt_only_baseline_asks_the_base_model_with_the_candidate_brands(base_dir, data, tmp_path, monkeypatch):
    asked = recording_generation(monkeypatch)
    params = small_params(max_new_tokens=2)
    out = tmp_path / "prompted"
    run_evaluate(
        params, base_dir, None, data["test"], None, out, tmp_path / "resume", val_jsonl=data["val"], prompted=True
    )

    processor = load_model(base_dir, None, "cpu")[1]
    question = "Which brand is this product? Answer with one of: Chloé, Dolce & Gabbana, Gucci."
    assert asked == [prompt_text(processor, question)] * (6 + 3)  # through the training chat template
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_test"] == 6 and metrics["n_val"] == 3 and metrics["n_general"] == 0
    assert metrics["general_brand_hallucination_rate"] is None
    assert len(read_jsonl(out / "predictions.jsonl")) == 6
    with pytest.raises(ValueError, match="the prompt-only baseline asks the base model"):
        run_evaluate(params, base_dir, out, data["test"], None, out, tmp_path / "resume", prompted=True)


# ----------------------------------------------------------------------------- a training run's checkpoints
def save_fake_checkpoint(base_dir: Path, out: Path, strategy: str, epoch: int) -> None:
    """A checkpoint as the train stage saves it, its trained weights moved off the base by seeded noise (no training:
    every epoch's model differs from the base and from the others, which is all these tests need)."""
    from brandcap.config.params import LoraParams
    from brandcap.model.checkpoints import save_checkpoint
    from brandcap.model.strategies import apply_strategy

    torch.manual_seed(epoch)
    model = apply_strategy(
        load_model(base_dir, None, "cpu")[0],
        strategy,
        LoraParams(r=2, alpha=4, dropout=0.0, target_modules=["q_proj", "v_proj"]),
    )
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    save_checkpoint(model, out / f"epoch-{epoch}", strategy, {"experiment": strategy, "epoch": epoch})


@pytest.fixture(scope="module")
def runs(base_dir, tmp_path_factory) -> dict[str, Path]:
    """strategy -> a training run's checkpoints folder with epoch-1 and epoch-2."""
    root = tmp_path_factory.mktemp("checkpoints")
    strategies = ("freeze_llm", "lora", "projector_only")
    for strategy in strategies:
        for epoch in (1, 2):
            save_fake_checkpoint(base_dir, root / strategy, strategy, epoch)
    return {strategy: root / strategy for strategy in strategies}


def run_params(save_epochs: list[int], **eval_overrides) -> Params:
    params = small_params(max_new_tokens=2, **eval_overrides)
    return params.model_copy(update={"train": params.train.model_copy(update={"save_epochs": save_epochs})})


def state(model) -> dict[str, torch.Tensor]:
    return {name: t.clone() for name, t in model.state_dict().items()}


@pytest.mark.parametrize("strategy", ["freeze_llm", "lora"])
def test_each_checkpoint_of_a_series_is_applied_to_the_pristine_base(base_dir, runs, strategy):
    """In any order, the series' model for a checkpoint is exactly the one load_for_inference builds from disk."""
    from brandcap.model.checkpoints import CheckpointSeries

    fresh = {epoch: state(load_model(base_dir, runs[strategy] / f"epoch-{epoch}", "cpu")[0]) for epoch in (1, 2)}
    assert any(not torch.equal(fresh[1][k], fresh[2][k]) for k in fresh[1])  # a comparison that can fail
    series = CheckpointSeries(base_dir, "cpu")
    for epoch in (2, 1, 2, 1):
        got = state(series.model(runs[strategy] / f"epoch-{epoch}"))
        assert got.keys() == fresh[epoch].keys()
        assert all(torch.equal(got[k], fresh[epoch][k]) for k in got), (
            f"epoch {epoch} carries another checkpoint's weights"
        )


def test_a_series_restores_the_base_weights_an_earlier_checkpoint_replaced(base_dir, runs):
    """freeze_llm replaces the vision tower and projector, projector_only only the projector: after the first, the
    second gets the base's own vision tower back."""
    from brandcap.model.checkpoints import CheckpointSeries

    series = CheckpointSeries(base_dir, "cpu")
    series.model(runs["freeze_llm"] / "epoch-1")
    got = state(series.model(runs["projector_only"] / "epoch-1"))
    fresh = state(load_model(base_dir, runs["projector_only"] / "epoch-1", "cpu")[0])
    assert all(torch.equal(got[k], fresh[k]) for k in got)


@pytest.mark.parametrize("strategy", ["freeze_llm", "lora"])
def test_one_job_scores_every_checkpoint_of_a_run_as_separate_jobs_would(base_dir, data, runs, strategy, tmp_path):
    """One process scores epoch-1 then epoch-2 into out/epoch-N; epoch 2's answers and reference losses are the ones a
    job that scores epoch 2 alone gets (nothing of epoch 1 leaks into it); success removes the resume state."""
    out, resume = tmp_path / "run", tmp_path / "resume"
    run_evaluate(run_params([1, 2]), base_dir, runs[strategy], data["test"], None, out, resume)
    assert sorted(p.name for p in out.iterdir()) == ["epoch-1", "epoch-2"] and not resume.exists()
    run_evaluate(
        run_params([2]), base_dir, runs[strategy], data["test"], None, tmp_path / "alone", tmp_path / "resume-alone"
    )

    def scored(folder):
        return read_jsonl(folder / "predictions.jsonl")

    assert [p["reference_loss"] for p in scored(out / "epoch-1")] != [
        p["reference_loss"] for p in scored(out / "epoch-2")
    ]
    assert scored(out / "epoch-2") == scored(tmp_path / "alone" / "epoch-2")
    together, alone = (
        json.loads((folder / "metrics.json").read_text())
        for folder in (out / "epoch-2", tmp_path / "alone" / "epoch-2")
    )
    for key in ("generation_seconds", "samples_per_second"):
        together.pop(key), alone.pop(key)
    assert together == alone


def test_a_rerun_resumes_the_finished_epochs_without_loading_them(base_dir, data, runs, tmp_path, monkeypatch):
    """Killed while scoring epoch 2: the rerun neither loads nor asks epoch 1 again; a changed checkpoint is asked again."""
    from brandcap.model.checkpoints import CheckpointSeries

    loaded: list[str] = []
    original = CheckpointSeries.model

    def recording(self, checkpoint_dir):
        loaded.append(Path(checkpoint_dir).name)
        if Path(checkpoint_dir).name == "epoch-2" and loaded.count("epoch-2") == 1:
            raise KeyboardInterrupt  # the first run is killed as it reaches epoch 2
        return original(self, checkpoint_dir)

    monkeypatch.setattr(CheckpointSeries, "model", recording)
    out, resume, params = tmp_path / "out", tmp_path / "resume", run_params([1, 2])
    with pytest.raises(KeyboardInterrupt):
        run_evaluate(params, base_dir, runs["freeze_llm"], data["test"], None, out, resume)
    epoch_1 = lines(resume / "epoch-1" / "test.partial.jsonl")
    assert len(epoch_1) == 6 and loaded == ["epoch-1", "epoch-2"]
    shutil.rmtree(out)  # as Snakemake removes a failed job's output

    monkeypatch.setattr(evaluate_module, "finish_resume_dir", lambda path: None)
    run_evaluate(params, base_dir, runs["freeze_llm"], data["test"], None, out, resume)
    assert loaded == ["epoch-1", "epoch-2", "epoch-2"]
    assert lines(resume / "epoch-1" / "test.partial.jsonl") == epoch_1
    assert len(read_jsonl(out / "epoch-1" / "predictions.jsonl")) == 6

    # Epoch 1's checkpoint retrained (other content, same folder): its partial answers are stale.
    changed = tmp_path / "changed"
    shutil.copytree(runs["freeze_llm"], changed)
    shutil.rmtree(changed / "epoch-1")
    save_fake_checkpoint(base_dir, changed, "freeze_llm", 7)
    (changed / "epoch-7").rename(changed / "epoch-1")
    run_evaluate(params, base_dir, changed, data["test"], None, out, resume)
    assert loaded[3:] == ["epoch-1"]  # epoch 2 was all resumed: its checkpoint is never loaded
    assert lines(resume / "epoch-1" / "test.partial.jsonl") != epoch_1


def test_a_missing_checkpoint_or_the_endpoint_backend_stop_the_run_before_any_work(base_dir, data, runs, tmp_path):
    out, resume = tmp_path / "out", tmp_path / "resume"
    with pytest.raises(
        FileNotFoundError,
        match=r"freeze_llm: no checkpoint .*freeze_llm/epoch-3 \(train.save_epochs is \[1, 3\]\); run the train stage",
    ):
        run_evaluate(run_params([1, 3]), base_dir, runs["freeze_llm"], data["test"], None, out, resume)
    endpoint = run_params([1], backend="endpoint", endpoint={"base_url": "http://127.0.0.1:9/v1", "model": "m"})
    with pytest.raises(
        ValueError, match="eval.backend endpoint evaluates the model the server .* serves, not checkpoints"
    ):
        run_evaluate(endpoint, base_dir, runs["freeze_llm"], data["test"], None, out, resume)
    assert not out.exists() and not resume.exists()
