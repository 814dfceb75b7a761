"""The synthetic shop: a product table in the DBQ schema and one drawn image per product.

    from brandcap.shop import generate_shop
    frame = generate_shop(params.data.synthetic, n_products=1500, seed=4, shop_dir=Path("data/raw/shop"))

Stands in for a real product-price dataset (DBQ/My.Theresa...) so the whole study runs
offline in minutes. Brands have Zipf-like frequencies; each brand has a visual signature
that a tiny model can learn at 56x56 pixels: a two-colour palette on the product (body +
trim) and an emblem (circle, triangle, star, stripes, checks, ...) in a fixed corner. With
probability `1 - signature_visibility` a product gets a random non-signature look instead.
Everything is a function of the seed: same seed, byte-identical table and images.

`dominant_colour_name(image)` names the product's main colour from the pixels; the simulated
VLM and the general set's reference captions use it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from brandcap.atomic import write_bytes
from brandcap.params import SyntheticShop

# Seed streams keep the catalog, the general set and the tiny model's pretraining images apart.
STREAM_CATALOG, STREAM_GENERAL, STREAM_PRETRAIN = 1, 2, 3

DBQ_COLUMNS = [
    "website_name", "competence_date", "country_code", "currency_code", "brand",
    "category1_code", "category2_code", "category3_code", "product_code", "title",
    "itemurl", "imageurl", "full_price", "price", "full_price_eur", "price_eur", "flg_discount",
]
PLACEHOLDER_URL = "N.A."

# Well separated in RGB so the name survives noise and resizing.
NAMED_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 40),
    "blue": (40, 90, 215),
    "navy": (25, 30, 95),
    "green": (35, 140, 60),
    "yellow": (240, 205, 40),
    "orange": (240, 125, 25),
    "purple": (125, 50, 165),
    "pink": (240, 125, 180),
    "brown": (115, 70, 35),
    "black": (25, 25, 25),
    "teal": (20, 150, 150),
    "grey": (130, 130, 130),
}
COLOUR_NAMES = list(NAMED_COLOURS)
_COLOUR_ARRAY = np.array([NAMED_COLOURS[n] for n in COLOUR_NAMES], dtype=np.float32)

EMBLEMS = ["circle", "triangle", "star", "stripes", "checks", "square", "diamond", "cross"]
CORNERS = ["top-left", "top-right", "bottom-left", "bottom-right"]

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
    primary: str  # colour name of the product body
    secondary: str  # colour name of the trim and the emblem
    emblem: str
    corner: str


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
    for attempt in range(100 * n_brands):
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
    """One distinct (primary, secondary, emblem, corner) per brand, shuffled by the seed."""
    rng = np.random.default_rng([seed, 0x516])
    combos = []
    n_col = len(COLOUR_NAMES)
    for i in range(n_col * len(EMBLEMS)):
        primary = i % n_col
        # the trim colour walks the palette at a different speed, so pairs rarely repeat
        secondary = (primary + 1 + (i // n_col) * 5) % n_col
        if secondary == primary:
            secondary = (secondary + 1) % n_col
        combos.append((primary, secondary, EMBLEMS[(i + i // n_col) % len(EMBLEMS)], CORNERS[i % len(CORNERS)]))
    order = rng.permutation(n_col)  # which colour the most frequent brand gets
    out = []
    for b in range(n_brands):
        p, s, emblem, corner = combos[b % len(combos)]
        out.append(BrandSignature(COLOUR_NAMES[order[p]], COLOUR_NAMES[order[s]], emblem, corner))
    return out


def zipf_weights(n_brands: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n_brands + 1) ** exponent
    return w / w.sum()


# ----------------------------------------------------------------------------- drawing
def _draw_emblem(d: ImageDraw.ImageDraw, emblem: str, box: tuple[float, float, float, float], colour) -> None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if emblem == "circle":
        d.ellipse(box, fill=colour)
    elif emblem == "triangle":
        d.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    elif emblem == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.42
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        d.polygon(pts, fill=colour)
    elif emblem == "stripes":
        step = (y1 - y0) / 5
        for k in (0, 2, 4):
            d.rectangle([x0, y0 + k * step, x1, y0 + (k + 1) * step - 0.01], fill=colour)
    elif emblem == "checks":
        step = (x1 - x0) / 4
        for i in range(4):
            for j in range(4):
                if (i + j) % 2 == 0:
                    d.rectangle([x0 + i * step, y0 + j * step, x0 + (i + 1) * step - 0.01, y0 + (j + 1) * step - 0.01], fill=colour)
    elif emblem == "square":
        d.rectangle(box, fill=colour)
    elif emblem == "diamond":
        d.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    elif emblem == "cross":
        t = r * 0.4
        d.rectangle([cx - t, y0, cx + t, y1], fill=colour)
        d.rectangle([x0, cy - t, x1, cy + t], fill=colour)
    else:
        raise ValueError(f"unknown emblem {emblem!r}")


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int = 12) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def draw_product(
    rng: np.random.Generator,
    size: int,
    category: Category,
    body_colour: str,
    trim_colour: str,
    emblem: str | None,
    corner: str,
    noise: float,
) -> Image.Image:
    """A product photo: light background, the category's silhouette, optional corner emblem, noise."""
    bg = tuple(int(v) for v in rng.integers(222, 250, size=3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    s = size * float(rng.uniform(0.30, 0.36))
    cx = size / 2 + float(rng.uniform(-0.05, 0.05)) * size
    cy = size / 2 + float(rng.uniform(-0.05, 0.05)) * size
    category.draw(d, (cx, cy, s), _jitter(rng, NAMED_COLOURS[body_colour]), _jitter(rng, NAMED_COLOURS[trim_colour]))
    if emblem:
        e = size * 0.25  # ~14 px after the model's 56 px resize: big enough to learn
        m = size * 0.03
        x0 = m if "left" in corner else size - m - e
        y0 = m if "top" in corner else size - m - e
        _draw_emblem(d, emblem, (x0, y0, x0 + e, y0 + e), _jitter(rng, NAMED_COLOURS[trim_colour], 6))
    if noise > 0:
        arr = np.asarray(img, dtype=np.float32)
        arr += rng.normal(0.0, noise * 255.0, size=arr.shape).astype(np.float32)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return img


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def dominant_colour_name(img: Image.Image) -> str:
    """Name of the most common named colour among the non-background pixels."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    background = np.median(border, axis=0)
    pixels = arr.reshape(-1, 3)
    foreground = pixels[np.linalg.norm(pixels - background, axis=1) > 60]
    if len(foreground) == 0:
        foreground = pixels
    dist = ((foreground[:, None, :] - _COLOUR_ARRAY[None, :, :]) ** 2).sum(axis=2)
    counts = np.bincount(dist.argmin(axis=1), minlength=len(COLOUR_NAMES))
    return COLOUR_NAMES[int(counts.argmax())]


def artifact_path(path: str | Path) -> str:
    """A path as stored inside artifacts: relative to the cwd when it lies under it."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


# ----------------------------------------------------------------------------- the shop
def _broken_image_bytes(kind: int, good_png: bytes) -> bytes:
    if kind % 2 == 0:
        return good_png[: len(good_png) // 2]  # truncated PNG
    return b"<!DOCTYPE html><html><body>Image not available</body></html>\n"


def generate_shop(shop: SyntheticShop, n_products: int, seed: int, shop_dir: str | Path) -> pd.DataFrame:
    """Write one PNG per product into shop_dir and return the product table (DBQ columns)."""
    shop_dir = Path(shop_dir)
    shop_dir.mkdir(parents=True, exist_ok=True)
    names = brand_names(shop.n_brands, seed)
    signatures = brand_signatures(shop.n_brands, seed)
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

    for stale in shop_dir.glob(".*.tmp"):  # left by a killed run
        stale.unlink(missing_ok=True)
    url_dir = artifact_path(shop_dir)
    rows = []
    written = set()
    for i in range(n_products):
        b = int(brand_idx[i])
        prng = np.random.default_rng([seed, STREAM_CATALOG, i])
        category = CATEGORIES[int(prng.integers(len(CATEGORIES)))]
        sig = signatures[b]
        if prng.random() < shop.signature_visibility:
            body, trim, emblem, corner = sig.primary, sig.secondary, sig.emblem, sig.corner
        else:
            body, trim = prng.choice(COLOUR_NAMES, size=2, replace=False)
            emblem, corner = None, CORNERS[0]
        img = draw_product(prng, shop.image_size, category, str(body), str(trim), emblem, corner, shop.noise)
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
    """Yield (image, colour name, category) of signature-free products (no emblem, random colours)."""
    for i in range(n):
        prng = np.random.default_rng([seed, stream, i])
        category = CATEGORIES[int(prng.integers(len(CATEGORIES)))]
        body, trim = prng.choice(COLOUR_NAMES, size=2, replace=False)
        img = draw_product(prng, shop.image_size, category, str(body), str(trim), None, CORNERS[0], shop.noise)
        yield img, dominant_colour_name(img), category
