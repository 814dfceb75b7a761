"""The synthetic world's visual vocabulary and how a product photo is drawn from it.

    from brandcap.sim.drawing import CATEGORIES, BrandSignature, draw_product
    image = draw_product(rng, 64, CATEGORIES[0], "red", "navy", BrandSignature("star", "centre", "dots", "studs"), noise=0.08)

What a product photo can show: a category's silhouette (`CATEGORIES`) in a body and a trim colour
from the palette (`brandcap.sim.colours`), and marks: an emblem shape (`EMBLEMS`) at a placement
(`PLACEMENTS`), a pattern over the body (`PATTERNS`), a hardware detail (`HARDWARE`) in a metal,
and maybe a mark of no brand (`DISTRACTORS`); pixel noise on top. Which combination of marks is
which brand is the shop's business (`brandcap.sim.shop`), not this module's: the pretrained
stand-in (`brandcap.sim.standin`) learns this vocabulary without ever being told a brand, and
`pretrained/tiny-internvl/recipe.json` records this file's sha256, so a change here fails a test
until the stand-in is made again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from brandcap.sim.colours import PRODUCT_PALETTE

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
