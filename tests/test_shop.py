"""The synthetic shop: deterministic, unbalanced as set, and brands that differ in pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from brandcap import shop
from brandcap.params import SyntheticShop


def files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_same_seed_same_table_and_image_bytes_other_seed_differs(tmp_path):
    cfg = SyntheticShop(n_brands=8)
    a = shop.generate_shop(cfg, 120, seed=4, shop_dir=tmp_path / "a")
    b = shop.generate_shop(cfg, 120, seed=4, shop_dir=tmp_path / "b")
    c = shop.generate_shop(cfg, 120, seed=5, shop_dir=tmp_path / "c")
    assert list(a.columns) == shop.DBQ_COLUMNS and len(a) == 120
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
    words = [w.casefold() for n in names for w in n.split() if w not in {"&"} and w not in shop._PREFIXES + shop._PARTNERS]
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


def test_signatures_differ_between_brands_in_pixels(tmp_path):
    sigs = shop.brand_signatures(40, seed=4)
    assert len(set(sigs)) == 40
    cfg = SyntheticShop(n_brands=6, signature_visibility=1.0, noise=0.08, placeholder_rate=0, broken_images=0)
    frame = shop.generate_shop(cfg, 180, 4, tmp_path)
    sigs = dict(zip(shop.brand_names(6, 4), shop.brand_signatures(6, 4)))
    corner_means: dict[str, list[np.ndarray]] = {}
    for brand, url in zip(frame.brand, frame.imageurl):
        with Image.open(url.removeprefix("file:")) as img:
            # the model sees 56 px: the signature must survive that resize
            small = img.convert("RGB").resize((56, 56), Image.Resampling.BICUBIC)
        assert shop.dominant_colour_name(small) == sigs[brand].primary
        arr = np.asarray(small, dtype=np.float32)
        sig = sigs[brand]
        ys = slice(3, 14) if "top" in sig.corner else slice(42, 53)
        xs = slice(3, 14) if "left" in sig.corner else slice(42, 53)
        corner_means.setdefault(brand, []).append(arr[ys, xs].reshape(-1, 3).mean(axis=0))
    means = {b: np.mean(v, axis=0) for b, v in corner_means.items()}
    brands = list(means)
    for i, a in enumerate(brands):
        for b in brands[i + 1:]:
            if sigs[a].secondary != sigs[b].secondary:
                assert np.abs(means[a] - means[b]).max() > 25, (a, b)


def test_without_signature_a_brand_has_no_fixed_colour(tmp_path):
    cfg = SyntheticShop(n_brands=2, zipf_exponent=0, signature_visibility=0.0, placeholder_rate=0, broken_images=0)
    frame = shop.generate_shop(cfg, 60, 4, tmp_path)
    colours = {shop.dominant_colour_name(Image.open(u.removeprefix("file:"))) for u in frame.imageurl[frame.brand == frame.brand.iloc[0]]}
    assert len(colours) >= 5


def test_dominant_colour_is_read_from_pixels():
    rng = np.random.default_rng(0)
    hits = 0
    for i, name in enumerate(shop.COLOUR_NAMES * 3):
        other = shop.COLOUR_NAMES[(i + 3) % len(shop.COLOUR_NAMES)]
        img = shop.draw_product(rng, 64, shop.CATEGORIES[i % len(shop.CATEGORIES)], name, other, "star", "top-left", 0.08)
        hits += shop.dominant_colour_name(img) == name
    assert hits >= 0.9 * 36


def test_rerun_keeps_unchanged_files_and_prunes_stale_ones(tmp_path):
    cfg = SyntheticShop(n_brands=4)
    shop.generate_shop(cfg, 40, 4, tmp_path)
    first = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    shop.generate_shop(cfg, 40, 4, tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == first  # identical bytes are not rewritten
    shop.generate_shop(cfg, 30, 4, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} < set(first)  # products 30..39 pruned
