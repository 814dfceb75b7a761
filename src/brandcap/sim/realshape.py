"""The synthetic shop dressed as a real catalogue (data.synthetic.real_shapes, configs/realshape.yaml).

The products, their brand marks and their brand frequencies come from the synthetic shop; this
module gives them the shapes that real product tables and photos have and the plain synthetic
world lacks (DESIGN.md, "Real shapes the code must survive"):
- brand names with punctuation, initials, ™/®, `&`, accents, digits, and one brand's name inside
  another's (`A.P.C.`, `Off-White™`, `(di)vision`, `3.1 Phillip Lim`, `Saint Laurent` and `Laurent`);
- `N.A.` in every text column (brand, title, categories, product code);
- product codes that are not safe file names (`../`, slashes, spaces, accents, 300 characters);
- photos in portrait, landscape, tall and square shapes (InternVL tiles them), as JPEG, WebP,
  palette PNG with transparency, CMYK JPEG, and a JPEG whose EXIF orientation rotates it.
The catalog stage then writes the table as a DBQ-schema CSV.gz and reads it back through the same
reader as a user's own table.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from brandcap.files.product_table import artifact_path

REAL_SHAPED_BRANDS = [
    "Saint Laurent",
    "A.P.C.",
    "Off-White™",
    "Chloé",
    "(di)vision",
    "3.1 Phillip Lim",
    "Dolce & Gabbana",
    "Laurent",
    "See by Chloé",
    "Maison Margiela",
    "MM6 Maison Margiela",
    "Moncler®",
    "Isabel Marant",
    "Isabel Marant Étoile",
    "Alaïa",
    "Comme des Garçons",
    "Y-3",
    "Acne Studios",
    "Jil Sander",
    "Bottega Veneta",
]
HOSTILE_CODES = ["../../escape", "/etc/passwd", "A/B 12", "ÉTÉ-2024 #3", "a b", "a_b", "x" * 300, "con", "N.A."]
TEXT_COLUMNS_WITH_PLACEHOLDERS = [
    "brand",
    "title",
    "category1_code",
    "category2_code",
    "category3_code",
    "product_code",
]
# (width, height) at 448 px on the long side: what real product photos look like.
PHOTO_SHAPES = [(336, 448), (448, 336), (252, 448), (448, 448)]
PHOTO_FORMATS = ["jpeg", "webp", "png_palette", "cmyk_jpeg", "jpeg_exif_rotated"]
SUFFIX = {"jpeg": ".jpg", "webp": ".webp", "png_palette": ".png", "cmyk_jpeg": ".jpg", "jpeg_exif_rotated": ".jpg"}


def real_shaped_brand_names(n_brands: int) -> list[str]:
    if n_brands > len(REAL_SHAPED_BRANDS):
        raise ValueError(
            f"data.synthetic.n_brands ({n_brands}) is above the {len(REAL_SHAPED_BRANDS)} real-shaped brand "
            "names of data.synthetic.real_shapes; lower n_brands"
        )
    return REAL_SHAPED_BRANDS[:n_brands]


def photo_bytes(square: Image.Image, shape: tuple[int, int], fmt: str) -> bytes:
    """The product on a studio-grey canvas of `shape`, encoded as `fmt`."""
    width, height = shape
    side = min(width, height)
    canvas = Image.new("RGB", shape, (236, 234, 230))
    canvas.paste(
        square.convert("RGB").resize((side, side), Image.Resampling.BICUBIC),
        ((width - side) // 2, (height - side) // 2),
    )
    buf = io.BytesIO()
    if fmt == "jpeg":
        canvas.save(buf, format="JPEG", quality=90)
    elif fmt == "webp":
        canvas.save(buf, format="WEBP", quality=90)
    elif fmt == "png_palette":
        palette = canvas.quantize(64, method=Image.Quantize.FASTOCTREE)
        palette.info["transparency"] = palette.getpixel((0, 0))  # the background is transparent
        palette.save(buf, format="PNG")
    elif fmt == "cmyk_jpeg":
        canvas.convert("CMYK").save(buf, format="JPEG", quality=90)
    elif fmt == "jpeg_exif_rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: the viewer rotates 90° clockwise to show it upright
        canvas.transpose(Image.Transpose.ROTATE_90).save(buf, format="JPEG", quality=90, exif=exif)
    else:
        raise ValueError(f"unknown photo format {fmt!r}")
    return buf.getvalue()


def _redo_photo(url: str, photos_dir: Path, i: int, rng: np.random.Generator) -> str:
    """Re-encode the shop's square PNG behind a `file:` URL as a real-shaped photo; its new URL."""
    source = Path(url.removeprefix("file:"))
    if not url.startswith("file:") or not source.exists():
        return url  # a placeholder URL
    try:
        square = Image.open(source)
        square.load()
    except OSError:
        return url  # a broken image stays broken (the downloader's failure path)
    fmt = PHOTO_FORMATS[i % len(PHOTO_FORMATS)]
    shape = PHOTO_SHAPES[int(rng.integers(len(PHOTO_SHAPES)))]
    target = photos_dir / f"{source.stem}{SUFFIX[fmt]}"
    target.write_bytes(photo_bytes(square, shape, fmt))
    return f"file:{artifact_path(photos_dir)}/{target.name}"


def dress_as_real_catalogue(
    frame: pd.DataFrame, shop_dir: str | Path, seed: int, placeholder_rate: float = 0.03
) -> pd.DataFrame:
    """The shop's table with real-shaped brand names, `N.A.` values, hostile codes and real-shaped photos."""
    rng = np.random.default_rng([seed, 77])
    out = frame.copy()
    generated = sorted(out["brand"].unique(), key=lambda b: -int((out["brand"] == b).sum()))
    out["brand"] = out["brand"].map(dict(zip(generated, real_shaped_brand_names(len(generated)))))
    photos_dir = Path(shop_dir) / "photos"
    photos_dir.mkdir(parents=True, exist_ok=True)
    out["imageurl"] = [_redo_photo(url, photos_dir, i, rng) for i, url in enumerate(out["imageurl"])]
    kept = {url.rsplit("/", 1)[-1] for url in out["imageurl"]}
    for stale in photos_dir.iterdir():  # photos of an earlier, other-seeded shop
        if stale.name not in kept:
            stale.unlink()
    rows = rng.choice(len(out), size=min(len(HOSTILE_CODES), len(out)), replace=False)
    for code, row in zip(HOSTILE_CODES, rows):
        out.iloc[int(row), out.columns.get_loc("product_code")] = code
    for column in TEXT_COLUMNS_WITH_PLACEHOLDERS:
        hit = rng.random(len(out)) < placeholder_rate
        out.loc[hit, column] = "N.A."
    return out
