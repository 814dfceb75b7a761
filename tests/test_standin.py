"""The pretrained stand-in: the shipped folder is current, the recipe runs, and it never sees a brand."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from brandcap.config.params import Params, SyntheticShop
from brandcap.sim import standin
from brandcap.sim.shop import brand_names
from brandcap.stages.base_model import BASE_INFO, run_base_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / standin.STANDIN_DIR


def test_the_shipped_standin_was_made_from_todays_drawing_code_and_architecture():
    recipe = standin.read_recipe(SHIPPED)
    fix = "make it again: python tools/pretrain_standin.py, then commit pretrained/tiny-internvl"
    assert recipe["drawing_code_sha256"] == standin.drawing_code_sha256(), (
        f"the world's drawing code changed since the stand-in was made; {fix}"
    )
    assert (
        standin.architecture(AutoConfig.from_pretrained(SHIPPED))
        == standin.expected_architecture()
        == recipe["architecture"]
    ), f"brandcap.sim.standin.ARCHITECTURE changed since the stand-in was made; {fix}"
    assert not recipe["quick"]


def test_the_shipped_standin_learnt_until_every_attribute_plateaued():
    vision = standin.read_recipe(SHIPPED)["vision"]
    recipe = standin.VisionRecipe(**vision["recipe"])
    before_cooldown = [p for p in vision["curve"] if not p.get("after_cooldown")]
    assert vision["stopped"] == "plateau" and standin.plateaued(before_cooldown, recipe.patience, recipe.min_gain)
    assert not standin.plateaued(before_cooldown[:-1], recipe.patience, recipe.min_gain), (
        "it trained on past the plateau"
    )
    assert set(vision["held_out_accuracy"]) == set(standin.ATTRIBUTES)
    assert vision["excluded_signatures"] == SyntheticShop().n_brands


@pytest.mark.parametrize(
    ("gains", "flat"),
    [
        ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], False),  # still rising
        ([0.1, 0.5, 0.505, 0.507, 0.509, 0.508], True),  # flat for the last four points
        ([0.1, 0.5, 0.505, 0.507, 0.509, 0.52], False),  # a gain of 0.02 in the window
        ([0.1, 0.5, 0.5, 0.5], False),  # too short to tell
    ],
)
def test_a_plateau_is_no_gain_of_min_gain_on_any_attribute_for_patience_points(gains, flat):
    curve = [
        {"images": i, "accuracy": {a: 0.9 for a in standin.ATTRIBUTES} | {"pattern": g}} for i, g in enumerate(gains)
    ]
    assert standin.plateaued(curve, patience=4, min_gain=0.01) is flat


def test_the_vocabulary_never_shows_a_brand_signature_and_shows_every_mark():
    world, seed = SyntheticShop(), 4
    excluded = standin.excluded_signatures(world, seed)
    assert len(excluded) == world.n_brands
    drawn = [standin.vocabulary_image(i, standin.STREAM_VOCABULARY, world, seed, excluded)[1] for i in range(600)]
    combos = {(x["emblem"], x["placement"], x["pattern"], x["hardware"]) for x in drawn}
    assert not combos & {(s.emblem, s.placement, s.pattern, s.hardware) for s in excluded}
    for attribute, values in standin.ATTRIBUTES.items():
        assert {x[attribute] for x in drawn} == set(values), attribute
    # ~2% of unconstrained draws would hit one of the 20 signatures: the exclusion did work here
    unconstrained = [standin.vocabulary_image(i, standin.STREAM_VOCABULARY, world, seed, set())[1] for i in range(600)]
    assert {(x["emblem"], x["placement"], x["pattern"], x["hardware"]) for x in unconstrained} & {
        (s.emblem, s.placement, s.pattern, s.hardware) for s in excluded
    }


def test_the_language_phase_sees_brand_names_as_words_never_a_shop_product():
    world = SyntheticShop()
    products = standin.world_products(world, 4, 400)
    names = brand_names(world.n_brands, 4)
    assert {p.brand for p in products} == set(names)  # every brand, drawn uniformly
    assert max(sum(p.brand == b for p in products) for b in names) < 2.5 * 400 / len(names)


@pytest.fixture(scope="module")
def quick_standin(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("standin") / "quick"
    standin.make_standin(out, seed=4, quick=True, command="pytest")
    return out


def test_the_recipe_makes_an_ordinary_hugging_face_folder(quick_standin):
    model = AutoModelForImageTextToText.from_pretrained(quick_standin)
    processor = AutoProcessor.from_pretrained(quick_standin)
    assert type(model).__name__ == "InternVLForConditionalGeneration" and processor.chat_template
    recipe = json.loads((quick_standin / "recipe.json").read_text())
    assert recipe["quick"] and recipe["command"] == "pytest" and recipe["seed"] == 4
    assert recipe["drawing_code_sha256"] == standin.drawing_code_sha256()
    assert standin.architecture(model.config) == recipe["architecture"] == standin.expected_architecture()
    assert recipe["vision"]["images"] > 0 and recipe["language"]["steps"] > 0 and recipe["wall_time_s"] > 0
    assert not list(quick_standin.parent.glob(".*")), "the recipe left a temporary folder beside its output"


def test_the_base_model_stage_records_the_standin_and_warns_when_the_world_changed(quick_standin, tmp_path, caplog):
    params = Params.model_validate({"model": {"base": str(quick_standin)}})
    run_base_model(params, tmp_path / "unused-catalog.parquet", tmp_path / "base")
    info = json.loads((tmp_path / "base" / BASE_INFO).read_text())
    assert info["standin"]["drawing_code_current"] is True
    assert set(info["standin"]["held_out_attribute_accuracy"]) == set(standin.ATTRIBUTES)

    stale = tmp_path / "stale"
    stale.mkdir()
    for f in quick_standin.iterdir():
        (stale / f.name).write_bytes(f.read_bytes())
    recipe = json.loads((stale / "recipe.json").read_text())
    recipe["drawing_code_sha256"]["src/brandcap/sim/drawing.py"] = "0" * 64
    (stale / "recipe.json").write_text(json.dumps(recipe))
    with caplog.at_level(logging.WARNING):
        run_base_model(
            Params.model_validate({"model": {"base": str(stale)}}),
            tmp_path / "unused-catalog.parquet",
            tmp_path / "base2",
        )
    assert json.loads((tmp_path / "base2" / BASE_INFO).read_text())["standin"]["drawing_code_current"] is False
    assert "python tools/pretrain_standin.py --out" in caplog.text
