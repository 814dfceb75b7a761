"""base_model stage: the pretrained model every experiment starts from, saved to `models/base/`.

    from brandcap.stages.base_model import run_base_model
    run_base_model(params, Path("data/raw/catalog.parquet"), Path("models/base"))

Later stages read only `models/base/` with `AutoModelForImageTextToText.from_pretrained(dir)`
and `AutoProcessor.from_pretrained(dir)`. Three sources, chosen by `params.model`:

* `base: pretrained/tiny-internvl` (the default CPU profile): the shipped pretrained stand-in, a
  local HF folder loaded like any other (next bullet); made once by `tools/pretrain_standin.py`
  (`brandcap.sim.standin`), it knows the world's brand-free visual vocabulary and brand names as
  words. Its `recipe.json` summary (held-out attribute accuracies) is recorded.
* `base: tiny`: a tiny `InternVLForConditionalGeneration` built from `model.tiny` with a
  tokenizer trained on the catalog's text (`brandcap.sim.tiny_model`), then pretrained briefly
  (`brandcap.sim.pretrain`): blind to the marks; the real-shaped profile uses it untrained.
* `base: <Hugging Face id or local dir>` of an HF-native InternVL checkpoint, e.g.
  `OpenGVLab/InternVL3-1B-hf` or `OpenGVLab/InternVL3-2B-hf`, at `model.revision` (a commit hash
  pins it; the resolved commit is recorded): loaded with `AutoModelForImageTextToText` /
  `AutoProcessor` (custom model code only when `model.trust_remote_code: true`) and saved again
  into the output directory. Offline (`HF_HUB_OFFLINE=1`), an id missing from the local cache
  fails at once with the `hf download` command that fixes it (huggingface_hub >= 1.0
  ships `hf`; older versions call it `huggingface-cli download`).

Every source's processor is saved with `model.image_tiling` (`brandcap.model.chat.set_image_tiling`),
so every later stage tiles images as the params say.
* `convert_from: <id or dir>`: a custom-code InternVL checkpoint (InternVL2.5, e.g.
  `OpenGVLab/InternVL2_5-4B-MPO`) converted first with transformers' own converter
  `transformers/models/internvl/convert_internvl_weights_to_hf.py`
  (`python convert_internvl_weights_to_hf.py --input_dir <id> --output_dir <dir>`), then loaded
  as above; `base` is then ignored. The pip wheel of transformers 5.23 does NOT ship that
  script (conversion scripts live only in the source repository), so either point
  `model.converter_script` at the file from a transformers source checkout of the installed
  version, or use an HF-native `-hf` checkpoint instead (`OpenGVLab/InternVL3-1B-hf`,
  `OpenGVLab/InternVL3-2B-hf`). The converter needs network access (it fetches the original
  weights and a Qwen tokenizer), `einops`, and knows only the ids listed in its
  `LM_TYPE_CORRESPONDENCE` table (InternVL2.5 appears there as the `-MPO` variants).

Output: the `save_pretrained` model + processor and `brandcap_base.json` (source, the
`model` params, pretraining losses, parameter count; no timings, so that the same model is a
byte-identical folder: they are in the stage log). The directory is built beside
`out_dir` under a temporary name and renamed at the end, so a killed stage leaves no partial
model behind.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import transformers
from huggingface_hub import is_offline_mode, try_to_load_from_cache
from transformers import AutoModelForImageTextToText, AutoProcessor

from brandcap.config.params import ModelParams, Params
from brandcap.files.atomic import staged_directory, write_json
from brandcap.model.chat import set_image_tiling

log = logging.getLogger(__name__)

CONVERTER_MODULE = "transformers.models.internvl.convert_internvl_weights_to_hf"
HF_NATIVE_ALTERNATIVES = ("OpenGVLab/InternVL3-1B-hf", "OpenGVLab/InternVL3-2B-hf")
BASE_INFO = "brandcap_base.json"
STANDIN_RECIPE = "recipe.json"  # beside a pretrained stand-in's weights (brandcap.sim.standin)


class BaseModelError(RuntimeError):
    """The base model cannot be built, loaded or converted; the message says how to fix it."""


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- sources
def build_tiny_base(params: Params, catalog_path: Path, out_dir: Path) -> dict:
    """Build, pretrain and save the tiny model; returns its record for brandcap_base.json."""
    # Imported here: the tiny path needs the shop and tokenizers, the HF path does not.
    from brandcap.sim.pretrain import mean_text_loss, pretrain, read_products, text_samples, tokenizer_corpus
    from brandcap.sim.tiny_model import build_tiny_model

    tiny = params.model.tiny
    products = read_products(catalog_path)
    corpus = tokenizer_corpus(products, params.train.instruction)
    model, processor = build_tiny_model(corpus, tiny, seed=params.seed, tiling=params.model.image_tiling)
    # Held-out brand sentences (another seed stream) show what pretraining taught the language model.
    held_out = text_samples(products, 200, seed=params.seed + 7919)
    untrained_loss = mean_text_loss(model, processor, held_out)
    record = pretrain(
        model,
        processor,
        products,
        tiny,
        params.train.instruction,
        params.data.synthetic,
        params.seed,
        work_dir=out_dir / "pretraining",
    )
    record["held_out_text_loss_untrained"] = round(untrained_loss, 4)
    record["held_out_text_loss"] = round(mean_text_loss(model, processor, held_out), 4)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return {
        "source": "tiny",
        "brands": sorted({p.brand for p in products}),
        "pretraining": record,
        "parameters": parameter_count(model),
    }


def is_local_source(source: str) -> bool:
    return source.startswith((".", "/", "~")) or Path(source).expanduser().is_dir()


def offline_error(source: str, revision: str) -> BaseModelError:
    pinned = f" --revision {revision}" if revision else ""
    return BaseModelError(
        f"model.base: {source!r}{f' at revision {revision!r}' if revision else ''} is not in the local Hugging Face cache "
        "and the hub is offline (HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1). Fix: download it first where there is "
        f"network, `hf download {source}{pinned}` (same HF_HOME as this run), or "
        f"`hf download {source}{pinned} --local-dir <dir>` and set model.base: <dir>; or unset HF_HUB_OFFLINE"
    )


def cached_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit `revision` resolved to, read from the cache that loading just used (snapshots/<commit>/)."""
    config = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    return Path(config).parent.name if isinstance(config, str) else None


