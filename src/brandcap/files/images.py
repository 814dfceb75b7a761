"""How every stored image is normalised: upright, 8-bit RGB, at most `max_side`, PNG.

    from brandcap.files.images import png_bytes, shrunk, upright_rgb
    with Image.open(path) as img:
        data = png_bytes(shrunk(upright_rgb(img), max_side=448))

The download stage (catalog images) and the general set (the forgetting probe's own images)
store images this way, so training and evaluation see both alike.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image, ImageOps

_TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_16_BIT_GREY_MODES = ("I;16", "I;16B", "I;16L", "I")


def upright_rgb(img: Image.Image) -> Image.Image:
    """`img` turned as its EXIF orientation says, in 8-bit RGB; transparency is flattened on white."""
    img = ImageOps.exif_transpose(img)
    if img.mode in _TRANSPARENT_MODES or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if img.mode in _16_BIT_GREY_MODES:
        # 16-bit greyscale: scale to 8 bit instead of clipping everything to white
        img = img.point(lambda v: v / 256).convert("L")
    return img.convert("RGB")


def shrunk(img: Image.Image, max_side: int) -> Image.Image:
    """`img` resized (in place) so its longer side is at most `max_side`; smaller images stay as they are."""
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img


def data_url(data: bytes, mime: str) -> str:
    """`data` as a base64 data URL, as OpenAI-compatible servers take images inline."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


RELATIVE_PATHS_FIX = "image paths are relative to the working directory, so run from the repository root"


def open_rgb(path: str | Path, source: str | Path, fix: str = RELATIVE_PATHS_FIX) -> Image.Image:
    """The image at `path` in RGB, read now; an unreadable one is refused naming `source` (the file
    that pointed to it), the image and `fix`."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as err:
        raise ValueError(f"{source}: image {str(path)!r} cannot be read ({err}); {fix}") from None
