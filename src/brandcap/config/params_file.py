"""Writing a parameter file with every key's description as a comment.

    brandcap params > params.yaml      # the default (CPU) profile, documented

The schema in brandcap.config.params is the one source of the defaults and their descriptions.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from brandcap.config.params import Params


def _scalar(value: Any) -> str:
    return (
        yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True)
        .strip()
        .removesuffix("\n...")
        .strip()
    )


def _lines(model: BaseModel, indent: int) -> list[str]:
    pad = "  " * indent
    out: list[str] = []
    fields = type(model).model_fields
    for name, info in fields.items():
        value = getattr(model, name)
        comment = f"  # {info.description}" if info.description else ""
        if isinstance(value, BaseModel):
            out.append(f"{pad}{name}:{comment}")
            out.extend(_lines(value, indent + 1))
        elif isinstance(value, dict) and value and all(isinstance(v, BaseModel) for v in value.values()):
            out.append(f"{pad}{name}:{comment}")
            for key, sub in value.items():
                dumped = sub.model_dump(exclude_none=True)
                out.append(f"{pad}  {key}: {_scalar(dumped)}")
        else:
            out.append(f"{pad}{name}: {_scalar(value)}{comment}")
    return out


DEFAULT_TITLE = "the default profile (CPU, synthetic shop, simulated VLM, tiny model)"


def render_params(params: Params, title: str = DEFAULT_TITLE) -> str:
    header = [
        f"# brandcap parameters: {title}.",
        "# Validated before any stage runs (brandcap/config/params.py); every key is documented below.",
        "# Regenerate the default file from the schema with: brandcap params > params.yaml",
    ]
    return "\n".join(header + _lines(params, 0)) + "\n"
