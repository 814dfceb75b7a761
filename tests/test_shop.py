"""The synthetic shop: deterministic, unbalanced as set, brands told apart by marks, not colours."""

from __future__ import annotations

from collections import Counter
from dataclasses import astuple
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from brandcap.config.params import SyntheticShop
from brandcap.files.product_table import DBQ_COLUMNS
from brandcap.sim import drawing, shop
from brandcap.sim.colours import dominant_colour_name


def files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_same_seed_same_table_and_image_bytes_other_seed_differs(tmp_path):
    cfg = SyntheticShop(n_brands=8)
    a = shop.generate_shop(cfg, 120, seed=4, shop_dir=tmp_path / "a")
    b = shop.generate_shop(cfg, 120, seed=4, shop_dir=tmp_path / "b")
    c = shop.generate_shop(cfg, 120, seed=5, shop_dir=tmp_path / "c")
    assert list(a.columns) == DBQ_COLUMNS and len(a) == 120
    assert a.drop(columns="imageurl").equals(b.drop(columns="imageurl"))
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert set(a.brand) != set(c.brand)
    assert [v for k, v in files(tmp_path / "a").items()] != [v for k, v in files(tmp_path / "c").items()]


def test_brand_names_are_fashion_like_unique_and_deterministic():
    names = shop.brand_names(20, seed=4)
    assert names == shop.brand_names(20, seed=4) and names != shop.brand_names(20, seed=7)
    assert len({n.casefold() for n in names}) == 20
    assert any("&" in n for n in names) and any(" " in n for n in names)
    assert any(any(ord(ch) > 127 for ch in n) for n in names)  # accents
    words = [
        w.casefold() for n in names for w in n.split() if w not in {"&"} and w not in shop._PREFIXES + shop._PARTNERS
    ]
    assert len(words) == len(set(words))  # no distinctive word shared by two brands


def brand_counts(tmp_path, exponent, n_brands, n):
    frame = shop.generate_shop(SyntheticShop(n_brands=n_brands, zipf_exponent=exponent, noise=0), n, 4, tmp_path)
    return frame.brand.value_counts()


def test_brand_frequencies_follow_the_zipf_exponent(tmp_path):
    skewed = brand_counts(tmp_path / "s", 0.7, 10, 400)
    assert len(skewed) == 10  # every brand present
    assert skewed.iloc[0] > 2.5 * skewed.iloc[-1]
    balanced = brand_counts(tmp_path / "b", 0.0, 4, 400)
    assert len(balanced) == 4 and balanced.iloc[0] < 1.5 * balanced.iloc[-1]


def test_placeholders_and_broken_images_are_injected(tmp_path):
    frame = shop.generate_shop(SyntheticShop(n_brands=5, placeholder_rate=0.01, broken_images=2), 150, 4, tmp_path)
    placeholder = frame.imageurl == shop.PLACEHOLDER_URL
    assert placeholder.sum() == 2  # round(1.5)
    broken = 0
    for url in frame.imageurl[~placeholder]:
        path = Path(url.removeprefix("file:"))
        assert path.exists()
        try:
            with Image.open(path) as img:
                img.load()
        except OSError:
            broken += 1
    assert broken == 2


def test_brand_signatures_differ_in_at_least_two_marks_and_share_emblems_sparingly():
    sigs = shop.brand_signatures(20, seed=4)
    assert sigs == shop.brand_signatures(20, seed=4) and sigs != shop.brand_signatures(20, seed=7)
    for i, a in enumerate(sigs):
        for b in sigs[i + 1 :]:
            assert sum(x != y for x, y in zip(astuple(a), astuple(b))) >= 2, (a, b)
    assert max(Counter(s.emblem for s in sigs).values()) == 2  # 20 brands, 10 emblems
    assert len(set(shop.brand_signatures(60, seed=4))) == 60


def product_images(frame) -> list[Image.Image]:
    return [Image.open(u.removeprefix("file:")).convert("RGB") for u in frame.imageurl]


def mean_colour_accuracy(frame, images) -> float:
    """Nearest-centroid on the mean colour of the image, fitted on even rows, scored on odd ones."""
    mean_rgb = np.array([np.asarray(im, dtype=np.float32).reshape(-1, 3).mean(0) for im in images])
    brands = frame.brand.to_numpy()
    train, test = np.arange(len(brands)) % 2 == 0, np.arange(len(brands)) % 2 == 1
    centroids = {b: mean_rgb[train & (brands == b)].mean(0) for b in set(brands)}
    predicted = [min(centroids, key=lambda b: np.linalg.norm(x - centroids[b])) for x in mean_rgb[test]]
    return float(np.mean(np.array(predicted) == brands[test]))


def test_the_brand_cannot_be_read_from_the_colours(tmp_path):
    """Mean colour: chance level, not a lookup."""
    cfg = SyntheticShop(n_brands=4, zipf_exponent=0, signature_visibility=1.0, placeholder_rate=0, broken_images=0)
    frame = shop.generate_shop(cfg, 240, 4, tmp_path)
    images = product_images(frame)
    assert mean_colour_accuracy(frame, images) < 0.45  # 4 balanced brands: chance is 0.25
    brands = frame.brand.to_numpy()
    for brand in set(brands):
        colours = {dominant_colour_name(im) for im, b in zip(images, brands) if b == brand}
        assert len(colours) >= 9, (brand, colours)  # every brand comes in most of the 12 colours


