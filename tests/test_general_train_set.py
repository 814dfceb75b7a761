"""The generic training set (train.general_mix): synthetic and from a user's JSONL, never overlapping the forgetting probe.

.venv/bin/python -m pytest tests/test_general_train_set.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from brandcap.config.params import ParamsError, validate_params
from brandcap.files.atomic import read_jsonl
from brandcap.files.digests import file_sha256
from brandcap.general_sets import GeneralSetError
from brandcap.sim.shop import brand_names
from brandcap.stages.general_set import run_general_set
from brandcap.stages.general_train_set import GENERAL_TRAIN_FILE, run_general_train_set
from brandcap.text.brands import brands_mentioned
from tests.conftest import ONE_UNMIXED_EXPERIMENT


def test_synthetic_generic_set_is_brand_free_reproducible_and_apart_from_the_probe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = validate_params(
        {"data": {"synthetic": {"n_general": 30, "n_general_train": 40}}, "train": {"general_mix": 1.0}}
    )
    run_general_set(params, Path("probe"))
    for out in ("g1", "g2"):
        run_general_train_set(params, Path("probe/general.jsonl"), Path(out))
    records = read_jsonl(Path("g1") / GENERAL_TRAIN_FILE)
    assert len(records) == 40 and len({r["id"] for r in records}) == 40
    names = brand_names(params.data.synthetic.n_brands, params.seed)
    assert all(r["image"] == f"g1/images/{r['id']}.png" and not brands_mentioned(r["caption"], names) for r in records)
    probe = {file_sha256(r["image"]) for r in read_jsonl("probe/general.jsonl")}
    assert probe.isdisjoint(file_sha256(r["image"]) for r in records)  # another seed stream than the probe's
    assert [Path(r["image"]).read_bytes() for r in records] == [
        Path(r["image"]).read_bytes() for r in read_jsonl(Path("g2") / GENERAL_TRAIN_FILE)
    ]
    assert not list(tmp_path.glob(".*.tmp"))  # the staging folder is gone


def _user_sets(tmp_path: Path) -> tuple[Path, Path]:
    """A probe JSONL and a generic training JSONL in a user's folder; their image files are distinct."""
    src = tmp_path / "data/external/user"  # the stages depend on data/external/, so user files live there
    src.mkdir(parents=True)
    for name, colour in (("probe.png", (10, 200, 10)), ("cat.png", (200, 10, 10)), ("dog.png", (10, 10, 200))):
        Image.new("RGB", (80, 60), colour).save(src / name)
    (src / "probe.jsonl").write_text(json.dumps({"image": "probe.png", "caption": "A green card."}) + "\n")
    pairs = [
        {"image": "cat.png", "caption": "A red card."},
        {"id": "dog/1", "image": "dog.png", "caption": "A blue card."},
    ]
    (src / "generic.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return src / "probe.jsonl", src / "generic.jsonl"


def _user_params(probe_jsonl: Path, generic_jsonl: Path, general_mix: float = 10.0):
    return validate_params(
        {
            "data": {"source": "hf", "general_set": str(probe_jsonl), "general_train_set": str(generic_jsonl)},
            "train": {"general_mix": general_mix, "experiments": {"lora": {"strategy": "lora"}}},
        }
    )


def test_user_jsonl_is_read_like_the_probe_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    probe_jsonl, generic_jsonl = _user_sets(tmp_path)
    params = _user_params(probe_jsonl, generic_jsonl)
    run_general_set(params, tmp_path / "probe")
    run_general_train_set(params, tmp_path / "probe" / "general.jsonl", tmp_path / "out")
    records = read_jsonl(tmp_path / "out" / GENERAL_TRAIN_FILE)
    assert [r["caption"] for r in records] == ["A red card.", "A blue card."]
    assert records[0]["id"] == "generic-00000" and "/" not in records[1]["id"]  # a safe file name
    assert all(Path(r["image"]).is_file() for r in records)


def test_a_generic_image_in_the_probe_fails_with_both_names_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    probe_jsonl, generic_jsonl = _user_sets(tmp_path)
    # the same photo under another file name (and another PNG encoding): identical once normalised
    Image.open(generic_jsonl.parent / "cat.png").save(generic_jsonl.parent / "cat-copy.png", compress_level=1)
    probe_jsonl.write_text(
        probe_jsonl.read_text() + json.dumps({"image": "cat-copy.png", "caption": "A red card."}) + "\n"
    )
    params = _user_params(probe_jsonl, generic_jsonl)
    run_general_set(params, tmp_path / "probe")
    with pytest.raises(
        GeneralSetError,
        match=r"1 generic training image\(s\) are also in the forgetting probe .*general.jsonl "
        r"\(same sha256: generic-00000 = probe general-00001\); remove them from data.general_train_set",
    ):
        run_general_train_set(params, tmp_path / "probe" / "general.jsonl", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_without_mixing_the_set_is_empty_and_mixing_needs_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    probe_jsonl, generic_jsonl = _user_sets(tmp_path)
    unmixed = {"train": {"experiments": {"lora": {"strategy": "lora"}}}}  # the default matrix has a mixed experiment
    for params in (
        validate_params(unmixed),
        validate_params({"data": {"source": "hf"}, **unmixed}),
        _user_params(probe_jsonl, generic_jsonl, 0.0),
    ):
        run_general_set(params, tmp_path / "probe")
        run_general_train_set(params, tmp_path / "probe" / "general.jsonl", tmp_path / "out")
        assert (tmp_path / "out" / GENERAL_TRAIN_FILE).read_text() == "" and not (tmp_path / "out" / "images").exists()
    with pytest.raises(
        ParamsError, match=r"experiment\(s\) \['lora'\] mix generic data .* data.general_train_set is empty"
    ):
        validate_params(
            {"data": {"source": "hf"}, "train": {"experiments": {"lora": {"strategy": "lora", "general_mix": 2}}}}
        )
    with pytest.raises(ParamsError, match=r"data.synthetic.n_general_train is 0"):
        validate_params({"data": {"synthetic": {"n_general_train": 0}}, "train": {"general_mix": 1}})


def test_a_missing_user_file_names_the_param(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    probe_jsonl, _ = _user_sets(tmp_path)
    params = _user_params(probe_jsonl, tmp_path / "data/external/absent.jsonl")
    run_general_set(params, tmp_path / "probe")
    with pytest.raises(
        GeneralSetError,
        match=r"data.general_train_set: .*absent.jsonl does not exist; fix the path or set data.general_train_set to ''",
    ):
        run_general_train_set(params, tmp_path / "probe" / "general.jsonl", tmp_path / "out")


def test_user_sets_must_live_under_data_external_which_the_stages_depend_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key in ("general_set", "general_train_set"):
        with pytest.raises(
            ParamsError,
            match=rf"data.{key} .*elsewhere.jsonl lies outside data/external/.*set data.{key}: data/external/elsewhere.jsonl",
        ):
            validate_params(
                {"data": {"source": "hf", key: str(tmp_path / "elsewhere.jsonl")}, **ONE_UNMIXED_EXPERIMENT}
            )
        validate_params({"data": {"source": "hf", key: "data/external/sets/ok.jsonl"}, **ONE_UNMIXED_EXPERIMENT})
