"""The one parameter file, validated before any stage does work.

    python -c "from brandcap.config.params import load_params; print(load_params('params.yaml'))"

Every key has a default and a description; unknown keys, wrong types and impossible
values fail with a message that names the file, the key and the fix. Types are strict: "2",
`true` or "no" are not numbers or booleans (an int is a valid float); a key given twice in
one mapping and an empty file are refused.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

# PyYAML (YAML 1.1, also what Snakemake reads configs with) loads 1e-5 without a dot as a string.
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _exponent_floats(cls, value: Any, info: ValidationInfo) -> Any:
        """`learning_rate: 1e-5` is a number to a reader; YAML 1.1 makes it text."""
        annotation = cls.model_fields[info.field_name].annotation
        takes_float = annotation is float or float in typing.get_args(annotation)
        if takes_float and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            return float(value)
        return value


# --------------------------------------------------------------------------- data
# Local product tables live here: the catalog stage depends on this folder under both Snakemake
# and DVC, so a changed table reruns the study from the catalog on.
EXTERNAL_DATA_DIR = Path("data/external")
# Bounds on what a parameter file may hold: a 50 MB prompt once validated and made a dry run take minutes.
MAX_PARAMS_FILE_BYTES = 1_000_000
MAX_PROMPT_CHARS = 4_000  # caption.prompt, train.instruction, eval.general_instruction, eval.prompted_instruction
LOCAL_TABLE_SUFFIXES = (".parquet", ".csv", ".csv.gz", ".jsonl")


def lies_under_external(path: Path) -> bool:
    """Whether `path` (relative to the working directory, `..` resolved) lies under data/external/."""
    return Path(os.path.normpath(path.absolute())).is_relative_to(Path.cwd() / EXTERNAL_DATA_DIR)


def local_table_path(hf_dataset: str) -> Path | None:
    """The local table that `hf_dataset` names (`~` expanded), or None for a Hugging Face dataset id.
    A local table must lie under data/external/ and have a supported format (ValueError otherwise)."""
    name = hf_dataset.strip()
    looks_local = name.lower().endswith(LOCAL_TABLE_SUFFIXES) or name.startswith(("~", "/", ".")) or name.count("/") > 1
    if not looks_local:
        return None
    path = Path(name).expanduser()
    if not name.lower().endswith(LOCAL_TABLE_SUFFIXES):
        raise ValueError(
            f"local table {name}: unsupported format; write it as one of {', '.join(LOCAL_TABLE_SUFFIXES)}"
        )
    if not lies_under_external(path):
        raise ValueError(
            f"local table {name} lies outside {EXTERNAL_DATA_DIR}/, which the catalog stage depends on under "
            f"Snakemake and DVC; move it there and set data.hf_dataset: {EXTERNAL_DATA_DIR / path.name}"
        )
    return path


def check_under_external(key: str, value: str) -> None:
    """A user's file named by data.`key` must lie under data/external/, which the stages reading it
    depend on under Snakemake and DVC (so editing it reruns them)."""
    path = Path(value).expanduser()
    if not lies_under_external(path):
        raise ValueError(
            f"data.{key} {value} lies outside {EXTERNAL_DATA_DIR}/, which the stage reading it depends on under Snakemake "
            f"and DVC (a file elsewhere could change unnoticed); move it, with the images it names, there and set "
            f"data.{key}: {EXTERNAL_DATA_DIR / path.name}"
        )


class SyntheticShop(Section):
    n_brands: int = Field(20, ge=2, description="Number of brands in the synthetic shop.")
    zipf_exponent: float = Field(0.7, ge=0, description="Brand frequency ~ 1/rank^s; 0 = balanced.")
    signature_visibility: float = Field(
        0.9,
        ge=0,
        le=1,
        description="Probability that a product image shows its brand's marks (emblem at its placement, body pattern, hardware); otherwise the product is plain.",
    )
    house_colour_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Probability that a product's body takes its brand's house colour (as Tiffany blue or Hermès orange) instead of a random one; 0 = colour tells nothing about the brand (the default world). The learning profile (configs/learning.yaml) sets it, so a cue the tiny model can learn in two minutes exists there.",
    )
    distractor_rate: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Probability that a product image (brand-free ones too) also shows a mark of no brand: a random blob or a label.",
    )
    noise: float = Field(0.08, ge=0, le=1, description="Std of pixel noise added to every image (0..1 of full scale).")
    image_size: int = Field(64, ge=16, le=1024, description="Side of the generated square product images, pixels.")
    n_general: int = Field(48, ge=0, description="Size of the brand-free general set (forgetting probe).")
    n_general_train: int = Field(
        1000,
        ge=0,
        description="Size of the brand-free generic training set that train.general_mix draws from (its own seed stream, disjoint from the probe's).",
    )
    serve_over_http: bool = Field(False, description="Serve shop images over loopback HTTP instead of file:// URLs.")
    placeholder_rate: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Fraction of products whose imageurl is the placeholder 'N.A.' (at least one when > 0), so the catalog's placeholder filter always runs.",
    )
    broken_images: int = Field(
        2,
        ge=0,
        description="Products whose image file is broken (truncated / not an image), so the downloader's failure path always runs.",
    )
    real_shapes: bool = Field(
        False,
        description="Dress the shop as a real catalogue (brandcap/sim/realshape.py): punctuated brand names, 'N.A.' in every text column at placeholder_rate, unsafe product codes, portrait/landscape photos as JPEG/WebP/PNG/CMYK; the table is read back from a CSV.gz like a user's own.",
    )


class DataParams(Section):
    source: Literal["synthetic", "hf"] = Field(
        "synthetic",
        description="synthetic shop, or a Hugging Face dataset id / local parquet or CSV in the DBQ schema.",
    )
    hf_dataset: str = Field(
        "DBQ/My.Theresa.Product.prices.France",
        description="HF dataset id, or a local table (.parquet, .csv, .csv.gz, .jsonl) under data/external/ (source: hf).",
    )
    hf_split: str = Field("train", description="Split to read (source: hf).")
    revision: str = Field(
        "",
        description="Revision (commit sha, tag or branch) of the HF dataset to read (source: hf); empty = the latest. Pin a commit sha to reproduce a study.",
    )
    sample_size: int = Field(1500, ge=1, description="Rows sampled from the product table.")
    general_set: str = Field(
        "",
        description="JSONL of brand-free {image, caption} references for the forgetting probe (source: hf), under data/external/ with its images; empty = no probe.",
    )
    general_train_set: str = Field(
        "",
        description="JSONL of generic {image, caption} pairs (e.g. a COCO-captions extract) that train.general_mix mixes into training (source: hf), under data/external/ with its images; none of its images may be in data.general_set; empty = none.",
    )
    synthetic: SyntheticShop = SyntheticShop()

    @field_validator("hf_dataset")
    @classmethod
    def _local_table(cls, v: str, info: ValidationInfo) -> str:
        if info.data.get("source") == "hf":
            local_table_path(v)
        return v

    @field_validator("general_set", "general_train_set")
    @classmethod
    def _user_set(cls, v: str, info: ValidationInfo) -> str:
        if v.strip():
            check_under_external(info.field_name, v)
        return v


# --------------------------------------------------------------------------- download
class DownloadParams(Section):
    concurrency: int = Field(16, ge=1, description="Images fetched at once.")
    timeout_s: float = Field(10.0, gt=0, description="Per-request timeout, seconds.")
    retries: int = Field(3, ge=0, description="Retries on timeouts, connection errors and 5xx.")
    backoff_s: float = Field(0.5, ge=0, description="Base of the exponential backoff, seconds (full jitter).")
    max_side: int = Field(448, ge=16, description="Images are resized so their longer side is at most this.")
    min_side: int = Field(32, ge=1, description="Images with a shorter side below this are rejected.")
    max_pixels: int = Field(
        40_000_000, ge=1, description="Decompression-bomb guard: images above this pixel count are rejected."
    )
    max_failed_fraction: float = Field(
        0.2, ge=0, le=1, description="The stage fails when more than this fraction of images failed."
    )
    max_bytes: int = Field(
        50_000_000, ge=1, description="Responses larger than this many bytes are rejected (too_large)."
    )


# --------------------------------------------------------------------------- caption
class SimulatorParams(Section):
    loop_rate: float = Field(0.08, ge=0, le=1, description="Fraction of answers that fall into a repetition loop.")
    garbled_rate: float = Field(0.05, ge=0, le=1, description="Fraction of answers with garbled characters.")
    case_change_rate: float = Field(
        0.1, ge=0, le=1, description="Fraction of answers that change the brand's letter case."
    )
    missing_brand_rate: float = Field(0.04, ge=0, le=1, description="Fraction of answers that omit the brand.")
    cutoff_rate: float = Field(
        0.1, ge=0, le=1, description="Fraction of answers cut at max_tokens (finish_reason: length)."
    )
    http_error_rate: float = Field(0.03, ge=0, le=1, description="Fraction of requests answered with HTTP 429/500.")
    slow_rate: float = Field(0.0, ge=0, le=1, description="Fraction of requests answered slowly.")
    slow_s: float = Field(0.5, ge=0, description="Delay of a slow answer, seconds.")
    latency_s: float = Field(0.0, ge=0, description="Fixed latency of every answer, seconds.")
    retry_after_s: float = Field(1.0, ge=0, description="Retry-After sent with a 429 answer, seconds.")


DEFAULT_CAPTION_PROMPT = (
    "This is a product photo of the brand {brand}: {title} ({category}). "
    "Write a detailed description of the product in the photo. "
    "The description must name the brand {brand}."
)


class CaptionParams(Section):
    section: ClassVar[str] = (
        "caption"  # where these keys live, for messages (the endpoint client is shared with eval.endpoint)
    )

    base_url: str = Field(
        "", description="OpenAI-compatible endpoint; empty = start the built-in simulated VLM on 127.0.0.1."
    )
    model: str = Field("simulated-vlm", description="Model name sent to the endpoint.")
    api_key_env: str = Field(
        "BRANDCAP_API_KEY", description="Name of the environment variable holding the API key (never the key itself)."
    )
    prompt: str = Field(
        DEFAULT_CAPTION_PROMPT,
        max_length=MAX_PROMPT_CHARS,
        description="Prompt template with {brand}, {title}, {category}.",
    )
    temperature: float = Field(0.1, ge=0, le=2, description="Sampling temperature (reference study: 0.1).")
    top_p: float = Field(0.2, gt=0, le=1, description="Nucleus sampling (reference study: 0.2).")
    max_tokens: int = Field(200, ge=1, description="Completion limit (reference study: 200).")
    presence_penalty: float = Field(0.0, description="Reference study: 0.")
    frequency_penalty: float = Field(0.0, description="Reference study: 0.")
    seed: int | None = Field(0, description="Sampling seed sent to the endpoint; null = none.")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Passed through to the server (e.g. vLLM's repetition_penalty)."
    )
    concurrency: int = Field(16, ge=1, description="Requests in flight.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout, seconds.")
    retries: int = Field(4, ge=0, description="Retries on timeouts, connection errors, 429 and 5xx.")
    backoff_s: float = Field(
        0.2, ge=0, description="Base of the exponential backoff, seconds (full jitter); Retry-After wins."
    )
    retry_temperatures: list[float] = Field(
        default_factory=lambda: [0.5, 0.8], description="Temperature ladder for re-asking loops and garbled answers."
    )
    max_failed_fraction: float = Field(
        0.2, ge=0, le=1, description="The stage fails when more than this fraction of items got no caption."
    )
    max_answer_chars: int | None = Field(
        None,
        ge=1,
        description="Answers longer than this many characters are rejected (failure reason 'oversize'); null = 20 x max_tokens.",
    )
    breaker_s: float = Field(
        60.0,
        gt=0,
        description="Circuit breaker: the stage stops when every answer has failed for this many seconds in a row (finished items stay cached).",
    )
    mode: Literal["online", "batch"] = Field(
        "online",
        description="online: ask caption.base_url item by item; batch: write batch request files under the stage's resume folder (.resume/caption/batch/) for `vllm run-batch` or OpenAI's Batch API, then read their results (docs/real-runs.md, 'Batch captioning').",
    )
    batch_max_bytes: int = Field(
        180_000_000,
        ge=1,
        description="Batch mode: each request file stays under this many bytes (OpenAI takes files up to 200 MB) and 50,000 requests.",
    )
    batch_results: list[str] = Field(
        default_factory=list,
        description="Batch mode: results files made elsewhere (OpenAI's output and error files), read as well as the results-NNN.jsonl beside the request files.",
    )
    simulator: SimulatorParams = SimulatorParams()

    @field_validator("batch_results")
    @classmethod
    def _results_paths(cls, v: list[str]) -> list[str]:
        if any(not path.strip() for path in v):
            raise ValueError("an empty path; list the results files (JSONL) to read")
        return v

    @field_validator("prompt")
    @classmethod
    def _prompt_placeholders(cls, v: str) -> str:
        allowed = {"brand", "title", "category"}
        import string

        used = {name for _, name, _, _ in string.Formatter().parse(v) if name}
        unknown = used - allowed
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; use only {{brand}}, {{title}}, {{category}}")
        return v

    @property
    def answer_char_limit(self) -> int:
        """Longest accepted answer: max_answer_chars, or 20 characters per max_tokens token."""
        return self.max_answer_chars or 20 * self.max_tokens

    @field_validator("retry_temperatures")
    @classmethod
    def _temperatures(cls, v: list[float]) -> list[float]:
        if any(t < 0 or t > 2 for t in v):
            raise ValueError("temperatures must lie in 0..2")
        return v


# --------------------------------------------------------------------------- clean
class CleanParams(Section):
    loop_max_ngram_repeats: int = Field(
        3, ge=2, description="A caption is a loop when one n-gram (n = loop_ngram) occurs more than this many times."
    )
    loop_ngram: int = Field(4, ge=2, description="n of the n-gram repetition test.")
    loop_min_compression_ratio: float = Field(
        0.35,
        ge=0,
        le=1,
        description="zlib compressed/raw size below this = a loop (only for captions of at least loop_compression_min_chars).",
    )
    loop_compression_min_chars: int = Field(
        200,
        ge=1,
        description="Shorter captions skip the compression test (short texts compress poorly whatever they say).",
    )
    loop_max_consecutive_repeats: int = Field(
        10,
        ge=2,
        description="A unit of 1..12 characters repeated back to back more than this many times = a loop ('lalala...', '!!!!...').",
    )
    garbled_max_bad_char_fraction: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Replacement, control, unassigned and stray format characters above this fraction = garbled (letters of any script are text).",
    )
    garbled_max_nonword_fraction: float = Field(
        0.3, ge=0, le=1, description="Tokens that do not look like words above this fraction = garbled."
    )
    garbled_max_mojibake: int = Field(
        0, ge=0, description="UTF-8 read as Latin-1/cp1252 sequences ('Ã©', 'â€™') tolerated; more = garbled."
    )
    garbled_max_word_length: int = Field(
        30, ge=1, description="Tokens longer than this many characters do not look like words."
    )
    expected_script: str = Field(
        "",
        description="The other_script rule: drop captions mostly written in another script than this one (Unicode's name, e.g. LATIN, CYRILLIC, ARABIC, CJK), as a captioner that switched language writes; empty = captions in any script are kept.",
    )
    min_chars_after_trim: int = Field(
        40, ge=0, description="A cut-off caption trimmed to its last '.' must keep at least this many characters."
    )
    min_words: int = Field(8, ge=1, description="Captions shorter than this are dropped.")
    max_words: int = Field(250, ge=1, description="Captions longer than this are dropped.")
    min_brand_samples: int = Field(
        40, ge=1, description="Brands with fewer cleaned captions are dropped (reference study: 100)."
    )
    test_fraction: float = Field(0.15, gt=0, lt=1, description="Fraction of each brand's products held out for test.")
    val_fraction: float = Field(
        0.15,
        gt=0,
        lt=1,
        description="Fraction of each brand's products held out for validation (choosing the best epoch and experiment), taken after test from the same seeded order; a brand gets at least one when two or more products remain after test, and always keeps one to train on.",
    )

    @model_validator(mode="after")
    def _bounds(self):
        if self.min_words > self.max_words:
            raise ValueError(
                f"clean.min_words ({self.min_words}) is above clean.max_words ({self.max_words}); lower min_words or raise max_words"
            )
        if self.test_fraction + self.val_fraction >= 1:
            raise ValueError(
                f"clean.test_fraction ({self.test_fraction}) + clean.val_fraction ({self.val_fraction}) leave nothing to train on; "
                "keep their sum below 1 (e.g. 0.15 each)"
            )
        return self


# --------------------------------------------------------------------------- model
class TinyModelParams(Section):
    image_size: int = Field(
        84,
        ge=14,
        description="Vision input side, pixels (multiple of patch_size); 84/14 -> 36 patches -> 9 image tokens after the pixel shuffle (56 -> 4 tokens learned colour far more slowly).",
    )
    patch_size: int = Field(14, ge=1, description="ViT patch side.")
    vision_hidden: int = Field(96, ge=8, description="Vision hidden size.")
    vision_layers: int = Field(2, ge=1, description="Vision transformer layers.")
    vision_heads: int = Field(4, ge=1, description="Vision attention heads.")
    text_hidden: int = Field(128, ge=8, description="Language model hidden size.")
    text_layers: int = Field(2, ge=1, description="Language model layers.")
    text_heads: int = Field(4, ge=1, description="Language model attention heads.")
    vocab_size: int = Field(1200, ge=300, description="Size of the locally trained tokenizer's vocabulary.")
    pretrain_epochs: int = Field(
        3,
        ge=0,
        description="Mixed epochs of the brief pretraining (text + brand-free captions), after the caption-only ones.",
    )
    pretrain_samples: int = Field(1200, ge=0, description="Images generated for brand-free caption pretraining.")
    pretrain_learning_rate: float = Field(2e-3, gt=0, description="Pretraining learning rate.")
    pretrain_text_samples: int = Field(
        1200,
        ge=0,
        description="Text-only brand sentences built from the catalog for pretraining (the language model learns brand names as words).",
    )
    pretrain_batch_size: int = Field(
        16, ge=1, description="Pretraining batch size (text and caption batches are interleaved)."
    )
    pretrain_caption_first_epochs: int = Field(
        3,
        ge=0,
        description="Caption-only epochs before the mixed ones, so the model learns to look at the image first.",
    )
    pretrain_threads: int = Field(
        2,
        ge=1,
        description="Torch CPU threads during pretraining, at most the stage's own (OMP_NUM_THREADS, which Snakemake sets to the job's threads; 1 when unset, under DVC too).",
    )

    @model_validator(mode="after")
    def _patches(self):
        if self.image_size % self.patch_size:
            raise ValueError(
                f"model.tiny.image_size ({self.image_size}) must be a multiple of model.tiny.patch_size ({self.patch_size})"
            )
        if (self.image_size // self.patch_size) % 2:
            raise ValueError(
                f"model.tiny.image_size / patch_size ({self.image_size // self.patch_size}) must be even: InternVL's pixel shuffle merges 2x2 patches; e.g. image_size 84 with patch_size 14"
            )
        return self


class ImageTilingParams(Section):
    enabled: bool = Field(
        False,
        description="InternVL's dynamic tiling: cut each image into a grid of tiles (448 px on real models) fitting its aspect ratio, plus a thumbnail whenever there is more than one (InternVL always adds it). Each tile costs image_seq_length tokens (256 on real models); train.max_length must hold the most tiles. Off = one tile, the whole image resized.",
    )
    min_tiles: int = Field(1, ge=1, description="Fewest tiles per image when tiling is on.")
    max_tiles: int = Field(
        12,
        ge=1,
        description="Most tiles per image when tiling is on (InternVL's default 12: a 3:4 portrait becomes 12 tiles + thumbnail = 13 x 256 = 3,328 image tokens); 1 = no tiling.",
    )

    @model_validator(mode="after")
    def _tiles(self):
        if self.min_tiles > self.max_tiles:
            raise ValueError(
                f"model.image_tiling.min_tiles ({self.min_tiles}) is above max_tiles ({self.max_tiles}); lower min_tiles or raise max_tiles"
            )
        return self


class ModelParams(Section):
    base: str = Field(
        "pretrained/tiny-internvl",
        description="A Hugging Face id or local directory of an HF-native InternVL checkpoint; the default is the shipped pretrained stand-in (made once by tools/pretrain_standin.py: knows the world's brand-free visual vocabulary and brand names as words, never which marks are which brand); 'tiny' = a tiny InternVL built from model.tiny and pretrained briefly inside the DAG (blind to the marks; the real-shaped profile uses it untrained).",
    )
    revision: str = Field(
        "",
        description="Hugging Face revision (commit hash, tag or branch) of model.base, for model and processor alike; empty = the default branch. Pin a commit hash for a reproducible study.",
    )
    image_tiling: ImageTilingParams = Field(
        ImageTilingParams(),
        description="How images are tiled; written into models/base's processor, so pretraining, training, evaluation and the test loss tile alike.",
    )
    trust_remote_code: bool = Field(
        False, description="Allow custom model code from the checkpoint (needed only for non -hf InternVL2.5)."
    )
    convert_from: str = Field(
        "",
        description="Custom-code InternVL checkpoint (e.g. OpenGVLab/InternVL2_5-4B) to convert with transformers' converter before use; empty = none.",
    )
    converter_script: str = Field(
        "",
        description="Path to convert_internvl_weights_to_hf.py from a transformers source checkout (the pip wheel does not ship it); empty = look inside the installed transformers.",
    )
    tiny: TinyModelParams = Field(
        TinyModelParams(), description="The model built when model.base is 'tiny' (ignored otherwise)."
    )

    @model_validator(mode="after")
    def _revision(self):
        if self.revision and self.convert_from:
            raise ValueError(
                f"model.revision ({self.revision!r}) cannot be passed to the converter of model.convert_from; download that "
                f"revision first (hf download {self.convert_from} --revision {self.revision} --local-dir <dir>) "
                "and set model.convert_from: <dir>, model.revision: ''"
            )
        if self.revision and self.base == "tiny":
            raise ValueError(
                f"model.revision ({self.revision!r}) is set but model.base is 'tiny' (built locally); set model.base to a Hugging Face id or clear model.revision"
            )
        return self


# --------------------------------------------------------------------------- train
Strategy = Literal["freeze_llm", "freeze_vision", "projector_only", "lora", "full"]
# transformers.trainer_utils.SchedulerType's values (a test keeps them equal; importing
# transformers here would add seconds to every validation).
LrScheduler = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
    "greedy",
]


class LoraParams(Section):
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha.")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Language-model linear layers that get adapters.",
    )
    train_projector: bool = Field(True, description="Also train the multi-modal projector in full.")


class Experiment(Section):
    strategy: Strategy = Field(description="Which parts of the model train.")
    learning_rate: float | None = Field(None, gt=0, description="Overrides train.learning_rate for this experiment.")
    lora: LoraParams | None = Field(None, description="Overrides train.lora for this experiment.")
    general_mix: float | None = Field(None, ge=0, description="Overrides train.general_mix for this experiment.")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def batch_layout_error(batch_size: int, per_device_batch_size: int, devices: int) -> str | None:
    """Why batch_size cannot be per_device_batch_size x accumulation x devices, with the values that work; None when it can."""
    if batch_size % devices:
        return (
            f"train.batch_size ({batch_size}) cannot be split over train.devices ({devices}); use devices in "
            f"{{{', '.join(map(str, _divisors(batch_size)))}}} or a batch_size that is a multiple of {devices}"
        )
    if (batch_size // devices) % per_device_batch_size:
        working = ", ".join(map(str, _divisors(batch_size // devices)))
        return (
            f"train.batch_size {batch_size} with {devices} device(s) needs per_device_batch_size in {{{working}}} "
            f"(got {per_device_batch_size}): batch_size = per_device_batch_size x gradient accumulation x devices"
        )
    return None


# The study's seed: the data (sampling, shop, split) and, by default, the one training run per experiment.
DEFAULT_SEED = 4

# Keys of results/metrics.json beside the experiments' names (brandcap.stages.tables).
RESERVED_RESULT_KEYS = ("provenance", "base", "baselines", "linear_probe", "selection")


class TrainParams(Section):
    instruction: str = Field(
        "Describe this product photo.",
        max_length=MAX_PROMPT_CHARS,
        description="User turn after the image, identical in training and evaluation.",
    )
    epochs: int = Field(20, ge=1, description="Training epochs (the reference study's 20).")
    save_epochs: list[int] = Field(
        default_factory=lambda: [5, 10, 15, 20],
        description="Epochs at which a checkpoint is kept and evaluated (the reference study's 5, 10, 15, 20).",
    )
    batch_size: int = Field(
        24,
        ge=1,
        description="Effective batch = per_device_batch_size x gradient accumulation x devices (reference study: 24).",
    )
    per_device_batch_size: int = Field(24, ge=1, description="Micro-batch per device; accumulation makes up the rest.")
    devices: int = Field(
        1,
        ge=1,
        description="Processes (GPUs) per training run; above 1, or with train.deepspeed, the train stage launches itself through torchrun. Each train job claims this many GPUs (Snakemake: resources gpu).",
    )
    learning_rate: float = Field(
        3e-3, gt=0, description="Peak learning rate (the tiny default model needs a high one; real models ~1e-5..1e-4)."
    )
    lr_scheduler: LrScheduler = Field(
        "cosine", description="transformers scheduler name (transformers.SchedulerType: linear, cosine, constant, ...)."
    )
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Fraction of steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping.")
    max_length: int = Field(
        64,
        ge=16,
        description="Training sequences are truncated to this many tokens (only the answer is cut; the default keeps the first sentence or two, which name the brand).",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto = bf16 on GPUs that support it, else fp32."
    )
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")
    deepspeed: str = Field("", description="Path to a DeepSpeed config (configs/deepspeed/zero2.json); empty = none.")
    dataloader_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    logging_steps: int = Field(
        5, ge=1, description="Log loss, lr, grad norm and samples/s every this many optimizer steps."
    )
    frozen_vision_cache_mb: int = Field(
        4096,
        ge=0,
        description="With the vision tower frozen (freeze_vision, projector_only, lora), compute its output per training image once, "
        "in the training precision, and reuse it every epoch (same losses and checkpoints, less time) when it fits in "
        "this many MB of host memory; 0 = rerun the tower every step.",
    )
    general_mix: float = Field(
        0.0,
        ge=0,
        description="Generic image-caption pairs mixed into each epoch per task sample (against forgetting; 10 is a common "
        "starting point on real models): round(general_mix x task samples) pairs drawn from the generic training "
        "set, asked eval.general_instruction; 0 = task data only.",
    )
    lora: LoraParams = LoraParams()
    experiments: dict[str, Experiment] = Field(
        default_factory=lambda: {
            "freeze_llm": Experiment(strategy="freeze_llm"),
            "freeze_vision": Experiment(strategy="freeze_vision"),
            "lora": Experiment(strategy="lora"),
            # freeze_vision with one generic pair per task sample: what mixing does to brand accuracy and forgetting
            "freeze_vision_mix": Experiment(strategy="freeze_vision", general_mix=1.0),
        },
        description="Experiment name -> freezing strategy and overrides; one training run per seed in train.seeds.",
    )
    seeds: list[int] = Field(
        default_factory=lambda: [DEFAULT_SEED],
        description="Training seeds (model initialisation, data order): each experiment trains once per seed, a matrix axis "
        "of train and evaluate; with several, the tables show mean ± sd over seeds. The data split keeps the top-level seed.",
    )

    @field_validator("experiments")
    @classmethod
    def _experiments(cls, v: dict[str, Experiment]) -> dict[str, Experiment]:
        if not v:
            raise ValueError("the experiment list is empty; add at least one, e.g. freeze_llm: {strategy: freeze_llm}")
        for name in v:
            # results/metrics.json keys its experiments by name beside these
            if not name.replace("_", "").replace("-", "").isalnum() or name in RESERVED_RESULT_KEYS:
                raise ValueError(
                    f"experiment name {name!r} must be letters, digits, '_' or '-', and not one of {', '.join(RESERVED_RESULT_KEYS)}"
                )
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError(f"the seed list is empty; give at least one, e.g. seeds: [{DEFAULT_SEED}]")
        repeated = sorted({s for s in v if v.count(s) > 1})
        if repeated:
            raise ValueError(
                f"seed(s) {repeated} given more than once; list each training seed once (e.g. {sorted(set(v))})"
            )
        outside = [s for s in v if not 0 <= s < 2**32]
        if outside:
            raise ValueError(
                f"seed(s) {outside} outside 0..2**32-1, the range numpy and torch accept; pick seeds such as 4, 5, 6"
            )
        return v

    @model_validator(mode="after")
    def _epochs(self):
        beyond = [e for e in self.save_epochs if e > self.epochs or e < 1]
        if beyond:
            raise ValueError(
                f"train.save_epochs contains {beyond[0]} but train.epochs is {self.epochs}; use epochs between 1 and {self.epochs}"
            )
        if not self.save_epochs:
            raise ValueError("train.save_epochs is empty; list at least the last epoch")
        if sorted(set(self.save_epochs)) != list(self.save_epochs):
            raise ValueError(f"train.save_epochs {self.save_epochs} must be increasing without repeats")
        layout_error = batch_layout_error(self.batch_size, self.per_device_batch_size, self.devices)
        if layout_error:
            raise ValueError(layout_error)
        return self


# --------------------------------------------------------------------------- eval
class EvalEndpointParams(Section):
    """An OpenAI-compatible server that serves an exported model (eval.backend: endpoint); asked with the
    caption stage's client, retries and circuit breaker."""

    section: ClassVar[str] = "eval.endpoint"

    base_url: str = Field(
        "",
        description="API root of the server that serves the model to evaluate, e.g. http://127.0.0.1:8000/v1 (`vllm serve results/export/best --served-model-name brandcap-best`); needed with eval.backend: endpoint.",
    )
    model: str = Field(
        "brandcap-best", min_length=1, description="Model name sent to the server (vLLM: its --served-model-name)."
    )
    api_key_env: str = Field(
        "BRANDCAP_API_KEY", description="Name of the environment variable holding the API key (never the key itself)."
    )
    concurrency: int = Field(
        8, ge=1, description="Requests in flight (at most eval.batch_size: the items of one batch are asked at once)."
    )
    timeout_s: float = Field(120.0, gt=0, description="Wall-clock bound of one request, seconds.")
    retries: int = Field(4, ge=0, description="Retries on timeouts, connection errors, 429 and 5xx.")
    backoff_s: float = Field(
        0.5, ge=0, description="Base of the exponential backoff, seconds (full jitter); Retry-After wins."
    )
    breaker_s: float = Field(
        120.0,
        gt=0,
        description="Circuit breaker: the stage stops when every answer has failed for this many seconds in a row (answered items stay in the resume folder).",
    )
    max_answer_chars: int = Field(
        20_000, ge=1, description="Answers longer than this many characters are refused (failure reason 'oversize')."
    )

    @property
    def answer_char_limit(self) -> int:
        return self.max_answer_chars