def test_house_colours_make_the_brand_a_colour_lookup_and_change_nothing_else(tmp_path):
    """house_colour_rate (the learning profile's cue): at 1 every body is its brand's house colour;
    the brands, categories and marks are those of the same shop without house colours."""
    knobs = dict(n_brands=4, zipf_exponent=0, noise=0, placeholder_rate=0, broken_images=0)
    coloured = shop.generate_shop(SyntheticShop(house_colour_rate=1.0, **knobs), 120, 4, tmp_path / "house")
    plain = shop.generate_shop(SyntheticShop(**knobs), 120, 4, tmp_path / "plain")
    images = product_images(coloured)
    assert mean_colour_accuracy(coloured, images) > 0.6  # chance 0.25; background and trim blur the mean
    houses = dict(zip(shop.brand_names(4, 4), shop.house_colours(4, 4)))
    assert len(set(houses.values())) == 4
    named = [dominant_colour_name(im) == houses[b] for im, b in zip(images, coloured.brand)]
    assert np.mean(named) > 0.9
    assert coloured[["brand", "category3_code"]].equals(plain[["brand", "category3_code"]])


def is_marked(img: Image.Image, noun: str) -> bool:
    """Without noise a plain product shows only background, body and trim (and a watch's face);
    brand marks and distractors always add a colour (emblem, pattern ink, metal, blob, label)."""
    return len(img.getcolors(maxcolors=10_000)) > (4 if noun == "watch" else 3)


def categories(frame) -> list[drawing.Category]:
    by_code = {c.category3: c for c in drawing.CATEGORIES}
    return [by_code[code] for code in frame.category3_code]


def test_marks_appear_at_the_visibility_rate_and_distractors_at_theirs(tmp_path):
    def marked_fraction(**knobs) -> float:
        cfg = SyntheticShop(n_brands=5, noise=0, placeholder_rate=0, broken_images=0, **knobs)
        frame = shop.generate_shop(cfg, 200, 4, tmp_path / str(sorted(knobs.items())))
        return float(np.mean([is_marked(im, c.noun) for im, c in zip(product_images(frame), categories(frame))]))

    assert marked_fraction(signature_visibility=0.0, distractor_rate=0.0) == 0.0
    assert marked_fraction(signature_visibility=1.0, distractor_rate=0.0) == 1.0
    assert abs(marked_fraction(signature_visibility=0.6, distractor_rate=0.0) - 0.6) < 0.1
    assert abs(marked_fraction(signature_visibility=0.0, distractor_rate=0.3) - 0.3) < 0.1


def test_brand_free_products_carry_no_brand_marks():
    cfg = SyntheticShop(noise=0, distractor_rate=0)
    assert not any(is_marked(img, c.noun) for img, _, c in shop.generic_product_images(40, cfg, seed=4))
    with_distractors = SyntheticShop(noise=0, distractor_rate=1.0)
    assert all(is_marked(img, c.noun) for img, _, c in shop.generic_product_images(10, with_distractors, seed=4))


def emblem_mask(emblem: str) -> np.ndarray:
    """The emblem as drawn on a 64 px product (14 px), seen at the tiny model's 84 px."""
    img = Image.new("L", (64, 64), 0)
    drawing._draw_emblem(ImageDraw.Draw(img), emblem, (25, 25, 39, 39), 255)
    return np.asarray(img.resize((84, 84), Image.Resampling.BICUBIC)) > 127


def test_emblems_stay_distinguishable_at_the_model_resolution():
    masks = {e: emblem_mask(e) for e in drawing.EMBLEMS}
    for i, a in enumerate(drawing.EMBLEMS):
        for b in drawing.EMBLEMS[i + 1 :]:
            differing = (masks[a] ^ masks[b]).sum() / (masks[a] | masks[b]).sum()
            assert differing > 0.2, (a, b, differing)  # circle vs square, the closest pair: 0.23


def test_same_colours_different_brands_differ_only_by_marks():
    a, b = shop.brand_signatures(2, seed=4)
    draw = [
        drawing.draw_product(np.random.default_rng(1), 64, drawing.CATEGORIES[0], "red", "navy", sig, 0.0)
        for sig in (a, b)
    ]
    plain = drawing.draw_product(np.random.default_rng(1), 64, drawing.CATEGORIES[0], "red", "navy", None, 0.0)
    assert draw[0].tobytes() != draw[1].tobytes()
    assert dominant_colour_name(draw[0]) == dominant_colour_name(draw[1]) == dominant_colour_name(plain) == "red"


def test_dominant_colour_is_read_from_pixels():
    rng = np.random.default_rng(0)
    signatures = shop.brand_signatures(36, seed=4)  # every emblem, pattern and hardware on the body
    hits = 0
    for i, name in enumerate(drawing.COLOUR_NAMES * 3):
        other = drawing.COLOUR_NAMES[(i + 3) % len(drawing.COLOUR_NAMES)]
        img = drawing.draw_product(
            rng, 64, drawing.CATEGORIES[i % len(drawing.CATEGORIES)], name, other, signatures[i], 0.08, distractor=True
        )
        hits += dominant_colour_name(img) == name
    assert hits >= 0.9 * 36


def test_rerun_keeps_unchanged_files_and_prunes_stale_ones(tmp_path):
    cfg = SyntheticShop(n_brands=4)
    shop.generate_shop(cfg, 40, 4, tmp_path)
    first = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    shop.generate_shop(cfg, 40, 4, tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == first  # identical bytes are not rewritten
    shop.generate_shop(cfg, 30, 4, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} < set(first)  # products 30..39 pruned
