"""The parameter schema: every class of bad value fails before any work, naming file, key and fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
import yaml

from brandcap.config.params import LrScheduler, Params, ParamsError, check_training_seed, load_params, validate_params
from brandcap.config.params_file import render_params

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def test_default_params_file_is_the_schema_defaults():
    """params.yaml is the documented default profile; regenerate it with `brandcap params`."""
    assert load_params(ROOT / "params.yaml") == Params()


def test_rendered_file_round_trips(tmp_path):
    custom = Params.model_validate({"seed": 7, "train": {"epochs": 3, "save_epochs": [1, 3]}})
    path = tmp_path / "p.yaml"
    path.write_text(render_params(custom))
    assert load_params(path) == custom
    assert "# Peak learning rate" in path.read_text()


@pytest.mark.parametrize(
    "text, key, hint",
    [
        ("train:\n  lerning_rate: 0.1\n", "train.lerning_rate", "unknown key"),
        ("train:\n  epochs: many\n", "train.epochs", "valid integer"),
        ("train:\n  epochs: 20\n  save_epochs: [5, 25]\n", "train", "save_epochs contains 25 but train.epochs is 20"),
        ("clean:\n  test_fraction: 1.5\n", "clean.test_fraction", "less than 1"),
        (
            "data:\n  synthetic:\n    signature_visibility: -0.1\n",
            "data.synthetic.signature_visibility",
            "greater than or equal to 0",
        ),
        ("train:\n  experiments: {}\n", "train.experiments", "experiment list is empty"),
        (
            "train:\n  experiments:\n    x: {strategy: freeze_everything}\n",
            "train.experiments.x.strategy",
            "freeze_llm",
        ),
        # a results/metrics.json key of its own
        (
            "train:\n  experiments:\n    provenance: {strategy: lora}\n",
            "train.experiments",
            "not one of provenance, base, baselines, linear_probe, selection",
        ),
        (
            "train:\n  experiments:\n    baselines: {strategy: lora}\n",
            "train.experiments",
            "not one of provenance, base, baselines, linear_probe, selection",
        ),
        ("eval:\n  prompted_instruction: 'Which brand is it?'\n", "eval.prompted_instruction", "must contain {brands}"),
        ("clean:\n  test_fraction: 0.5\n  val_fraction: 0.6\n", "clean", "leave nothing to train on"),
        ("caption:\n  prompt: 'Describe {product}'\n", "caption.prompt", "unknown placeholder"),
        (
            "train:\n  batch_size: 24\n  per_device_batch_size: 5\n",
            "train",
            "needs per_device_batch_size in {1, 2, 3, 4, 6, 8, 12, 24}",
        ),
        (
            "train:\n  batch_size: 24\n  per_device_batch_size: 4\n  devices: 8\n",
            "train",
            "24 with 8 device(s) needs per_device_batch_size in {1, 3}",
        ),
        (
            "train:\n  batch_size: 24\n  per_device_batch_size: 4\n  devices: 5\n",
            "train",
            "use devices in {1, 2, 3, 4, 6, 8, 12, 24}",
        ),
        ("train:\n  devices: 0\n", "train.devices", "greater than or equal to 1"),
        # strict types: no silent conversions
        ("train:\n  epochs: '2'\n", "train.epochs", "a quoted value is text: write it without quotes"),
        ("download:\n  retries: true\n", "download.retries", "true/false is not a number"),
        (
            "data:\n  synthetic:\n    serve_over_http: 'no'\n",
            "data.synthetic.serve_over_http",
            "without quotes as true or false",
        ),
        ("train:\n  learning_rate: '0.1'\n", "train.learning_rate", "without quotes"),
        ("caption:\n  model: 7\n", "caption.model", "put the value in quotes"),
        ("train:\n", "train", "the section is empty"),
        ("train:\n  lr_scheduler: cosine_with_warmup\n", "train.lr_scheduler", "'constant_with_warmup'"),
        # training seeds: a matrix axis, so a non-empty list of distinct ints
        ("train:\n  seeds: []\n", "train.seeds", "the seed list is empty; give at least one, e.g. seeds: [4]"),
        (
            "train:\n  seeds: [4, 5, 4]\n",
            "train.seeds",
            "seed(s) [4] given more than once; list each training seed once (e.g. [4, 5])",
        ),
        ("train:\n  seeds: ['4']\n", "train.seeds.0", "a quoted value is text: write it without quotes"),
        ("train:\n  seeds: [4.5]\n", "train.seeds.0", "valid integer"),
        ("train:\n  seeds: 4\n", "train.seeds", "valid list"),
        ("train:\n  seeds: [-1]\n", "train.seeds", "outside 0..2**32-1"),
    ],
)
def test_bad_values_name_file_key_and_fix(tmp_path, text, key, hint):
    path = write(tmp_path, text)
    with pytest.raises(ParamsError) as err:
        load_params(path)
    message = str(err.value)
    assert str(path) in message
    assert f"{key}:" in message
    assert hint in message


def test_a_train_job_runs_only_a_listed_seed():
    params = validate_params({"train": {"seeds": [4, 5]}})
    check_training_seed(params, 5)
    with pytest.raises(ParamsError, match=r"training seed 6 is not in train.seeds \[4, 5\]; add it there"):
        check_training_seed(params, 6)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "absent.yaml")
    bad_yaml = write(tmp_path, "train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML") as err:
        load_params(bad_yaml)
    assert f'in "{bad_yaml}", line' in str(err.value)  # PyYAML's position names the file, not "<unicode string>"
    with pytest.raises(ParamsError, match="mapping of sections"):
        load_params(write(tmp_path, "- a\n- b\n"))


def test_stage_refuses_bad_params_before_work(tmp_path):
    """An entry script exits 2 with the message and writes no output."""
    bad = write(tmp_path, "train:\n  epochs: 2\n  save_epochs: [3]\n")
    out = tmp_path / "catalog.parquet"
    run = subprocess.run(
        [
            sys.executable,
            ROOT / "workflow/scripts/catalog.py",
            "--params",
            bad,
            "--catalog",
            out,
            "--shop",
            tmp_path / "shop",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "save_epochs contains 3 but train.epochs is 2" in run.stderr
    assert not out.exists()


def test_snakemake_validates_through_the_same_schema(tmp_path):
    bad = tmp_path / "bad.yaml"
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["clean"]["min_brand_samples"] = 0
    bad.write_text(yaml.safe_dump(raw))
    run = subprocess.run(
        [Path(sys.executable).parent / "snakemake", "-n", "--cores", "1", "results/tables.md", "--configfile", bad],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert "clean.min_brand_samples" in run.stdout + run.stderr


def test_ints_are_floats_and_exponents_are_numbers(tmp_path):
    """Strict types keep what a reader means: 1 is a float, 1e-5 (text to YAML 1.1) a number."""
    params = load_params(
        write(tmp_path, "train:\n  learning_rate: 1e-5\n  weight_decay: 1\ncaption:\n  timeout_s: 3\n")
    )
    assert params.train.learning_rate == 1e-5 and params.train.weight_decay == 1.0 and params.caption.timeout_s == 3.0
    assert validate_params({"train": {"learning_rate": "4e-5"}}).train.learning_rate == 4e-5  # Snakemake's config


def test_duplicate_keys_and_empty_files_are_refused(tmp_path):
    with pytest.raises(ParamsError) as err:
        load_params(write(tmp_path, "train:\n  epochs: 2\n  save_epochs: [2]\n  epochs: 20\n"))
    assert f"{tmp_path / 'bad.yaml'}:4: key 'epochs' is given twice in the same section (first at line 2)" in str(
        err.value
    )
    assert "delete one of them" in str(err.value)
    with pytest.raises(ParamsError, match=r"line 1\)"):
        load_params(write(tmp_path, "train: {epochs: 2}\neval: {}\ntrain: {epochs: 3}\n"))
    merged = load_params(
        write(tmp_path, "train:\n  <<: {epochs: 4, save_epochs: [4]}\n  epochs: 6\n  save_epochs: [6]\n")
    )
    assert merged.train.epochs == 6  # a merge key may be overridden
    for text in ("", "# only a comment\n"):
        with pytest.raises(ParamsError, match=r"bad\.yaml: the file is empty; .*brandcap params > FILE"):
            load_params(write(tmp_path, text))


def test_scheduler_names_are_transformers_names():
    from transformers.trainer_utils import SchedulerType

    assert set(get_args(LrScheduler)) == {s.value for s in SchedulerType}


def test_oversized_files_and_prompts_are_refused_with_the_limit(tmp_path):
    """A 50 MB prompt once validated and made a dry run take minutes; neither a file nor a prompt may be that large."""
    from brandcap.config.params import MAX_PARAMS_FILE_BYTES, MAX_PROMPT_CHARS

    big = tmp_path / "big.yaml"
    big.write_text("seed: 4\n# " + "x" * MAX_PARAMS_FILE_BYTES + "\n")
    with pytest.raises(
        ParamsError, match=r"big.yaml: 1,000,0\d\d bytes, above the 1,000,000-byte limit of a parameter file"
    ):
        load_params(big)
    for key in ("caption.prompt", "train.instruction", "eval.general_instruction", "eval.prompted_instruction"):
        section, name = key.split(".")
        prompt = (
            "{brand} {brands} " * (MAX_PROMPT_CHARS // 10)
            if key != "caption.prompt"
            else "{brand} " * (MAX_PROMPT_CHARS // 4)
        )
        (tmp_path / "p.yaml").write_text(yaml.safe_dump({section: {name: prompt}}))
        with pytest.raises(ParamsError) as err:
            load_params(tmp_path / "p.yaml")
        assert f"{key}: String should have at most {MAX_PROMPT_CHARS} characters" in str(err.value)
        assert len(str(err.value)) < 600  # the message quotes the start of the value, not all of it


def test_a_misspelt_key_is_answered_with_the_closest_key_of_its_section():
    with pytest.raises(ParamsError, match=r"train\.lerning_rate: unknown key; .*\(did you mean 'learning_rate'\?\)"):
        validate_params({"train": {"lerning_rate": 0.1}})
    with pytest.raises(ParamsError, match=r"trian: unknown key; .*\(did you mean 'train'\?\)"):
        validate_params({"trian": {}})
    with pytest.raises(ParamsError, match=r"see params\.yaml for the valid keys"):  # nothing close
        validate_params({"train": {"lora": {"rank": 8}}})