class EvalParams(Section):
    max_new_tokens: int = Field(48, ge=1, description="Generation limit for predictions.")
    batch_size: int = Field(32, ge=1, description="Prompts generated at once (left padding).")
    max_test_samples: int = Field(
        0,
        ge=0,
        description="Evaluate at most this many test samples (and as many validation and general samples); 0 = all.",
    )
    general_instruction: str = Field(
        "What is in this image?",
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="The question the brand-free general set (forgetting probe) is asked: a generic one, not train.instruction, so the probe measures general captioning rather than the fine-tuning style.",
    )
    backend: Literal["hf", "endpoint"] = Field(
        "hf",
        description="hf: generate in-process with transformers (base + checkpoint); endpoint: ask the server at eval.endpoint for the model it serves (an exported checkpoint, see the export stage), greedily, with the same prompt; the test loss is then null (not available over HTTP).",
    )
    endpoint: EvalEndpointParams = EvalEndpointParams()
    prompted_instruction: str = Field(
        "Which brand is this product? Answer with one of: {brands}.",
        max_length=MAX_PROMPT_CHARS,
        description="The prompt-only baseline's question (the base model asked with the candidate brands, before any fine-tuning); {brands} becomes the kept brands, comma-separated. Rendered through the same chat template as training.",
    )

    @field_validator("prompted_instruction")
    @classmethod
    def _lists_the_brands(cls, v: str) -> str:
        if "{brands}" not in v:
            raise ValueError("eval.prompted_instruction must contain {brands}, where the candidate brand list goes")
        return v

    @model_validator(mode="after")
    def _endpoint_named(self):
        if self.backend == "endpoint" and not self.endpoint.base_url:
            raise ValueError(
                "eval.backend is endpoint but eval.endpoint.base_url is empty; set it to the API root of the server "
                "that serves the exported model (e.g. http://127.0.0.1:8000/v1), or use eval.backend: hf"
            )
        return self