def load_hf_base(model_params: ModelParams, source: str, out_dir: Path) -> dict:
    """Load an HF-native checkpoint (hub id or local dir) at `model.revision`, apply `model.image_tiling`
    to its processor, and save model + processor into out_dir."""
    trust_remote_code, revision = model_params.trust_remote_code, model_params.revision or None
    local = is_local_source(source)
    if local and not Path(source).expanduser().exists():
        raise BaseModelError(
            f"model.base: local directory {source!r} does not exist; give an existing save_pretrained directory or a Hugging Face id such as {HF_NATIVE_ALTERNATIVES[0]}"
        )
    if local and revision:
        raise BaseModelError(
            f"model.revision ({revision!r}) applies to a Hugging Face id, but model.base {source!r} is a local directory; clear model.revision"
        )
    source = str(Path(source).expanduser()) if source.startswith("~") else source
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            source, revision=revision, trust_remote_code=trust_remote_code, dtype="auto"
        )
        processor = AutoProcessor.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        if not local and is_offline_mode():
            raise offline_error(source, model_params.revision) from None
        raise BaseModelError(
            f"model.base: could not load {source!r}{f' at revision {revision!r}' if revision else ''} with "
            f"AutoModelForImageTextToText/AutoProcessor: {err}\n"
            f"Fix: use an HF-native InternVL checkpoint ({', '.join(HF_NATIVE_ALTERNATIVES)}) or a local save_pretrained "
            "directory, and a revision that exists; custom-code checkpoints need model.trust_remote_code: true, "
            "and InternVL2.5 needs model.convert_from"
        ) from err
    set_image_tiling(processor, model_params.image_tiling)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    info = {
        "source": source,
        "revision": model_params.revision,
        "commit": None if local else cached_commit(source, revision),
        "model_class": type(model).__name__,
        "trust_remote_code": trust_remote_code,
        "dtype": str(model.dtype).removeprefix("torch."),
        "parameters": parameter_count(model),
    }
    if local and (Path(source) / STANDIN_RECIPE).is_file():
        info["standin"] = standin_summary(Path(source))
    return info


