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
So colour statistics (and pixel lookups, see `brandcap.stages.baselines`) cannot reveal the brand,
while the marks stay readable at 64 px. Everything is a function of the seed: same seed,
byte-identical table and images.

`brandcap.sim.colours.dominant_colour_name(image)` names the product's main colour from the
pixels; the general set's and pretraining's brand-free captions use it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from brandcap.atomic import clear_owned_folder_of_temporaries, write_bytes
from brandcap.images import png_bytes
from brandcap.params import SyntheticShop
from brandcap.records import DBQ_COLUMNS, artifact_path
from brandcap.sim.colours import PRODUCT_PALETTE, dominant_colour_name

# Seed streams keep the catalog, the general set (forgetting probe), the tiny model's pretraining images
# and the generic training set (train.general_mix) apart.
STREAM_CATALOG, STREAM_GENERAL, STREAM_PRETRAIN, STREAM_GENERAL_TRAIN = 1, 2, 3, 4

PLACEHOLDER_URL = "N.A."

# The colours products are drawn in (their home, with the colour naming, is brandcap.sim.colours).
NAMED_COLOURS = PRODUCT_PALETTE.colours
COLOUR_NAMES = PRODUCT_PALETTE.names

EMBLEMS = ["circle", "ring", "triangle", "star", "square", "diamond", "cross", "chevron", "monogram-h", "bars"]
# Emblem centre relative to the product centre, in units of the product's half-size.
PLACEMENTS: dict[str, tuple[float, float]] = {
    "centre": (0.0, 0.05), "upper-left": (-0.5, -0.45), "upper-right": (0.5, -0.45),
    "lower-left": (-0.5, 0.5), "lower-right": (0.5, 0.5),
}
PATTERNS = ["plain", "dots", "pinstripes", "diagonal", "crosses"]
HARDWARE = ["none", "studs", "buckle", "ring"]
METALS = {"gold": (212, 175, 55), "silver": (200, 200, 208)}
DISTRACTORS = ["blob", "label"]

_SYLLABLES = ["ma", "ri", "lo", "ve", "sa", "no", "ta", "li", "ber", "cal", "dor", "fen",
              "gia", "mon", "pel", "ros", "vin", "zan", "cor", "del", "tes", "var", "lun", "bel"]
_PREFIXES = ["Maison", "Atelier", "Casa", "Studio", "Hôtel", "Maison", "Officine", "Ateliers"]
_SURNAMES = ["Éclat", "Rossi", "Brunel", "Lévêque", "Moretti", "Dufresne", "Ferrand", "Calloway",
             "Marchetti", "Östberg", "Navarro", "Thévenin", "Bianchi", "Ashby", "Céleste", "Okafor"]
_PARTNERS = ["Figli", "Fils", "Sons", "Co", "Frères", "Hart", "Moss", "Lane"]


@dataclass(frozen=True)
class Category:
    category1: str
    category2: str
    category3: str
    noun: str  # how a caption or title names it
    draw: Callable[[ImageDraw.ImageDraw, tuple[float, float, float], tuple, tuple], None]


@dataclass(frozen=True)
class BrandSignature:
    emblem: str  # shape of the logo (EMBLEMS)
    placement: str  # where the logo sits on the product (PLACEMENTS)
    pattern: str  # monogram-like pattern repeated over the body (PATTERNS)
    hardware: str  # metal detail (HARDWARE)


# ----------------------------------------------------------------------------- silhouettes
# Each drawer gets (cx, cy, s): centre and half-size in pixels, a body colour and a trim colour.
def _bag(d, box, body, trim):
    cx, cy, s = box
    w = max(1.0, s * 0.16)
    d.arc([cx - s * 0.45, cy - s * 0.95, cx + s * 0.45, cy - s * 0.05], 180, 360, fill=trim, width=int(w) + 1)
    d.rectangle([cx - s * 0.8, cy - s * 0.4, cx + s * 0.8, cy + s * 0.7], fill=body)
    d.rectangle([cx - s * 0.8, cy - s * 0.4, cx + s * 0.8, cy - s * 0.2], fill=trim)