# --------------------------------------------------------------------------- all

# What an evaluation job reads of the eval section, the params its records list (rules/evaluate.smk, dvc.yaml) and
# its resume fingerprint: the base model's and a checkpoint's evaluation never ask the prompt-only baseline's
# question, and the prompt-only baseline scores no general set; a change to one reruns only the jobs that read it.
EVAL_KEYS = ("max_new_tokens", "batch_size", "max_test_samples", "backend", "endpoint")
SCORED_EVAL_KEYS = (*EVAL_KEYS, "general_instruction")
PROMPTED_EVAL_KEYS = (*EVAL_KEYS, "prompted_instruction")


class TablesParams(Section):
    rounding_spread: float = Field(
        0.06,
        ge=0,
        le=1,
        description="The largest change of a best epoch's brand accuracy measured when only the floating-point rounding changes (training and evaluation at 2 threads instead of 1: docs/findings.md, 0.06 on the default profile); the tables say when another experiment is this close to the best on validation, as the ranking between them is then not stable. Measure your own setup's; 0 = no such note.",
    )


class Params(Section):
    seed: int = Field(
        DEFAULT_SEED,
        description="Seed of the data and evaluation: sampling, shop, splits, base model, evaluation samples; training runs use train.seeds.",
    )
    data: DataParams = DataParams()
    download: DownloadParams = DownloadParams()
    caption: CaptionParams = CaptionParams()
    clean: CleanParams = CleanParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    eval: EvalParams = EvalParams()
    tables: TablesParams = TablesParams()

    @model_validator(mode="after")
    def _generic_training_set(self):
        mixed = mixing_experiments(self)
        if not mixed:
            return self
        if self.data.source == "synthetic" and self.data.synthetic.n_general_train == 0:
            raise ValueError(
                f"experiment(s) {mixed} mix generic data (train.general_mix) but data.synthetic.n_general_train is 0; "
                "raise it (e.g. 1000) or set general_mix to 0"
            )
        if self.data.source == "hf" and not self.data.general_train_set:
            raise ValueError(
                f"experiment(s) {mixed} mix generic data (train.general_mix) but data.general_train_set is empty; set it "
                "to a JSONL of {image, caption} pairs (e.g. a COCO-captions extract), set their general_mix to 0, or list "
                "your own train.experiments (the default matrix's freeze_vision_mix mixes; configs/seed004.yaml lists one)"
            )
        return self


