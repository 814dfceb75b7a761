"""Stages load at start only the libraries they use: each job is a fresh interpreter, so an unused
import is paid once per job (pandas alone is one to two seconds on a small machine).

    .venv/bin/python -m pytest tests/test_startup_imports.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# stage module -> libraries its job does not need
NOT_NEEDED = {
    "brandcap.stages.tables": ["pandas", "torch"],  # reads the manifest with pyarrow
    "brandcap.stages.review": [
        "pandas",
        "aiohttp",
        "torch",
    ],  # file names from brandcap.files.product_table, not the downloader
}


@pytest.mark.parametrize("module", sorted(NOT_NEEDED))
def test_stage_imports_no_library_it_does_not_use(module):
    probe = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe],
            env={**os.environ, "PYTHONPATH": str(SRC)},
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert not [name for name in NOT_NEEDED[module] if name in loaded]
