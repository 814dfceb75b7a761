"""Profiles: short overlays of the default parameters, resolved one way under Snakemake and DVC.

    snakemake --cores 1 results/tables.md --configfile configs/smoke.yaml   # params.yaml + overlay
    brandcap profile configs/smoke.yaml && dvc repro                         # params.yaml := defaults + overlay

A profile file holds only what differs from the defaults. Sections merge key by key; anything
else is replaced whole: lists, and free-form mappings such as `train.experiments` (a profile that
names its experiments runs exactly those) or `caption.extra_body`. Snakemake's own deep merge
would instead add a profile's experiments to the default ones, so the workflow resolves the
configuration here and every stage resolves the same files the same way: a stage runs with
exactly the parameters the orchestrator records.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from brandcap.config.params import Params, read_params_mapping, validate_params
from brandcap.config.params_file import render_params
from brandcap.files.atomic import write_text


def _section_type(model: type[BaseModel], key: str) -> type[BaseModel] | None:
    """The Section class of `model.key`, or None when the field is a leaf (replaced whole)."""
    field = model.model_fields.get(key)
    annotation = field.annotation if field else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def overlay_params(base: dict[str, Any], top: dict[str, Any], model: type[BaseModel] = Params) -> dict[str, Any]:
    """`base` with `top` laid over it: sections merge key by key, every other value is replaced."""
    merged = copy.deepcopy(base)
    for key, value in top.items():
        section = _section_type(model, key)
        if section is not None and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = overlay_params(merged[key], value, section)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _with_overlays(raw: dict[str, Any], base_name: str, overlays: list[str | Path] | tuple) -> Params:
    """`raw` with each overlay file laid over it in order, validated; errors name every file."""
    for path in overlays:
        raw = overlay_params(raw, read_params_mapping(path))
    return validate_params(raw, " + ".join([base_name, *map(str, overlays)]))


def resolve_params(base_file: str | Path, overlays: list[str | Path] | tuple = ()) -> Params:
    """The validated parameters of `base_file` with each overlay file laid over it in order."""
    return _with_overlays(read_params_mapping(base_file), str(base_file), overlays)


def write_profile(overlays: list[str | Path], out: str | Path = "params.yaml") -> Params:
    """Write the defaults with `overlays` laid over them to `out` (DVC reads params.yaml only)."""
    params = _with_overlays(Params().model_dump(mode="json"), "defaults", overlays)
    title = "the defaults overlaid by " + ", ".join(map(str, overlays)) if overlays else None
    write_text(out, render_params(params, title) if title else render_params(params))
    return params
