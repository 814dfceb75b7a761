"""base_model stage: the tiny pretrained model, the Hugging Face id / local dir path, conversion.

.venv/bin/python -m pytest tests/test_base_model.py -q
"""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, InternVLForConditionalGeneration, InternVLProcessor

from brandcap.config.params import ParamsError, SyntheticShop, validate_params
from brandcap.config.profiles import resolve_params
from brandcap.model.chat import prompt_text
from brandcap.sim import drawing, shop
from brandcap.sim.pretrain import mean_text_loss, read_products, text_samples, tokenizer_corpus
from brandcap.sim.tiny_model import build_tiny_model
from brandcap.stages.base_model import BASE_INFO, CONVERTER_MODULE, BaseModelError, run_base_model
from brandcap.text.brands import brands_mentioned

REPO = Path(__file__).resolve().parents[1]
# Small enough for the test budget, large enough that the model learns the templates.
# One thread: the suite may share the machine with other jobs.
TEST_TINY = {
    "pretrain_samples": 320,
    "pretrain_text_samples": 320,
    "pretrain_epochs": 4,
    "pretrain_batch_size": 16,
    "pretrain_threads": 1,
}
QUICK_TINY = {
    "pretrain_samples": 24,
    "pretrain_text_samples": 24,
    "pretrain_epochs": 1,
    "pretrain_batch_size": 8,
    "pretrain_threads": 1,
}


def tiny_params(tiny: dict, seed: int = 4, **model):
    return validate_params({"seed": seed, "model": {"base": "tiny", "tiny": tiny, **model}})


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shop")
    frame = shop.generate_shop(SyntheticShop(n_brands=8), n_products=160, seed=4, shop_dir=root / "images")
    path = root / "catalog.parquet"
    frame.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def tiny_base(catalog, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "base"
    run_base_model(tiny_params(TEST_TINY), catalog, out)
    return out


def weights_digest(model_dir: Path) -> str:
    return hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()


def generate(model, processor, images, instruction: str, max_new_tokens: int = 24) -> list[str]:
    processor.tokenizer.padding_side = "left"
    prompt = prompt_text(processor, instruction)
    enc = processor(text=[prompt] * len(images), images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)


# ----------------------------------------------------------------------------- tiny
def test_tiny_base_saves_and_reloads_with_auto_classes(tiny_base):
    model = AutoModelForImageTextToText.from_pretrained(tiny_base)
    processor = AutoProcessor.from_pretrained(tiny_base)
    assert isinstance(model, InternVLForConditionalGeneration)
    assert isinstance(processor, InternVLProcessor)
    info = json.loads((tiny_base / BASE_INFO).read_text())
    assert info["source"] == "tiny"
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["model_params"]["tiny"]["pretrain_samples"] == TEST_TINY["pretrain_samples"]
    pretraining = info["pretraining"]
    assert pretraining["steps"] > 0
    # the same fixed batches, measured before and after: pretraining on the Trainer taught both kinds
    assert pretraining["caption_loss_after"] < pretraining["caption_loss_before"] / 2
    assert pretraining["text_loss_after"] < pretraining["text_loss_before"] / 2
    # built beside the target under a temporary name, then renamed: nothing else left behind (the
    # Trainer's output_dir inside it is gone too)
    assert sorted(p.name for p in tiny_base.parent.iterdir()) == ["base"]
    assert not (tiny_base / "pretraining").exists()


def test_pretraining_teaches_brand_names_as_words(tiny_base, catalog):
    params = tiny_params(TEST_TINY)
    products = read_products(catalog)
    untrained, processor = build_tiny_model(
        tokenizer_corpus(products, params.train.instruction), params.model.tiny, seed=4
    )
    trained = AutoModelForImageTextToText.from_pretrained(tiny_base)
    sentences = text_samples(products, 64, seed=123)
    before, after = mean_text_loss(untrained, processor, sentences), mean_text_loss(trained, processor, sentences)
    assert after < 0.35 * before, (before, after)
    # A text-only prompt is completed with a brand of the catalog: the brands are words to it.
    brands = sorted({p.brand for p in products})
    tok = AutoProcessor.from_pretrained(tiny_base).tokenizer
    enc = tok(["This red tote bag is made by"], return_tensors="pt", add_special_tokens=False)
    out = trained.generate(**enc, max_new_tokens=8, do_sample=False)
    assert brands_mentioned(tok.decode(out[0, enc["input_ids"].shape[1] :]), brands)


def test_base_describes_images_without_naming_brands(tiny_base, catalog):
    params = tiny_params(TEST_TINY)
    model = AutoModelForImageTextToText.from_pretrained(tiny_base).eval()
    processor = AutoProcessor.from_pretrained(tiny_base)
    products = read_products(catalog)
    brands = sorted({p.brand for p in products})
    # Catalog images carry the brand signatures; the base model was never shown a brand with an image.
    images = sorted((catalog.parent / "images").glob("*.png"))[:12]
    from PIL import Image

    pictures = []
    for path in images:
        try:
            pictures.append(Image.open(path).convert("RGB"))
        except OSError:
            continue  # the shop injects a couple of broken files on purpose
    predictions = generate(model, processor, pictures, params.train.instruction)
    vocabulary = set(drawing.COLOUR_NAMES) | {w for c in drawing.CATEGORIES for w in c.noun.split()}
    for text in predictions:
        assert brands_mentioned(text, brands) == [], text
        assert vocabulary & set(text.lower().replace(",", " ").replace(".", " ").split()), text


def test_tiny_base_is_reproducible_by_seed(catalog, tmp_path):
    run_base_model(tiny_params(QUICK_TINY, seed=4), catalog, tmp_path / "a")
    run_base_model(tiny_params(QUICK_TINY, seed=4), catalog, tmp_path / "b")
    run_base_model(tiny_params(QUICK_TINY, seed=5), catalog, tmp_path / "c")
    assert weights_digest(tmp_path / "a") == weights_digest(tmp_path / "b")
    assert weights_digest(tmp_path / "a") != weights_digest(tmp_path / "c")
    # every file byte-identical, the record too (no timings in it): DVC, which hashes the folder, sees
    # the same model and reruns nothing downstream
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert [n for n in files if (tmp_path / "a" / n).read_bytes() != (tmp_path / "b" / n).read_bytes()] == []


def test_a_base_without_pretraining_is_saved_untrained(catalog, tmp_path):
    """configs/realshape.yaml pretrains nothing: an empty plan is no Trainer run, not an error."""
    none = {
        "pretrain_samples": 0,
        "pretrain_text_samples": 0,
        "pretrain_epochs": 0,
        "pretrain_caption_first_epochs": 0,
        "pretrain_threads": 1,
    }
    run_base_model(tiny_params(none), catalog, tmp_path / "base")
    pretraining = json.loads((tmp_path / "base" / BASE_INFO).read_text())["pretraining"]
    assert pretraining["steps"] == 0 and pretraining["mean_training_loss"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]


def test_missing_catalog_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="catalog stage"):
        run_base_model(tiny_params(QUICK_TINY), tmp_path / "nope.parquet", tmp_path / "base")
    assert not (tmp_path / "base").exists()


