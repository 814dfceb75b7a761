"""The brand-free general set (forgetting probe): synthetic and from a user's JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brandcap.config.params import validate_params
from brandcap.files.atomic import read_jsonl
from brandcap.general_sets import GeneralSetError
from brandcap.sim.colours import dominant_colour_name
from brandcap.sim.drawing import COLOUR_NAMES
from brandcap.sim.shop import brand_names
from brandcap.stages.general_set import run_general_set
from brandcap.text.brands import brands_mentioned
from tests.conftest import ONE_UNMIXED_EXPERIMENT


def test_synthetic_general_set_is_brand_free_and_reproducible(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = validate_params({"data": {"synthetic": {"n_general": 12}}})
    run_general_set(params, Path("g1"))
    run_general_set(params, Path("g2"))
    recs = read_jsonl("g1/general.jsonl")
    assert len(recs) == 12 and len({r["id"] for r in recs}) == 12
    names = brand_names(params.data.synthetic.n_brands, params.seed)
    for rec in recs:
        assert rec["image"] == f"g1/images/{rec['id']}.png"
        assert brands_mentioned(rec["caption"], names) == []
        with Image.open(rec["image"]) as img:
            colour = dominant_colour_name(img)
        assert colour in rec["caption"] and sum(c in rec["caption"].split() for c in COLOUR_NAMES) == 1
    assert [Path(r["image"]).read_bytes() for r in recs] == [
        Path(r["image"].replace("g1/", "g2/")).read_bytes() for r in read_jsonl("g2/general.jsonl")
    ]


def test_user_jsonl_is_validated_and_copied(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "data/external/probe"
    (src / "imgs").mkdir(parents=True)
    Image.new("RGBA", (80, 60), (10, 200, 10, 255)).save(src / "imgs" / "a.png")
    Image.new("RGB", (900, 300), (200, 10, 10)).save(tmp_path / "data/external/b.jpg")
    lines = [
        {"image": "imgs/a.png", "caption": "A green square."},
        {"image": str(tmp_path / "data/external/b.jpg"), "caption": "A red strip."},
    ]
    (src / "general.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    params = validate_params(
        {
            **ONE_UNMIXED_EXPERIMENT,
            "data": {"source": "hf", "general_set": str(src / "general.jsonl")},
            "download": {"max_side": 448},
        }
    )
    run_general_set(params, tmp_path / "out")
    recs = read_jsonl(tmp_path / "out" / "general.jsonl")
    assert [r["caption"] for r in recs] == ["A green square.", "A red strip."]
    with Image.open(recs[1]["image"]) as img:
        assert img.mode == "RGB" and img.size == (448, 149)

    (src / "general.jsonl").write_text(json.dumps({"image": "imgs/missing.png", "caption": "x"}) + "\n")
    with pytest.raises(GeneralSetError, match=r"general.jsonl:1: image .*missing.png cannot be read"):
        run_general_set(params, tmp_path / "out2")
    (src / "general.jsonl").write_text(json.dumps({"image": "imgs/a.png"}) + "\n")
    with pytest.raises(GeneralSetError, match="non-empty string 'caption'"):
        run_general_set(params, tmp_path / "out2")


def test_user_images_outside_data_external_are_never_read(tmp_path, monkeypatch):
    """A JSONL line may not make the pipeline read (and later send to an endpoint) any local file."""
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "data/external/probe"
    src.mkdir(parents=True)
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "secret.png")
    (src / "link.png").symlink_to(tmp_path / "secret.png")
    params = validate_params(
        {**ONE_UNMIXED_EXPERIMENT, "data": {"source": "hf", "general_set": str(src / "general.jsonl")}}
    )
    for image in [str(tmp_path / "secret.png"), "../../../secret.png", "link.png", "/etc/passwd"]:
        (src / "general.jsonl").write_text(json.dumps({"image": image, "caption": "A plain square."}) + "\n")
        with pytest.raises(
            GeneralSetError, match=r"general.jsonl:1: image .* lies outside data/external/ .*local_file_outside_project"
        ):
            run_general_set(params, tmp_path / "out")
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.png"))


def test_no_general_set_writes_an_empty_file(tmp_path):
    params = validate_params({**ONE_UNMIXED_EXPERIMENT, "data": {"source": "hf", "general_set": ""}})
    run_general_set(params, tmp_path / "g")
    assert (tmp_path / "g" / "general.jsonl").read_text() == ""


def test_user_images_are_normalised_as_the_download_stage_normalises_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    """16-bit grey and EXIF-rotated photos: the general set stores them as catalog images are stored."""
    from brandcap.stages.download import normalise_image

    src = tmp_path / "data/external/probe"
    src.mkdir(parents=True)
    Image.fromarray(np.full((40, 60), 32768, dtype=np.uint16)).save(src / "grey16.png")  # mid-grey, 16 bit
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    Image.new("RGB", (80, 40), (20, 40, 200)).save(src / "rotated.jpg", exif=exif)
    lines = [{"image": "grey16.png", "caption": "A grey card."}, {"image": "rotated.jpg", "caption": "A blue card."}]
    (src / "general.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    params = validate_params(
        {**ONE_UNMIXED_EXPERIMENT, "data": {"source": "hf", "general_set": str(src / "general.jsonl")}}
    )
    run_general_set(params, tmp_path / "out")
    for rec, name in zip(read_jsonl(tmp_path / "out" / "general.jsonl"), ["grey16.png", "rotated.jpg"]):
        stored = Path(rec["image"]).read_bytes()
        assert stored == normalise_image((src / name).read_bytes(), params.download)[0]
    with (
        Image.open(tmp_path / "out" / "images" / "general-00000.png") as grey,
        Image.open(tmp_path / "out" / "images" / "general-00001.png") as rotated,
    ):
        assert grey.getpixel((0, 0)) == (128, 128, 128) and rotated.size == (40, 80)
