"""The brand-free general set for the forgetting probe: general_dir/general.jsonl + images.

    from brandcap.stages.general_set import run_general_set
    run_general_set(params, Path("data/raw/general"))

Records are `{"id", "image", "caption"}`; `image` is the path of a PNG under
`general_dir/images/`, relative to the cwd (like every path inside an artifact).
- `synthetic` source: `data.synthetic.n_general` signature-free shop products (their own
  seed stream, so none of them is a catalog image) with generic captions naming colour and
  category, never a brand.
- `hf` source: `data.general_set` names a JSONL of `{image, caption}` (image paths relative
  to that file, or absolute); each image is validated and normalised into general_dir. An
  empty `data.general_set` writes an empty general.jsonl (no probe).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from PIL import Image

from brandcap.atomic import write_bytes, write_jsonl
from brandcap.images import png_bytes, shrunk, upright_rgb
from brandcap.params import Params
from brandcap.records import artifact_path
from brandcap.sim.shop import generic_product_images
from brandcap.stages.catalog import product_ids

log = logging.getLogger(__name__)

_TEMPLATES = [
    "A {colour} {noun} photographed on a plain light background.",
    "Product photo of a {colour} {noun} centred on a light backdrop.",
    "A simple {colour} {noun} shown alone on a pale background.",
]


class GeneralSetError(ValueError):
    """The general set JSONL is unusable; the message names the file, the line and the fix."""


def generic_caption(colour: str, noun: str, index: int) -> str:
    return _TEMPLATES[index % len(_TEMPLATES)].format(colour=colour, noun=noun)


def _synthetic_records(params: Params, images_dir: Path) -> list[dict]:
    records = []
    shop = params.data.synthetic
    for i, (img, colour, category) in enumerate(generic_product_images(shop.n_general, shop, params.seed)):
        gid = f"general-{i:05d}"
        path = images_dir / f"{gid}.png"
        write_bytes(path, png_bytes(img))
        records.append({"id": gid, "image": artifact_path(path), "caption": generic_caption(colour, category.noun, i)})
    return records


def _normalised_png(source: Path, max_side: int) -> bytes:
    with Image.open(source) as img:
        img.load()
        return png_bytes(shrunk(upright_rgb(img), max_side))


def _jsonl_records(params: Params, images_dir: Path) -> list[dict]:
    source = Path(params.data.general_set)
    if not source.exists():
        raise GeneralSetError(f"data.general_set: {source} does not exist; fix the path or set it to '' for no probe")
    records = []
    lines = source.read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise GeneralSetError(f"{where}: not valid JSON ({err}); each line must be {{\"image\": ..., \"caption\": ...}}") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("image"), str) or not isinstance(rec.get("caption"), str) or not rec["caption"].strip():
            raise GeneralSetError(f"{where}: needs a string 'image' and a non-empty string 'caption'")
        image = Path(rec["image"])
        if not image.is_absolute():
            image = source.parent / image
        try:
            data = _normalised_png(image, params.download.max_side)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise GeneralSetError(f"{where}: image {image} cannot be read as an image ({err}); fix or remove the line") from None
        gid = product_ids([rec["id"]])[0] if rec.get("id") else f"general-{len(records):05d}"  # a safe file name
        path = images_dir / f"{gid}.png"
        write_bytes(path, data)
        records.append({"id": gid, "image": artifact_path(path), "caption": rec["caption"].strip()})
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        raise GeneralSetError(f"{source}: 'id' values repeat; give every line a unique id or leave ids out")
    return records


def run_general_set(params: Params, general_dir: Path) -> None:
    """Write general_dir/general.jsonl and general_dir/images/*.png."""
    general_dir = Path(general_dir)
    images_dir = general_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    if params.data.source == "synthetic":
        records = _synthetic_records(params, images_dir)
    elif params.data.general_set:
        records = _jsonl_records(params, images_dir)
    else:
        records = []
    write_jsonl(general_dir / "general.jsonl", records)
    log.info("general set: %d brand-free images with reference captions in %s", len(records), general_dir)
