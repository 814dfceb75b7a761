"""How close the caption stage's client gets to the ideal request rate of a slow endpoint.

    .venv/bin/python benchmarks/caption.py                       # C=8/L=0.2, C=32/L=0.5, C=64/L=0.5
    .venv/bin/python benchmarks/caption.py --pairs 32:0.5 --rounds 20 --image-size 448   # real-profile image size

A loopback endpoint (the simulated VLM with every failure rate at 0, in its own process so that its
CPU is not counted as the client's) answers each request after a fixed latency L. With concurrency
C the ideal rate is C/L requests per second. For each (C, L) pair this runs the real stage,
`run_caption`, on C x rounds fresh images (empty cache) and prints achieved/ideal and the client's
own CPU time per request (process time / requests: reading images, base64, the openai client,
the cache and output writes) next to the endpoint's. Aim: achieved/ideal >= 0.9 at C=32, L=0.5 s.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: a bar per pair would drown the table

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from brandcap.caption import run_caption
from brandcap.params import validate_params


def make_manifest(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    base = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    for i in range(n):
        pixels = base.copy()
        pixels[i % size] = i % 256  # distinct images, realistic (incompressible) PNG size
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "PNG")
        path = root / "images" / f"p{i:05d}.png"
        path.write_bytes(buf.getvalue())
        rows.append({"product_id": f"p{i:05d}", "brand": "Gucci", "title": f"Bag {i}", "category": "Bags", "status": "ok",
                     "image": str(path), "sha256": hashlib.sha256(buf.getvalue()).hexdigest()})
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet", index=False)


def start_endpoint(root: Path, latency_s: float) -> tuple[subprocess.Popen, str]:
    rates = dict(loop_rate=0, garbled_rate=0, case_change_rate=0, missing_brand_rate=0, cutoff_rate=0, http_error_rate=0, slow_rate=0)
    params_file = root / f"server-{latency_s}.yaml"
    params_file.write_text(yaml.safe_dump({"caption": {"simulator": {**rates, "latency_s": latency_s}}}))
    proc = subprocess.Popen([sys.executable, "-m", "brandcap.simulated_vlm", "--port", "0", "--params", str(params_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "serving on" not in line:
        proc.kill()
        raise RuntimeError(f"the simulated endpoint did not start: {line!r}")
    return proc, line.split("serving on ")[1].strip()


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU time of another process (Linux /proc), to show the endpoint's share."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def measure(root: Path, concurrency: int, latency_s: float, rounds: int, image_size: int) -> tuple[float, float, float, int]:
    n = concurrency * rounds
    work = root / f"c{concurrency}-l{latency_s}"
    make_manifest(work, n, image_size)
    proc, base_url = start_endpoint(root, latency_s)
    try:
        params = validate_params({"caption": {"base_url": base_url, "concurrency": concurrency, "timeout_s": 30}})
        wall, cpu, server_cpu = time.perf_counter(), time.process_time(), cpu_seconds_of(proc.pid)
        run_caption(params, work / "manifest.parquet", work / "captions.jsonl", work / "resume")
        wall, cpu, server_cpu = time.perf_counter() - wall, time.process_time() - cpu, cpu_seconds_of(proc.pid) - server_cpu
    finally:
        proc.terminate()
        proc.wait(10)
    return (n / wall) / (concurrency / latency_s), cpu / n, server_cpu / n, n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", default=["8:0.2", "32:0.5", "64:0.5"], help="C:L pairs (concurrency:latency seconds)")
    parser.add_argument("--rounds", type=int, default=15, help="requests per pair = C x rounds")
    parser.add_argument("--image-size", type=int, default=64, help="side of the noisy test images (64 = the default profile's; 448 = a real profile's max side)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(f"{args.image_size}px images, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} before the run")
    print(f"{'C':>4} {'L (s)':>6} {'requests':>9} {'ideal/s':>8} {'achieved/ideal':>15} {'client CPU ms/req':>18} {'endpoint CPU ms/req':>20}")
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.pairs:
            c, l = pair.split(":")
            ratio, cpu, server_cpu, n = measure(Path(tmp), int(c), float(l), args.rounds, args.image_size)
            print(f"{int(c):>4} {float(l):>6.2f} {n:>9} {int(c) / float(l):>8.1f} {ratio:>15.3f} {cpu * 1000:>18.2f} {server_cpu * 1000:>20.2f}", flush=True)


if __name__ == "__main__":
    main()