class ParamsError(ValueError):
    """A parameter file is invalid; the message names the file, the key and the fix."""


def _type_hint(kind: str, given: Any) -> str:
    """The fix for a value of the wrong type (strict mode: no silent conversions)."""
    if isinstance(given, str) and kind in ("int_type", "float_type", "bool_type"):
        return "; a quoted value is text: write it without quotes" + (
            "" if kind != "bool_type" else " as true or false"
        )
    if isinstance(given, bool) and kind in ("int_type", "float_type"):
        return "; true/false is not a number: write a number"
    if kind == "string_type" and given is not None:
        return "; put the value in quotes"
    if kind == "model_type" and given is None:
        return "; the section is empty: remove it or give it keys"
    return ""


def _spelling_hint(loc: tuple) -> str:
    """' (did you mean X?)' for an unknown key close to a key of its section, else where the valid keys are."""
    model: Any = Params
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        model = field.annotation if field else None
    if isinstance(model, type) and issubclass(model, BaseModel):
        close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
        if close:
            return f" (did you mean {close[0]!r}?)"
    return " (see params.yaml for the valid keys)"


def _format_errors(source: str, err: ValidationError) -> str:
    lines = [f"{source}: {err.error_count()} invalid parameter(s)"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key; remove it or fix its spelling" + _spelling_hint(e["loc"])
        elif e["type"] == "missing":
            msg = "missing; add it"
        else:
            given = e.get("input")
            if not isinstance(given, (dict, list)):
                size = len(given) if isinstance(given, str) else len(repr(given))
                shown = repr(given) if len(repr(given)) <= 200 else f"{repr(given)[:120]}... ({size:,} characters)"
                msg = f"{msg} (got {shown}){_type_hint(e['type'], given)}"
        lines.append(f"{source}: {key}: {msg}")
    return "\n".join(lines)


def validate_params(raw: dict[str, Any] | None, source: str = "params") -> Params:
    """Validate an already-loaded mapping (Snakemake's config, a test's dict)."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as err:
        raise ParamsError(_format_errors(source, err)) from None


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one mapping (plain YAML keeps the last one silently)."""

    def __init__(self, key: Any, first_line: int, node: yaml.Node):
        super().__init__(
            problem=f"key {key!r} given twice (lines {first_line} and {node.start_mark.line + 1})",
            problem_mark=node.start_mark,
        )
        self.key, self.first_line, self.line = key, first_line, node.start_mark.line + 1


class StrictKeysLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in the same mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, typing.Hashable):
                continue  # SafeLoader reports unhashable keys itself
            if key in first_lines:
                raise DuplicateKeyError(key, first_lines[key], key_node)
            first_lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def read_params_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping in a parameter file (a whole profile or an overlay), not yet validated;
    ParamsError (file, line, fix) for anything else."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(
            f"{path}: parameter file not found; pass an existing file such as params.yaml or configs/smoke.yaml"
        )
    if (size := path.stat().st_size) > MAX_PARAMS_FILE_BYTES:
        raise ParamsError(
            f"{path}: {size:,} bytes, above the {MAX_PARAMS_FILE_BYTES:,}-byte limit of a parameter file (the default "
            "params.yaml is about 16 kB); it is not read: keep large data in files under data/ and name them in params"
        )
    try:
        with open(path, encoding="utf-8") as stream:  # PyYAML's marks then name the file, not "<unicode string>"
            raw = yaml.load(stream, Loader=StrictKeysLoader)
    except DuplicateKeyError as err:
        raise ParamsError(
            f"{path}:{err.line}: key {err.key!r} is given twice in the same section (first at line "
            f"{err.first_line}); YAML would silently keep the last one: delete one of them"
        ) from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if raw is None:
        raise ParamsError(
            f"{path}: the file is empty; an empty file would run every default silently: write the keys "
            "you mean to set (`brandcap params > FILE` writes them all), or pass params.yaml"
        )
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping of sections (data, download, ...)")
    return raw