def standin_summary(folder: Path) -> dict:
    """What a pretrained stand-in's recipe.json says it knows, for the tables; a warning when the
    world's drawing code changed since it was made (it learnt another world's vocabulary)."""
    from brandcap.sim.standin import drawing_code_sha256, read_recipe  # the simulated world, only for a stand-in

    recipe = read_recipe(folder)
    current = recipe.get("drawing_code_sha256") == drawing_code_sha256()
    if not current:
        log.warning(
            "%s was made from other drawing code than src/brandcap/sim/drawing.py and colours.py hold now; "
            "make it again: python tools/pretrain_standin.py --out %s",
            folder,
            folder,
        )
    vision = recipe.get("vision", {})
    return {
        "held_out_attribute_accuracy": vision.get("held_out_accuracy"),
        "vocabulary_images": vision.get("images"),
        "stopped": vision.get("stopped"),
        "drawing_code_current": current,
        "seed": recipe.get("seed"),
    }


def find_converter(converter_script: str) -> Path:
    """The InternVL converter: `model.converter_script`, else the one inside the installed transformers."""
    if converter_script:
        path = Path(converter_script).expanduser()
        if not path.is_file():
            raise BaseModelError(
                f"model.converter_script: {converter_script!r} is not a file; point it at convert_internvl_weights_to_hf.py of a transformers source checkout"
            )
        return path
    try:
        spec = importlib.util.find_spec(CONVERTER_MODULE)
    except ModuleNotFoundError:
        spec = None
    if spec is None or spec.origin is None:
        raise BaseModelError(
            f"model.convert_from is set, but transformers {transformers.__version__} does not ship {CONVERTER_MODULE} "
            "(pip wheels leave the conversion scripts out). Fix, either: "
            f"(1) git clone --branch v{transformers.__version__} https://github.com/huggingface/transformers and set "
            "model.converter_script: <clone>/src/transformers/models/internvl/convert_internvl_weights_to_hf.py "
            "(needs network and einops); or "
            f"(2) use an HF-native checkpoint instead: model.base: {HF_NATIVE_ALTERNATIVES[0]} (or {HF_NATIVE_ALTERNATIVES[1]}) "
            "with model.convert_from: ''"
        )
    return Path(spec.origin)


def convert_checkpoint(source: str, converter: Path, work_dir: Path) -> None:
    """Run transformers' InternVL converter in a subprocess: custom-code checkpoint -> HF-native dir."""
    cmd = [sys.executable, str(converter), "--input_dir", source, "--output_dir", str(work_dir)]
    log.info("converting %s with %s", source, converter)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise BaseModelError(
            f"model.convert_from: converting {source!r} with {converter} failed (exit {done.returncode}):\n{tail}\n"
            f"Fix: check the id is one the converter knows (its LM_TYPE_CORRESPONDENCE table), network access and einops; "
            f"or use an HF-native checkpoint ({', '.join(HF_NATIVE_ALTERNATIVES)})"
        )


# ----------------------------------------------------------------------------- the stage
def run_base_model(params: Params, catalog_path: Path, out_dir: Path) -> None:
    started = time.perf_counter()
    model_params = params.model
    with staged_directory(Path(out_dir)) as stage:
        if model_params.convert_from:
            converter = find_converter(model_params.converter_script)
            work_dir = stage.parent / f".{Path(out_dir).name}.converted-{os.getpid()}"
            shutil.rmtree(work_dir, ignore_errors=True)
            try:
                convert_checkpoint(model_params.convert_from, converter, work_dir)
                info = load_hf_base(model_params, str(work_dir), stage)
            finally:
                shutil.rmtree(work_dir, ignore_errors=True)
            info["source"] = model_params.convert_from
            info["converted_with"] = str(converter)
        elif model_params.base == "tiny":
            info = build_tiny_base(params, Path(catalog_path), stage)
        else:
            info = load_hf_base(model_params, model_params.base, stage)
        info["model_params"] = json.loads(model_params.model_dump_json())
        info["seed"] = params.seed
        info["transformers_version"] = transformers.__version__
        # No timings in the record: the same model must give a byte-identical folder (DVC hashes it).
        write_json(stage / BASE_INFO, info)
    log.info(
        "base model %s: %s parameters, saved to %s in %.1fs",
        info["source"],
        f"{info['parameters']:,}",
        out_dir,
        time.perf_counter() - started,
    )
