"""The synthetic shop: a product table in the DBQ schema and one drawn image per product.

    from brandcap.sim.shop import generate_shop
    frame = generate_shop(params.data.synthetic, n_products=1500, seed=4, shop_dir=Path("data/raw/shop"))

Stands in for a real product-price dataset (DBQ/My.Theresa...) so the whole study runs
offline in minutes. Brands have Zipf-like frequencies. Like real brands, they are told apart
by their marks, not by the product's colour:
- every product's body, trim and mark colours are drawn at random, independently of the brand
  (unless `house_colour_rate` says otherwise), from the same palette; the category (silhouette) is
  independent of the brand too;
- each brand has a signature of four marks (`BrandSignature`): an emblem shape (circle, ring,
  star, an "H" monogram, ...), where it sits on the product (centre, upper-left, ...), a
  monogram-like pattern repeated over the body (dots, pinstripes, tiny crosses, ...) and a
  hardware detail (studs, a buckle, a ring) in gold or silver. Two brands differ in at least
  two of the four, and no emblem is used by more brands than needed;
- with probability `house_colour_rate` (0 by default) a product's body takes its brand's house
  colour (`house_colours`) instead of a random one: a cue colour statistics do reveal, for
  profiles that need a world a small model learns fast (configs/learning.yaml);
- with probability `signature_visibility` a product carries its brand's marks, otherwise it
  is a plain product; with probability `distractor_rate` it also carries a mark of no brand
  (a random blob or a label); `noise` adds pixel noise to every image.
So colour statistics (and pixel lookups, see `brandcap.evaluation.baselines`) cannot reveal the brand,
while the marks stay readable at 64 px. Everything is a function of the seed: same seed,
byte-identical table and images.

`brandcap.sim.colours.dominant_colour_name(image)` names the product's main colour from the
pixels; the general set's and pretraining's brand-free captions use it.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd

from brandcap.config.params import SyntheticShop
from brandcap.files.atomic import clear_owned_folder_of_temporaries, write_bytes
from brandcap.files.images import png_bytes
from brandcap.files.product_table import DBQ_COLUMNS, artifact_path
from brandcap.sim.colours import dominant_colour_name
from brandcap.sim.drawing import (
    CATEGORIES,
    COLOUR_NAMES,
    EMBLEMS,
    HARDWARE,
    PATTERNS,
    PLACEMENTS,
    BrandSignature,
    Category,
    draw_product,
)

# Seed streams keep the catalog, the general set (forgetting probe), the tiny model's pretraining images
# and the generic training set (train.general_mix) apart.
STREAM_CATALOG, STREAM_GENERAL, STREAM_PRETRAIN, STREAM_GENERAL_TRAIN = 1, 2, 3, 4

PLACEHOLDER_URL = "N.A."


_SYLLABLES = [
    "ma",
    "ri",
    "lo",
    "ve",
    "sa",
    "no",
    "ta",
    "li",
    "ber",
    "cal",
    "dor",
    "fen",
    "gia",
    "mon",
    "pel",
    "ros",
    "vin",
    "zan",
    "cor",
    "del",
    "tes",
    "var",
    "lun",
    "bel",
]
_PREFIXES = ["Maison", "Atelier", "Casa", "Studio", "Hôtel", "Maison", "Officine", "Ateliers"]
_SURNAMES = [
    "Éclat",
    "Rossi",
    "Brunel",
    "Lévêque",
    "Moretti",
    "Dufresne",
    "Ferrand",
    "Calloway",
    "Marchetti",
    "Östberg",
    "Navarro",
    "Thévenin",
    "Bianchi",
    "Ashby",
    "Céleste",
    "Okafor",
]
_PARTNERS = ["Figli", "Fils", "Sons", "Co", "Frères", "Hart", "Moss", "Lane"]


_MATERIALS = ["leather", "suede", "cotton", "wool", "canvas", "satin", "denim", "nylon"]
_ADJECTIVES = ["Mini", "Classic", "Oversized", "Cropped", "Embellished", "Logo", "Quilted", "Signature"]


# ----------------------------------------------------------------------------- brands
def brand_names(n_brands: int, seed: int) -> list[str]:
    """Invented fashion-like names: single words, 'Maison Éclat'-style, 'Rossi & Figli'-style."""
    rng = np.random.default_rng([seed, 0xB4A7D])
    names: list[str] = []
    used_words: set[str] = set()  # no word shared by two brands, so a mention is never ambiguous
    surnames = list(rng.permutation(_SURNAMES))
    for _ in range(100 * n_brands):
        if len(names) == n_brands:
            break
        kind = len(names) % 4
        if kind in (0, 1) and surnames:
            surname = str(surnames.pop())
            extra = str(rng.choice(_PREFIXES if kind == 0 else _PARTNERS))
            name = f"{extra} {surname}" if kind == 0 else f"{surname} & {extra}"
            words = {surname.casefold()}  # prefixes and partners may repeat
        else:
            word = "".join(rng.choice(_SYLLABLES) for _ in range(int(rng.integers(2, 4))))
            name = word.capitalize() if kind != 3 else word.upper()
            words = {word.casefold()}
        if not words & used_words:
            used_words |= words
            names.append(name)
    if len(names) < n_brands:
        raise ValueError(f"cannot invent {n_brands} distinct brand names; lower data.synthetic.n_brands")
    return names


def brand_signatures(n_brands: int, seed: int) -> list[BrandSignature]:
    """Distinct mark combinations, shuffled by the seed: any two brands differ in at least two of
    the four marks (one where no more such combinations exist), and each emblem serves at most
    ceil(n_brands / len(EMBLEMS)) brands, so the emblem alone tells most brands apart."""
    rng = np.random.default_rng([seed, 0x516])
    combos = list(itertools.product(EMBLEMS, PLACEMENTS, PATTERNS, HARDWARE))
    combos = [combos[i] for i in rng.permutation(len(combos))]
    per_emblem = math.ceil(n_brands / len(EMBLEMS))
    chosen: list[tuple[str, str, str, str]] = []
    for min_differences in (2, 1):
        for combo in combos:
            if len(chosen) == n_brands:
                break
            emblem_uses = sum(c[0] == combo[0] for c in chosen)
            if emblem_uses < per_emblem and all(
                sum(x != y for x, y in zip(combo, c)) >= min_differences for c in chosen
            ):
                chosen.append(combo)
    if len(chosen) < n_brands:
        raise ValueError(
            f"data.synthetic.n_brands={n_brands}: only {len(chosen)} distinct brand signatures exist; lower it"
        )
    return [BrandSignature(*combo) for combo in chosen]


def house_colours(n_brands: int, seed: int) -> list[str]:
    """Each brand's house colour (`SyntheticShop.house_colour_rate`): distinct while the palette
    lasts, then reused in the same seeded order."""
    order = np.random.default_rng([seed, 0xC0105]).permutation(len(COLOUR_NAMES))
    return [str(COLOUR_NAMES[order[b % len(order)]]) for b in range(n_brands)]


def _body_and_trim(prng: np.random.Generator, shop: SyntheticShop, house_colour: str) -> tuple[str, str]:
    """A product's body and trim colours: random and distinct, the body the brand's house colour at
    `house_colour_rate` (no extra random draw when the rate is 0, so the default world is unchanged)."""
    body, trim = (str(c) for c in prng.choice(COLOUR_NAMES, size=2, replace=False))
    if shop.house_colour_rate > 0 and prng.random() < shop.house_colour_rate and body != house_colour:
        body, trim = house_colour, (body if trim == house_colour else trim)
    return body, trim


def product_title(rng: np.random.Generator, category: Category) -> str:
    """A product title in the shop's style: 'Quilted leather tote bag'."""
    return f"{rng.choice(_ADJECTIVES)} {rng.choice(_MATERIALS)} {category.noun}".replace("pair of ", "")