def _shoe(d, box, body, trim):
    cx, cy, s = box
    d.polygon([(cx - s * 0.9, cy + s * 0.45), (cx - s * 0.9, cy - s * 0.7), (cx - s * 0.25, cy - s * 0.7),
               (cx, cy - s * 0.15), (cx + s * 0.9, cy - s * 0.05), (cx + s * 0.9, cy + s * 0.45)], fill=body)
    d.rectangle([cx - s * 0.9, cy + s * 0.45, cx + s * 0.9, cy + s * 0.6], fill=trim)


def _dress(d, box, body, trim):
    cx, cy, s = box
    d.polygon([(cx - s * 0.3, cy - s * 0.9), (cx + s * 0.3, cy - s * 0.9), (cx + s * 0.35, cy - s * 0.2),
               (cx + s * 0.8, cy + s * 0.9), (cx - s * 0.8, cy + s * 0.9), (cx - s * 0.35, cy - s * 0.2)], fill=body)
    d.rectangle([cx - s * 0.36, cy - s * 0.3, cx + s * 0.36, cy - s * 0.12], fill=trim)


def _jacket(d, box, body, trim):
    cx, cy, s = box
    d.polygon([(cx - s * 0.5, cy - s * 0.85), (cx + s * 0.5, cy - s * 0.85), (cx + s * 0.95, cy + s * 0.3),
               (cx + s * 0.6, cy + s * 0.35), (cx + s * 0.55, cy + s * 0.9), (cx - s * 0.55, cy + s * 0.9),
               (cx - s * 0.6, cy + s * 0.35), (cx - s * 0.95, cy + s * 0.3)], fill=body)
    d.line([cx, cy - s * 0.85, cx, cy + s * 0.9], fill=trim, width=max(1, int(s * 0.14)))


def _hat(d, box, body, trim):
    cx, cy, s = box
    d.ellipse([cx - s * 0.95, cy + s * 0.05, cx + s * 0.95, cy + s * 0.5], fill=body)
    d.rectangle([cx - s * 0.5, cy - s * 0.6, cx + s * 0.5, cy + s * 0.25], fill=body)
    d.rectangle([cx - s * 0.5, cy - s * 0.05, cx + s * 0.5, cy + s * 0.12], fill=trim)


def _watch(d, box, body, trim):
    cx, cy, s = box
    d.rectangle([cx - s * 0.18, cy - s * 0.95, cx + s * 0.18, cy + s * 0.95], fill=trim)
    d.ellipse([cx - s * 0.72, cy - s * 0.72, cx + s * 0.72, cy + s * 0.72], fill=body)  # the case dominates
    d.ellipse([cx - s * 0.3, cy - s * 0.3, cx + s * 0.3, cy + s * 0.3], fill=(235, 235, 230))


CATEGORIES = [
    Category("WOMEN", "BAGS", "TOTE BAGS", "tote bag", _bag),
    Category("WOMEN", "SHOES", "SNEAKERS", "pair of sneakers", _shoe),
    Category("WOMEN", "CLOTHING", "DRESSES", "dress", _dress),
    Category("WOMEN", "CLOTHING", "JACKETS", "jacket", _jacket),
    Category("WOMEN", "ACCESSORIES", "HATS", "hat", _hat),
    Category("WOMEN", "ACCESSORIES", "WATCHES", "watch", _watch),
]
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
            if emblem_uses < per_emblem and all(sum(x != y for x, y in zip(combo, c)) >= min_differences for c in chosen):
                chosen.append(combo)
    if len(chosen) < n_brands:
        raise ValueError(f"data.synthetic.n_brands={n_brands}: only {len(chosen)} distinct brand signatures exist; lower it")
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


def zipf_weights(n_brands: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n_brands + 1) ** exponent
    return w / w.sum()


# ----------------------------------------------------------------------------- drawing
Box = tuple[float, float, float, float]


