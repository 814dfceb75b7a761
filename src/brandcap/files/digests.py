"""Every digest the project takes to name or compare content, in one place: sha256 of bytes, text, a file,
JSON, a list of named files and a folder, each as a hex string.

    from brandcap.files.digests import canonical_json_sha256, content_digest, file_sha256
    file_sha256("data/raw/images/p1.png")              # the image's sha256, as the split records carry it
    canonical_json_sha256({"b": 1, "a": [2]})          # params and fingerprints: sorted keys, no spaces, UTF-8
    content_digest("results/checkpoints/lora/seed-4")  # a folder: its relative names and bytes; '' when absent

JSON has two encodings here, both sorted by key and UTF-8: the canonical one (no spaces) names params and
fingerprints; the caption cache's keys were made with `json.dumps`' default separators, and every existing
cache (a 20,000-photo run of a 72B model is days of GPU time) is keyed by them, so they stay
(`sorted_json_sha256`). The seeded digests of the simulated world (brandcap.sim) derive random streams,
not names, and stay with it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20
# Snakemake's directory stamp is no content (DVC ignores it too, see .dvcignore)
_NOT_CONTENT = (".snakemake_timestamp",)


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_sha256(text: str) -> str:
    """sha256 of `text` as UTF-8 (lone surrogates, as in some product codes, kept as they are)."""
    return bytes_sha256(text.encode("utf-8", "surrogatepass"))


def _update_from_file(digest, path: Path) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    _update_from_file(digest, Path(path))
    return digest.hexdigest()


def canonical_json_sha256(obj: Any) -> str:
    """sha256 of `obj` as canonical JSON: sorted keys, no spaces, UTF-8."""
    return text_sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False))


def sorted_json_sha256(obj: Any) -> str:
    """sha256 of `obj` as JSON with sorted keys and `json.dumps`' default separators, UTF-8: the caption
    cache's key encoding (see the module docstring)."""
    return text_sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False))


def named_files_sha256(paths: Iterable[str | Path]) -> str:
    """sha256 over files in order, each as its name, its length and its bytes."""
    digest = hashlib.sha256()
    for path in map(Path, paths):
        content = path.read_bytes()
        digest.update(f"{path.name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def named_texts_sha256(named: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over (name, bytes) pairs in order, each as its name, a NUL and its bytes."""
    digest = hashlib.sha256()
    for name, content in named:
        digest.update(f"{name}\0".encode() + content)
    return digest.hexdigest()


def _files(path: Path) -> Iterable[Path]:
    if path.is_dir():
        yield from sorted(p for p in path.rglob("*") if p.is_file() and p.name not in _NOT_CONTENT)
    elif path.exists():
        yield path


def content_digest(path: str | Path | list[str | Path]) -> str:
    """sha256 over a file's bytes, a folder's relative names and file bytes, or a list of such
    paths in order; '' when absent."""
    if isinstance(path, list):
        return text_sha256("\n".join(f"{p}\0{content_digest(p)}" for p in path))
    path = Path(path)
    if not path.exists():
        return ""
    digest = hashlib.sha256()
    for file in _files(path):
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}\0".encode())
        _update_from_file(digest, file)
    return digest.hexdigest()
