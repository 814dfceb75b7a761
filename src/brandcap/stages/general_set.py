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

import logging
from pathlib import Path

from brandcap.config.params import Params
from brandcap.files.atomic import write_jsonl
from brandcap.general_sets import jsonl_records, synthetic_records

log = logging.getLogger(__name__)


def run_general_set(params: Params, general_dir: Path) -> None:
    """Write general_dir/general.jsonl and general_dir/images/*.png."""
    general_dir = Path(general_dir)
    images_dir = general_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    if params.data.source == "synthetic":
        from brandcap.sim.shop import STREAM_GENERAL  # the simulated world, only for the synthetic source

        records = synthetic_records(params, images_dir, params.data.synthetic.n_general, STREAM_GENERAL, "general")
    elif params.data.general_set:
        records = jsonl_records("data.general_set", Path(params.data.general_set), params, images_dir, "general")
    else:
        records = []
    write_jsonl(general_dir / "general.jsonl", records)
    log.info("general set: %d brand-free images with reference captions in %s", len(records), general_dir)
