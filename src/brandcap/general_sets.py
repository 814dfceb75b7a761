"""Brand-free {image, caption} sets: the forgetting probe's (general_set stage) and the generic training
set that train.general_mix mixes in (general_train_set stage), made the same way.

    records = synthetic_records(params, images_dir, n=48, stream=STREAM_GENERAL, prefix="general")
    records = jsonl_records("data.general_set", Path("data/external/probe/general.jsonl"), params, images_dir, "general")

Records are `{"id", "image", "caption"}`; `image` is the path of a PNG under `images_dir`, relative
to the cwd (like every path inside an artifact). Synthetic records are signature-free shop products
of their own seed stream with generic captions naming colour and category, never a brand (the
simulated world is imported only there). A user's JSONL names `{image, caption}` lines (image paths
relative to that file, or absolute, always under data/external/); each image is validated and
normalised as the download stage stores images.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from brandcap.config.params import EXTERNAL_DATA_DIR, Params
from brandcap.files.atomic import numbered_jsonl, write_bytes
from brandcap.files.images import png_bytes, shrunk, upright_rgb
from brandcap.files.product_table import artifact_path, product_ids

_TEMPLATES = [
    "A {colour} {noun} photographed on a plain light background.",
    "Product photo of a {colour} {noun} centred on a light backdrop.",
    "A simple {colour} {noun} shown alone on a pale background.",
]


class GeneralSetError(ValueError):
    """The general set JSONL is unusable; the message names the file, the line and the fix."""


def generic_caption(colour: str, noun: str, index: int) -> str:
    return _TEMPLATES[index % len(_TEMPLATES)].format(colour=colour, noun=noun)


def synthetic_records(params: Params, images_dir: Path, n: int, stream: int, prefix: str) -> list[dict]:
    """`n` signature-free shop products from seed stream `stream`, with generic captions, as
    records `{id: prefix-NNNNN, image, caption}`; their PNGs go to images_dir."""
    from brandcap.sim.shop import generic_product_images  # the simulated world, only for the synthetic source

    records = []
    for i, (img, colour, category) in enumerate(generic_product_images(n, params.data.synthetic, params.seed, stream)):
        gid = f"{prefix}-{i:05d}"
        path = images_dir / f"{gid}.png"
        write_bytes(path, png_bytes(img))
        records.append({"id": gid, "image": artifact_path(path), "caption": generic_caption(colour, category.noun, i)})
    return records


def _normalised_png(source: Path, max_side: int) -> bytes:
    with Image.open(source) as img:
        img.load()
        return png_bytes(shrunk(upright_rgb(img), max_side))


# What every line of a general-set JSONL must be.
LINE_SHAPE = 'each line must be {"image": ..., "caption": ...}'


def _checked(rec: dict, where: str) -> dict:
    if not isinstance(rec.get("image"), str) or not isinstance(rec.get("caption"), str) or not rec["caption"].strip():
        raise GeneralSetError(f"{where}: needs a string 'image' and a non-empty string 'caption'")
    return rec


def _numbered_lines(source: Path) -> Iterator[tuple[int, dict]]:
    """(line number, record) of the general-set JSONL `source`, through the one JSONL reader."""
    try:
        yield from numbered_jsonl(source, fix=LINE_SHAPE)
    except ValueError as err:
        raise GeneralSetError(str(err)) from None


def jsonl_records(key: str, source: Path, params: Params, images_dir: Path, prefix: str) -> list[dict]:
    """The `{image, caption}` lines of the JSONL that param `key` names (image paths relative to it, or
    absolute), each image validated and normalised into images_dir as the download stage stores images."""
    if not source.exists():
        raise GeneralSetError(f"{key}: {source} does not exist; fix the path or set {key} to ''")
    records = []
    for lineno, line_record in _numbered_lines(source):
        where = f"{source}:{lineno}"
        rec = _checked(line_record, where)
        image = Path(rec["image"])
        if not image.is_absolute():
            image = source.parent / image
        if not image.resolve().is_relative_to((Path.cwd() / EXTERNAL_DATA_DIR).resolve()):
            raise GeneralSetError(
                f"{where}: image {image} lies outside {EXTERNAL_DATA_DIR}/ (symlinks resolved), so it is not read "
                f"(local_file_outside_project); copy it under {EXTERNAL_DATA_DIR}/ beside {source.name}"
            )
        try:
            data = _normalised_png(image, params.download.max_side)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise GeneralSetError(
                f"{where}: image {image} cannot be read as an image ({err}); fix or remove the line"
            ) from None
        gid = product_ids([rec["id"]])[0] if rec.get("id") else f"{prefix}-{len(records):05d}"  # a safe file name
        path = images_dir / f"{gid}.png"
        write_bytes(path, data)
        records.append({"id": gid, "image": artifact_path(path), "caption": rec["caption"].strip()})
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        raise GeneralSetError(f"{source}: 'id' values repeat; give every line a unique id or leave ids out")
    return records
