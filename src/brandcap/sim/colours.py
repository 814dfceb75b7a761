"""Colour names of the simulated world: the palettes and the two readings of an image's colours.

    from brandcap.sim.colours import PRODUCT_PALETTE, dominant_colour_name, dominant_and_accent
    dominant_colour_name(image)          # 'red': the shop's word for the product, reference captions
    dominant_and_accent(png_bytes)       # ('red', 'beige'): what the simulated VLM sees

`PRODUCT_PALETTE` (12 colours, well separated in RGB so a name survives noise and resizing) is
what the shop draws products in; `VLM_PALETTE` (18) is the richer vocabulary the simulated VLM
names pixels with. Both readings name each pixel by its nearest palette colour
(`Palette.nearest`); they find the background differently. The shop's reading drops pixels far
from the border's median colour at full size; the VLM's reading looks at a 32x32 thumbnail and
drops the border's most common name. They are kept apart on purpose: one reading for both
would change the colour word of about 3% of the default world's images (42 of 1,248 checked)
and with it the general set's and pretraining's captions.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Palette:
    """Named RGB colours; `nearest` names pixels by the closest one."""

    colours: dict[str, RGB]
    names: list[str] = field(init=False)
    rgb: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "names", list(self.colours))
        object.__setattr__(self, "rgb", np.array(list(self.colours.values()), dtype=np.float32))

    def nearest(self, pixels: np.ndarray) -> np.ndarray:
        """Index into `names` of the closest colour of each (r, g, b) row of `pixels`."""
        return ((pixels[:, None, :] - self.rgb[None, :, :]) ** 2).sum(axis=-1).argmin(axis=1)


PRODUCT_PALETTE = Palette({
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
})

VLM_PALETTE = Palette({
    "black": (20, 20, 20), "white": (245, 245, 245), "grey": (128, 128, 128), "silver": (192, 192, 192),
    "red": (205, 30, 35), "burgundy": (120, 10, 35), "orange": (240, 135, 25), "yellow": (240, 215, 40),
    "beige": (215, 195, 155), "brown": (115, 70, 35), "green": (40, 155, 60), "olive": (110, 115, 40),
    "teal": (0, 128, 128), "blue": (40, 80, 215), "navy": (20, 30, 95), "light blue": (140, 190, 235),
    "purple": (120, 50, 160), "pink": (240, 150, 190),
})

_BACKGROUND_DISTANCE = 60  # RGB distance from the border's median beyond which a pixel is the product
_THUMBNAIL = 32  # side of the VLM's view
_MIN_SHARE = 0.03  # a colour covering less of the VLM's view is noise, not a detail


def _border(arr: np.ndarray) -> np.ndarray:
    return np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])


def dominant_colour_name(img: Image.Image, palette: Palette = PRODUCT_PALETTE) -> str:
    """Name of the most common palette colour among the pixels that differ from the background."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    background = np.median(_border(arr), axis=0)
    pixels = arr.reshape(-1, 3)
    foreground = pixels[np.linalg.norm(pixels - background, axis=1) > _BACKGROUND_DISTANCE]
    if len(foreground) == 0:
        foreground = pixels
    counts = np.bincount(palette.nearest(foreground), minlength=len(palette.names))
    return palette.names[int(counts.argmax())]


def dominant_and_accent(png: bytes, palette: Palette = VLM_PALETTE) -> tuple[str, str]:
    """(dominant, accent) colour names of the object in the image; the border's colour is background."""
    img = Image.open(io.BytesIO(png)).convert("RGB").resize((_THUMBNAIL, _THUMBNAIL), Image.Resampling.BOX)
    names = palette.nearest(np.asarray(img, dtype=np.float32).reshape(-1, 3)).reshape(_THUMBNAIL, _THUMBNAIL)
    background = Counter(_border(names).tolist()).most_common(1)[0][0]
    foreground = [n for n, count in Counter(names.ravel().tolist()).most_common()
                  if n != background and count >= _MIN_SHARE * names.size]
    if not foreground:
        return palette.names[background], palette.names[background]
    accent = foreground[1] if len(foreground) > 1 else background
    return palette.names[foreground[0]], palette.names[accent]
