"""A full disk, for real: a 256 kB tmpfs, mounted in a private mount namespace (`unshare -rm`), fills up
under a real stage and under the libraries that write our files; each ends in one message naming the file."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MESSAGE = r"cannot write it, the disk is full \(0 MB free\)"


def in_full_disk_namespace(tmp_path: Path, mounted: Path, command: str) -> subprocess.CompletedProcess:
    """Run `command` in tmp_path with a 256 kB tmpfs on `mounted`, in a mount namespace of its own."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to mount a small tmpfs for this test")
    mounted.mkdir(parents=True, exist_ok=True)
    script = f"mount -t tmpfs -o size=256k tmpfs {mounted} && {command}"
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )


def test_a_real_stage_on_a_full_disk_names_the_file_and_the_free_space(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    done = in_full_disk_namespace(
        tmp_path,
        tmp_path / "data/raw",
        f"{sys.executable} {ROOT}/workflow/scripts/catalog.py --params params.yaml "
        "--catalog data/raw/catalog.parquet --shop data/raw/shop --log logs/catalog.log",
    )
    assert done.returncode == 4, done.stderr[-2000:]
    log = (tmp_path / "logs/catalog.log").read_text()
    assert "stage catalog failed: data/raw/shop/" in log and MESSAGE.replace("\\", "") in log
    assert "Traceback" not in done.stderr


LIBRARIES = textwrap.dedent("""
    import argparse, shutil, sys
    from pathlib import Path
    import torch
    from safetensors.torch import save_file
    from brandcap.files.atomic import write_bytes
    from brandcap.running.stage import run_stage

    full = Path(sys.argv[1])
    big = Path("big")
    big.mkdir(exist_ok=True)
    (big / "weights.bin").write_bytes(b"x" * 400_000)
    bodies = {
        "atomic": lambda params: write_bytes(full / "a.bin", b"x" * 400_000),
        "safetensors": lambda params: save_file({"w": torch.zeros(100_000)}, str(full / "model.safetensors")),
        "copytree": lambda params: shutil.copytree(big, full / "copy"),
    }
    name = sys.argv[2]
    run_stage(name, argparse.Namespace(params="params.yaml", overlay=[], log=Path(f"logs/{name}.log"), out=full / "export"), bodies[name])
""")


@pytest.mark.parametrize(
    ("library", "named"),
    [
        ("atomic", "full/a.bin"),  # our own atomic writes (an OSError with ENOSPC)
        (
            "safetensors",
            "full/export",
        ),  # SafetensorError: ... No space left on device (os error 28): the stage's output is named
        ("copytree", "full/copy/weights.bin"),  # shutil.Error, a list of per-file copy errors
    ],
)
def test_every_library_s_full_disk_error_becomes_the_one_message(tmp_path, library, named):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "libraries.py").write_text(LIBRARIES)
    done = in_full_disk_namespace(
        tmp_path, tmp_path / "full", f"{sys.executable} libraries.py {tmp_path / 'full'} {library}"
    )
    assert done.returncode == 4, done.stderr[-2000:]
    log = (tmp_path / f"logs/{library}.log").read_text()
    line = next(line for line in log.splitlines() if f"stage {library} failed" in line)
    assert f"{tmp_path / named}: " in line and MESSAGE.replace("\\", "") in line, line