def _draw_emblem(d: ImageDraw.ImageDraw, emblem: str, box: Box, colour) -> None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    t = r * 0.38  # stroke width of the line-drawn emblems
    if emblem == "circle":
        d.ellipse(box, fill=colour)
    elif emblem == "ring":
        d.ellipse(box, outline=colour, width=max(2, round(t)))
    elif emblem == "triangle":
        d.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    elif emblem == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.42
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        d.polygon(pts, fill=colour)
    elif emblem == "square":
        d.rectangle(box, fill=colour)
    elif emblem == "diamond":
        d.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    elif emblem == "cross":
        d.rectangle([cx - t / 2, y0, cx + t / 2, y1], fill=colour)
        d.rectangle([x0, cy - t / 2, x1, cy + t / 2], fill=colour)
    elif emblem == "chevron":
        d.polygon([(x0, y0), (cx, y1 - 2 * t), (x1, y0), (x1, y0 + 1.6 * t), (cx, y1), (x0, y0 + 1.6 * t)], fill=colour)
    elif emblem == "monogram-h":
        d.rectangle([x0, y0, x0 + t, y1], fill=colour)
        d.rectangle([x1 - t, y0, x1, y1], fill=colour)
        d.rectangle([x0, cy - t / 2, x1, cy + t / 2], fill=colour)
    elif emblem == "bars":
        d.rectangle([x0, y0 + 0.15 * r, x1, y0 + 0.15 * r + t], fill=colour)
        d.rectangle([x0, y1 - 0.15 * r - t, x1, y1 - 0.15 * r], fill=colour)
    else:
        raise ValueError(f"unknown emblem {emblem!r}")


def _pattern_mask(pattern: str, size: int, origin: tuple[int, int]) -> np.ndarray:
    """Boolean (size, size) mask of a pattern tiled from origin (so it moves with the product)."""
    yy, xx = np.mgrid[0:size, 0:size]
    step = max(4, round(size / 12))  # 5 px at 64: one line or dot per 6-7 px after the model's resize
    x, y = (xx - origin[0]) % step, (yy - origin[1]) % step
    if pattern == "plain":
        return np.zeros((size, size), bool)
    if pattern == "dots":
        return (x < 2) & (y < 2)
    if pattern == "pinstripes":
        return x == 0
    if pattern == "diagonal":
        return (xx - origin[0] + yy - origin[1]) % step == 0
    if pattern == "crosses":  # a tiny repeated "x", like a monogram canvas
        return ((x == y) | (x + y == 2)) & (x < 3) & (y < 3)
    raise ValueError(f"unknown pattern {pattern!r}")