def load_params(path: str | Path) -> Params:
    path = Path(path)
    return validate_params(read_params_mapping(path), str(path))


def check_training_seed(params: Params, seed: int) -> None:
    """A train job's seed must be one of train.seeds (the orchestrators run one job per listed seed)."""
    if seed not in params.train.seeds:
        raise ParamsError(
            f"training seed {seed} is not in train.seeds {params.train.seeds}; add it there or pass one of them"
        )


class ExperimentSettings(typing.NamedTuple):
    strategy: Strategy
    learning_rate: float
    lora: LoraParams
    general_mix: float


def experiment_settings(params: Params, name: str) -> ExperimentSettings:
    """One experiment's settings, its overrides applied over the train section."""
    if name not in params.train.experiments:
        raise ParamsError(f"unknown experiment {name!r}; params define {sorted(params.train.experiments)}")
    exp = params.train.experiments[name]
    general_mix = params.train.general_mix if exp.general_mix is None else exp.general_mix
    return ExperimentSettings(
        exp.strategy, exp.learning_rate or params.train.learning_rate, exp.lora or params.train.lora, general_mix
    )


def mixing_experiments(params: Params) -> list[str]:
    """The experiments whose train.general_mix (overrides applied) mixes generic pairs into training."""
    return sorted(name for name in params.train.experiments if experiment_settings(params, name).general_mix > 0)