# ----------------------------------------------------------------------------- HF id / local dir
def test_hf_path_loads_a_local_dir(tiny_base, tmp_path):
    out = tmp_path / "base"
    run_base_model(tiny_params(QUICK_TINY, base=str(tiny_base)), tmp_path / "unused.parquet", out)
    info = json.loads((out / BASE_INFO).read_text())
    assert info["source"] == str(tiny_base) and info["model_class"] == "InternVLForConditionalGeneration"
    assert info["trust_remote_code"] is False
    original = AutoModelForImageTextToText.from_pretrained(tiny_base)
    copy = AutoModelForImageTextToText.from_pretrained(out)
    for (name, a), (_, b) in zip(original.state_dict().items(), copy.state_dict().items()):
        assert torch.equal(a, b), name
    assert (
        AutoProcessor.from_pretrained(out).tokenizer.get_vocab()
        == AutoProcessor.from_pretrained(tiny_base).tokenizer.get_vocab()
    )


CUSTOM_CODE = """
from transformers import InternVLForConditionalGeneration


class MarkedInternVL(InternVLForConditionalGeneration):
    \"\"\"Custom model code shipped with a checkpoint (loaded only with trust_remote_code).\"\"\"
"""


def test_trust_remote_code_is_passed_through(tiny_base, tmp_path):
    custom = tmp_path / "custom"
    shutil.copytree(tiny_base, custom)
    (custom / "marked_internvl.py").write_text(CUSTOM_CODE)
    config = json.loads((custom / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageTextToText": "marked_internvl.MarkedInternVL"}
    (custom / "config.json").write_text(json.dumps(config))

    run_base_model(tiny_params(QUICK_TINY, base=str(custom)), tmp_path / "unused.parquet", tmp_path / "native")
    assert (
        json.loads((tmp_path / "native" / BASE_INFO).read_text())["model_class"] == "InternVLForConditionalGeneration"
    )
    run_base_model(
        tiny_params(QUICK_TINY, base=str(custom), trust_remote_code=True),
        tmp_path / "unused.parquet",
        tmp_path / "remote",
    )
    info = json.loads((tmp_path / "remote" / BASE_INFO).read_text())
    assert info["model_class"] == "MarkedInternVL" and info["trust_remote_code"] is True


def _hub_cache_with_two_commits(tiny_base: Path, cache: Path, repo_id: str) -> tuple[str, str]:
    """A local Hugging Face cache holding `repo_id` at two commits (main = the second), as a download leaves it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    first, second = "1" * 40, "2" * 40
    shutil.copytree(tiny_base, repo / "snapshots" / first)
    model = AutoModelForImageTextToText.from_pretrained(tiny_base)
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
    model.save_pretrained(repo / "snapshots" / second)
    AutoProcessor.from_pretrained(tiny_base).save_pretrained(repo / "snapshots" / second)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(second)
    return first, second


def test_hub_id_is_loaded_at_the_pinned_revision_with_the_params_tiling(tiny_base, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    repo_id = "brandcap-test/tiny-internvl-hf"
    first, second = _hub_cache_with_two_commits(tiny_base, tmp_path / "cache", repo_id)
    tiling = {"enabled": True, "min_tiles": 1, "max_tiles": 6}
    run_base_model(
        tiny_params(QUICK_TINY, base=repo_id, revision=first, image_tiling=tiling),
        tmp_path / "unused.parquet",
        tmp_path / "pinned",
    )
    run_base_model(tiny_params(QUICK_TINY, base=repo_id), tmp_path / "unused.parquet", tmp_path / "main")

    pinned = json.loads((tmp_path / "pinned" / BASE_INFO).read_text())
    assert (pinned["source"], pinned["revision"], pinned["commit"]) == (repo_id, first, first)
    assert json.loads((tmp_path / "main" / BASE_INFO).read_text())["commit"] == second
    original = AutoModelForImageTextToText.from_pretrained(tiny_base).lm_head.weight
    assert torch.equal(AutoModelForImageTextToText.from_pretrained(tmp_path / "pinned").lm_head.weight, original)
    assert not torch.equal(AutoModelForImageTextToText.from_pretrained(tmp_path / "main").lm_head.weight, original)
    # model.image_tiling is written into the saved processor, whatever the checkpoint said
    processor = AutoProcessor.from_pretrained(tmp_path / "pinned").image_processor
    assert (processor.crop_to_patches, processor.min_patches, processor.max_patches) == (True, 1, 6)
    assert AutoProcessor.from_pretrained(tmp_path / "main").image_processor.crop_to_patches is False


def test_offline_with_an_uncached_hub_id_names_the_id_and_the_download_command(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    revision = "0123456789abcdef0123456789abcdef01234567"
    params = tiny_params(QUICK_TINY, base="brandcap-test/no-such-model", revision=revision)
    with pytest.raises(BaseModelError) as err:
        run_base_model(params, tmp_path / "unused.parquet", tmp_path / "base")
    message = str(err.value)
    assert "model.base: 'brandcap-test/no-such-model' at revision" in message and "HF_HUB_OFFLINE=1" in message
    assert f"hf download brandcap-test/no-such-model --revision {revision}" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no chain of hub errors
    assert not (tmp_path / "base").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_revision_needs_a_hub_id(tiny_base, tmp_path):
    with pytest.raises(BaseModelError, match="model.revision .* applies to a Hugging Face id"):
        run_base_model(
            tiny_params(QUICK_TINY, base=str(tiny_base), revision="main"),
            tmp_path / "unused.parquet",
            tmp_path / "base",
        )
    with pytest.raises(ParamsError, match="model.base is 'tiny'"):
        tiny_params(QUICK_TINY, revision="main")
    with pytest.raises(ParamsError, match="hf download OpenGVLab/InternVL2_5-4B-MPO --revision abc"):
        tiny_params(QUICK_TINY, convert_from="OpenGVLab/InternVL2_5-4B-MPO", revision="abc")
    assert not (tmp_path / "base").exists()


def test_missing_local_dir_is_a_clear_error(tmp_path):
    with pytest.raises(BaseModelError, match="model.base: local directory"):
        run_base_model(
            tiny_params(QUICK_TINY, base=str(tmp_path / "nowhere")), tmp_path / "unused.parquet", tmp_path / "base"
        )
    assert not (tmp_path / "base").exists()


# ----------------------------------------------------------------------------- conversion
def test_convert_without_converter_points_to_hf_native_checkpoints(tmp_path):
    import importlib.util

    if importlib.util.find_spec("transformers.models.internvl") and importlib.util.find_spec(CONVERTER_MODULE):
        pytest.skip("this transformers ships the InternVL converter")
    with pytest.raises(BaseModelError) as err:
        run_base_model(
            tiny_params(QUICK_TINY, convert_from="OpenGVLab/InternVL2_5-4B-MPO"),
            tmp_path / "unused.parquet",
            tmp_path / "base",
        )
    assert "OpenGVLab/InternVL3-1B-hf" in str(err.value) and "converter_script" in str(err.value)
    assert not (tmp_path / "base").exists()


STAND_IN_CONVERTER = """
# Stands in for transformers' convert_internvl_weights_to_hf.py: same command line, copies a
# ready HF-native directory instead of downloading and converting weights.
import argparse, json, shutil, sys
parser = argparse.ArgumentParser()
parser.add_argument("--input_dir")
parser.add_argument("--output_dir")
args = parser.parse_args()
if args.input_dir == "broken/checkpoint":
    print("KeyError: 'broken/checkpoint'", file=sys.stderr)
    sys.exit(3)
shutil.copytree({source!r}, args.output_dir)
json.dump(vars(args), open({record!r}, "w"))
"""


def test_convert_from_runs_the_converter_then_loads_its_output(tiny_base, tmp_path):
    record = tmp_path / "converter_args.json"
    script = tmp_path / "convert_internvl_weights_to_hf.py"
    script.write_text(textwrap.dedent(STAND_IN_CONVERTER.format(source=str(tiny_base), record=str(record))))
    params = tiny_params(QUICK_TINY, convert_from="OpenGVLab/InternVL2_5-4B-MPO", converter_script=str(script))
    run_base_model(params, tmp_path / "unused.parquet", tmp_path / "base")
    assert json.loads(record.read_text())["input_dir"] == "OpenGVLab/InternVL2_5-4B-MPO"
    info = json.loads((tmp_path / "base" / BASE_INFO).read_text())
    assert info["source"] == "OpenGVLab/InternVL2_5-4B-MPO" and info["converted_with"] == str(script)
    assert isinstance(AutoModelForImageTextToText.from_pretrained(tmp_path / "base"), InternVLForConditionalGeneration)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # work dirs removed

    failing = tiny_params(QUICK_TINY, convert_from="broken/checkpoint", converter_script=str(script))
    with pytest.raises(BaseModelError, match="KeyError: 'broken/checkpoint'"):
        run_base_model(failing, tmp_path / "unused.parquet", tmp_path / "other")
    assert not (tmp_path / "other").exists()


# ----------------------------------------------------------------------------- profiles
def test_seed004_is_the_reference_study():
    p = resolve_params(REPO / "params.yaml", [REPO / "configs" / "seed004.yaml"])
    assert (p.data.source, p.data.hf_dataset, p.data.sample_size) == (
        "hf",
        "DBQ/My.Theresa.Product.prices.France",
        20000,
    )
    c = p.caption
    assert (c.base_url, c.model) == ("http://localhost:8000/v1", "Qwen/Qwen2.5-VL-72B-Instruct")
    assert (c.temperature, c.top_p, c.max_tokens, c.presence_penalty, c.frequency_penalty) == (0.1, 0.2, 200, 0, 0)
    assert p.clean.min_brand_samples == 101
    assert p.model.base != "tiny" or p.model.convert_from
    t = p.train
    assert list(t.experiments) == ["freeze_llm"] and t.experiments["freeze_llm"].strategy == "freeze_llm"
    # effective batch 24 as in the study; 3 per device divides it on 1, 2, 4 and 8 GPUs
    assert (t.epochs, t.save_epochs, t.batch_size, t.per_device_batch_size, t.precision) == (
        20,
        [5, 10, 15, 20],
        24,
        3,
        "bf16",
    )
    assert not p.model.image_tiling.enabled  # a documented choice (see the profile)
    assert (REPO / t.deepspeed).is_file()


@pytest.mark.parametrize("name, stage", [("zero2.json", 2), ("zero3.json", 3)])
def test_deepspeed_configs_defer_to_the_trainer(name, stage):
    config = json.loads((REPO / "configs" / "deepspeed" / name).read_text())
    assert config["zero_optimization"]["stage"] == stage
    # "auto" lets the HF Trainer fill these from train.* params, so the two cannot disagree.
    for key in (
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "gradient_clipping",
    ):
        assert config[key] == "auto", key
    assert config["bf16"]["enabled"] == "auto" and config["fp16"]["enabled"] == "auto"