def _shade(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """A darker version of a light colour, a lighter version of a dark one: the pattern's ink."""
    if sum(colour) > 3 * 90:
        return tuple(int(c * 0.5) for c in colour)
    return tuple(int(c + (255 - c) * 0.5) for c in colour)


def _contrasting_colour(rng: np.random.Generator, body: str) -> tuple[int, int, int]:
    """A random palette colour far from the body colour (the brand does not choose it)."""
    far = [n for n in COLOUR_NAMES if np.linalg.norm(np.subtract(NAMED_COLOURS[n], NAMED_COLOURS[body])) > 150]
    return NAMED_COLOURS[str(rng.choice(far))]


def _draw_hardware(d: ImageDraw.ImageDraw, hardware: str, box: tuple[float, float, float], metal) -> None:
    cx, cy, s = box
    r = max(1.5, s * 0.09)
    if hardware == "studs":  # three studs in a row below the centre
        for k in (-1, 0, 1):
            x = cx + k * s * 0.35
            d.ellipse([x - r, cy + s * 0.3 - r, x + r, cy + s * 0.3 + r], fill=metal)
    elif hardware == "buckle":
        d.rectangle([cx - 2.2 * r, cy + s * 0.3 - 1.5 * r, cx + 2.2 * r, cy + s * 0.3 + 1.5 * r], outline=metal, width=max(1, round(r * 0.7)))
    elif hardware == "ring":
        d.ellipse([cx - 2 * r, cy - s * 0.55 - 2 * r, cx + 2 * r, cy - s * 0.55 + 2 * r], outline=metal, width=max(1, round(r * 0.7)))
    elif hardware != "none":
        raise ValueError(f"unknown hardware {hardware!r}")


def _draw_distractor(d: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    """A mark of no brand at a random spot: an irregular blob or a small label with two text lines."""
    kind = DISTRACTORS[int(rng.integers(len(DISTRACTORS)))]
    r = size * float(rng.uniform(0.06, 0.11))
    cx, cy = (float(v) for v in rng.uniform(r, size - r, size=2))
    colour = NAMED_COLOURS[str(rng.choice(COLOUR_NAMES))]
    if kind == "blob":
        n = int(rng.integers(5, 8))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = rng.uniform(0.4, 1.0, n) * r
        d.polygon([(cx + a * math.cos(t), cy + a * math.sin(t)) for a, t in zip(radii, angles)], fill=colour)
    else:
        d.rectangle([cx - r, cy - 0.6 * r, cx + r, cy + 0.6 * r], fill=(240, 240, 235), outline=colour)
        for k in (-0.2, 0.25):
            d.line([cx - 0.7 * r, cy + k * r, cx + 0.5 * r, cy + k * r], fill=colour, width=1)


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int = 12) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def draw_product(
    rng: np.random.Generator,
    size: int,
    category: Category,
    body_colour: str,
    trim_colour: str,
    signature: BrandSignature | None,
    noise: float,
    distractor: bool = False,
) -> Image.Image:
    """A product photo: light background, the category's silhouette in the given colours, the
    brand's marks when a signature is given (their colours drawn here, not by the brand), an
    optional mark of no brand, and pixel noise."""
    bg = tuple(int(v) for v in rng.integers(222, 250, size=3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    s = size * float(rng.uniform(0.30, 0.36))
    cx = size / 2 + float(rng.uniform(-0.05, 0.05)) * size
    cy = size / 2 + float(rng.uniform(-0.05, 0.05)) * size
    body = _jitter(rng, NAMED_COLOURS[body_colour])
    category.draw(d, (cx, cy, s), body, _jitter(rng, NAMED_COLOURS[trim_colour]))
    if signature is not None:
        _draw_marks(img, rng, category, signature, (cx, cy, s), body_colour, body)
    if distractor:
        _draw_distractor(d, rng, size)
    if noise > 0:
        arr = np.asarray(img, dtype=np.float32)
        arr += rng.normal(0.0, noise * 255.0, size=arr.shape).astype(np.float32)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return img


def _draw_marks(img: Image.Image, rng: np.random.Generator, category: Category, signature: BrandSignature,
                box: tuple[float, float, float], body_colour: str, body: tuple[int, int, int]) -> None:
    """The brand's pattern on the body, its hardware and its emblem at its placement."""
    size = img.size[0]
    cx, cy, s = box
    if signature.pattern != "plain":
        silhouette = Image.new("RGB", img.size, (0, 0, 0))
        category.draw(ImageDraw.Draw(silhouette), box, (255, 255, 255), (0, 0, 0))
        on_body = np.asarray(silhouette)[:, :, 1] == 255
        ink = on_body & _pattern_mask(signature.pattern, size, (round(cx), round(cy)))
        img.paste(_shade(body), mask=Image.fromarray(ink.astype(np.uint8) * 255, "L"))
    d = ImageDraw.Draw(img)
    metal = METALS[str(rng.choice(list(METALS)))]
    _draw_hardware(d, signature.hardware, box, metal)
    e = size * float(rng.uniform(0.20, 0.24))  # 13-15 px at 64, 17-20 px at the model's 84
    dx, dy = PLACEMENTS[signature.placement]
    ex, ey = cx + dx * s + float(rng.uniform(-1, 1)), cy + dy * s + float(rng.uniform(-1, 1))
    _draw_emblem(d, signature.emblem, (ex - e / 2, ey - e / 2, ex + e / 2, ey + e / 2), _contrasting_colour(rng, body_colour))


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
        rows.append({
            "website_name": "Synthetic Shop",
            "competence_date": "2024-01-15",
            "country_code": "FRA",
            "currency_code": "EUR",
            "brand": names[b],
            "category1_code": category.category1,
            "category2_code": category.category2,
            "category3_code": category.category3,
            "product_code": code,
            "title": f"{prng.choice(_ADJECTIVES)} {prng.choice(_MATERIALS)} {category.noun}".replace("pair of ", ""),
            "itemurl": f"https://shop.example/products/{code}",
            "imageurl": PLACEHOLDER_URL if i in placeholder else f"file:{url_dir}/{code}.png",
            "full_price": full_price,
            "price": price,
            "full_price_eur": full_price,
            "price_eur": price,
            "flg_discount": int(discounted),
        })
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