def zipf_weights(n_brands: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n_brands + 1) ** exponent
    return w / w.sum()


# ----------------------------------------------------------------------------- the shop
def _broken_image_bytes(kind: int, good_png: bytes) -> bytes:
    if kind % 2 == 0:
        return good_png[: len(good_png) // 2]  # truncated PNG
    return b"<!DOCTYPE html><html><body>Image not available</body></html>\n"


def _brands_and_defects(shop: SyntheticShop, n_products: int, seed: int) -> tuple[np.ndarray, set[int], list[int]]:
    """Each product's brand index, the products with a placeholder URL and those with a broken image."""
    rng = np.random.default_rng([seed, STREAM_CATALOG])

    # every brand at least once (when there is room), the rest Zipf-distributed
    n_forced = min(shop.n_brands, n_products)
    drawn = rng.choice(shop.n_brands, size=n_products - n_forced, p=zipf_weights(shop.n_brands, shop.zipf_exponent))
    brand_idx = rng.permutation(np.concatenate([np.arange(n_forced), drawn]).astype(int))

    counts = np.bincount(brand_idx, minlength=shop.n_brands)
    spare = [i for i in range(n_products) if counts[brand_idx[i]] > 1]  # never the only product of a brand
    n_placeholder = max(1, round(shop.placeholder_rate * n_products)) if shop.placeholder_rate > 0 else 0
    n_broken = shop.broken_images
    chosen = rng.permutation(spare)[: n_placeholder + n_broken] if spare else np.array([], dtype=int)
    placeholder = set(int(i) for i in chosen[:n_placeholder])
    broken = [int(i) for i in chosen[n_placeholder:]]
    return brand_idx, placeholder, broken


def generate_shop(shop: SyntheticShop, n_products: int, seed: int, shop_dir: str | Path) -> pd.DataFrame:
    """Write one PNG per product into shop_dir and return the product table (DBQ columns)."""
    shop_dir = Path(shop_dir)
    shop_dir.mkdir(parents=True, exist_ok=True)
    names = brand_names(shop.n_brands, seed)
    signatures = brand_signatures(shop.n_brands, seed)
    houses = house_colours(shop.n_brands, seed)
    brand_idx, placeholder, broken = _brands_and_defects(shop, n_products, seed)

    clear_owned_folder_of_temporaries(shop_dir)  # left by a killed run
    url_dir = artifact_path(shop_dir)
    rows = []
    written = set()
    for i in range(n_products):
        b = int(brand_idx[i])
        prng = np.random.default_rng([seed, STREAM_CATALOG, i])
        category = CATEGORIES[int(prng.integers(len(CATEGORIES)))]
        body, trim = _body_and_trim(prng, shop, houses[b])
        signature = signatures[b] if prng.random() < shop.signature_visibility else None
        distractor = bool(prng.random() < shop.distractor_rate)
        img = draw_product(prng, shop.image_size, category, body, trim, signature, shop.noise, distractor)
        code = f"P{seed % 1000:03d}{i:06d}"
        data = png_bytes(img)
        if i in broken:
            data = _broken_image_bytes(broken.index(i), data)
        if i not in placeholder:
            _write_if_changed(shop_dir / f"{code}.png", data)
            written.add(f"{code}.png")
        full_price = float(np.round(np.exp(prng.normal(6.0, 0.7)), -1) + 0.0)
        discounted = bool(prng.random() < 0.3)
        price = float(np.round(full_price * (0.7 if discounted else 1.0), 2))
        rows.append(
            {
                "website_name": "Synthetic Shop",
                "competence_date": "2024-01-15",
                "country_code": "FRA",
                "currency_code": "EUR",
                "brand": names[b],
                "category1_code": category.category1,
                "category2_code": category.category2,
                "category3_code": category.category3,
                "product_code": code,
                "title": product_title(prng, category),
                "itemurl": f"https://shop.example/products/{code}",
                "imageurl": PLACEHOLDER_URL if i in placeholder else f"file:{url_dir}/{code}.png",
                "full_price": full_price,
                "price": price,
                "full_price_eur": full_price,
                "price_eur": price,
                "flg_discount": int(discounted),
            }
        )
    for stale in shop_dir.glob("*.png"):  # images of an earlier, larger or other-seeded shop
        if stale.name not in written:
            stale.unlink()
    return pd.DataFrame(rows, columns=DBQ_COLUMNS)


def _write_if_changed(path: Path, data: bytes) -> None:
    # Rewriting identical bytes would only bump mtimes (and make Snakemake rerun downstream).
    if path.exists() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    write_bytes(path, data)


def generic_product_images(n: int, shop: SyntheticShop, seed: int, stream: int = STREAM_GENERAL):
    """Yield (image, colour name, category) of brand-free products: random colours, no brand
    marks, a mark of no brand at the shop's distractor rate (as on the catalog's products)."""
    for i in range(n):
        prng = np.random.default_rng([seed, stream, i])
        category = CATEGORIES[int(prng.integers(len(CATEGORIES)))]
        body, trim = prng.choice(COLOUR_NAMES, size=2, replace=False)
        distractor = bool(prng.random() < shop.distractor_rate)
        img = draw_product(prng, shop.image_size, category, str(body), str(trim), None, shop.noise, distractor)
        yield img, dominant_colour_name(img), category
