"""The generic training set that train.general_mix mixes into fine-tuning: out_dir/general_train.jsonl + images.

    from brandcap.stages.general_train_set import run_general_train_set
    run_general_train_set(params, Path("data/raw/general/general.jsonl"), Path("data/raw/general_train"))

Records are `{"id", "image", "caption"}`, built as the forgetting probe's are (brandcap.stages.general_set):
- `synthetic` source: `data.synthetic.n_general_train` brand-free shop products from their own seed
  stream (none is a catalog, probe or pretraining image), with generic captions that name no brand.
- `hf` source: `data.general_train_set` names a JSONL of `{image, caption}` (e.g. a COCO-captions
  extract), read and normalised like `data.general_set`; empty = an empty file (params then refuse
  train.general_mix > 0).
- no experiment mixes (train.general_mix 0 everywhere): an empty file, whatever the source, so a
  study without mixing spends nothing on it.

No generic training image may be in the probe: a model trained on a probe image would make the
forgetting probe measure memory, not general ability. The stage compares the sha256 of the stored
(normalised) images with the probe's and fails naming both; the folder appears complete or not at all.
"""

from __future__ import annotations

import logging
from pathlib import Path

from brandcap.config.params import Params, mixing_experiments
from brandcap.files.atomic import read_jsonl, staged_directory, write_jsonl
from brandcap.files.digests import file_sha256
from brandcap.files.product_table import artifact_path
from brandcap.general_sets import GeneralSetError, jsonl_records, synthetic_records

log = logging.getLogger(__name__)

GENERAL_TRAIN_FILE = "general_train.jsonl"
ID_PREFIX = "generic"


def check_disjoint_from_probe(records: list[dict], probe_records: list[dict], probe_jsonl: Path) -> None:
    """GeneralSetError when a generic training image (by sha256 of its stored bytes) is a probe image."""
    probe = {file_sha256(r["image"]): r["id"] for r in probe_records}
    shared = [(r["id"], probe[digest]) for r in records if (digest := file_sha256(r["image"])) in probe]
    if shared:
        examples = ", ".join(f"{train_id} = probe {probe_id}" for train_id, probe_id in shared[:3])
        raise GeneralSetError(
            f"{len(shared)} generic training image(s) are also in the forgetting probe {probe_jsonl} (same sha256: {examples}); "
            "remove them from data.general_train_set (or from data.general_set) so that the probe measures general "
            "captioning on images the model never trained on"
        )


def _records(params: Params, images_dir: Path) -> list[dict]:
    if not mixing_experiments(params):
        return []
    if params.data.source == "synthetic":
        from brandcap.sim.shop import STREAM_GENERAL_TRAIN  # the simulated world, only where the profile selects it

        n = params.data.synthetic.n_general_train
        return synthetic_records(params, images_dir, n, STREAM_GENERAL_TRAIN, ID_PREFIX)
    if params.data.general_train_set:
        return jsonl_records(
            "data.general_train_set", Path(params.data.general_train_set), params, images_dir, ID_PREFIX
        )
    return []


def run_general_train_set(params: Params, probe_jsonl: Path, out_dir: Path) -> None:
    """Write out_dir/general_train.jsonl and out_dir/images/*.png, checked disjoint from the probe at probe_jsonl."""
    probe_jsonl, out_dir = Path(probe_jsonl), Path(out_dir)
    if not probe_jsonl.exists():
        raise FileNotFoundError(
            f"{probe_jsonl}: the forgetting probe's set is missing; run the general_set stage first"
        )
    with staged_directory(out_dir) as staging:
        records = _records(params, staging / "images")
        check_disjoint_from_probe(records, read_jsonl(probe_jsonl), probe_jsonl)
        for record in records:  # the paths the images will have once the folder is in place
            record["image"] = artifact_path(out_dir / "images" / Path(record["image"]).name)
        write_jsonl(staging / GENERAL_TRAIN_FILE, records)
    log.info(
        "generic training set: %d image-caption pairs in %s, none of them in the probe %s",
        len(records),
        out_dir,
        probe_jsonl,
    )
