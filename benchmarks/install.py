"""The environment install, the old way (pip) against `make install`'s way (uv from requirements.lock).

    python3 benchmarks/install.py            # about 5 minutes on 2 cores; writes only under a temp dir

Three fresh venvs in one run, each with every package of the lock byte-compiled (the project's jobs need
compiled files, see the Makefile):
  pip        pip install --no-compile -e '.[test,slurm]', then compileall on every core (the Makefile
             before the lock); pip's own cache starts empty
  uv cold    the Makefile's install (uv pip sync requirements.lock --compile-bytecode) with an empty uv cache
  uv warm    the same again, with the cache the cold run left
Each is given the machine's package mirrors as `make install` gives them (pip reads its own configuration).
Prints seconds and each time's ratio to pip's.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_variable(name: str) -> str:
    """A variable of the Makefile as make expands it (the uv version and the mirrors it hands uv)."""
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "-f", "Makefile", "-f", "-", "print"],
        cwd=ROOT,
        input=f"print:\n\t@echo $({name})\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin/python"


def install_with_pip(work: Path, env: dict) -> float:
    python = fresh_venv(work / "pip-venv")
    env = {**env, "PIP_CACHE_DIR": str(work / "pip-cache")}
    seconds = timed([str(python), "-m", "pip", "install", "-q", "--no-compile", "-e", ".[test,slurm]"], env)
    # a few files written for newer Pythons do not compile (pip skips them too): compileall's exit status is not checked
    started = time.perf_counter()
    subprocess.run(
        [str(python), "-m", "compileall", "-qq", "-j", "0", str(work / "pip-venv/lib")],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return seconds + time.perf_counter() - started


def install_with_uv(work: Path, venv: str, uv: Path, sources: list[str], env: dict) -> float:
    python = fresh_venv(work / venv)
    env = {**env, "UV_CACHE_DIR": str(work / "uv-cache")}
    sync = [str(uv), "pip", "sync", "-q", "--python", str(python), "--compile-bytecode", *sources, "requirements.lock"]
    editable = [str(uv), "pip", "install", "-q", "--python", str(python), "--no-deps", "-e", "."]
    return timed(sync, env) + timed(editable, env)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="brandcap-install-bench-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "TMPDIR": str(work)}
        tools = fresh_venv(work / "uv-tool")
        subprocess.run(
            [str(tools), "-m", "pip", "install", "-q", f"uv=={make_variable('UV_VERSION')}"], check=True, env=env
        )
        uv, sources = work / "uv-tool/bin/uv", shlex.split(make_variable("UV_SOURCES"))
        pip_s = install_with_pip(work, env)
        cold_s = install_with_uv(work, "uv-cold", uv, sources, env)
        warm_s = install_with_uv(work, "uv-warm", uv, sources, env)
    print(f"{'install':<10} {'seconds':>8} {'ratio to pip':>13}")
    for name, seconds in (("pip", pip_s), ("uv cold", cold_s), ("uv warm", warm_s)):
        print(f"{name:<10} {seconds:>8.1f} {seconds / pip_s:>13.2f}")


if __name__ == "__main__":
    main()
