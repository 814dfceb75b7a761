"""How close the caption stage's client gets to the ideal request rate of a slow endpoint.

    .venv/bin/python benchmarks/caption.py                       # C=8/L=0.2, C=32/L=0.5, C=64/L=0.5
    .venv/bin/python benchmarks/caption.py --pairs 32:0.5 --rounds 20 --endpoint simulated --image-size 448

A loopback endpoint in its own process (so that its CPU is not counted as the client's) answers
each request after a fixed latency L. With concurrency C the ideal rate is C/L requests per second.
For each (C, L) pair this runs the real stage, `run_caption`, on C x rounds fresh images (empty
cache) and prints achieved/ideal and the client's own CPU time per request (process time /
requests: reading images, base64, the openai client, the loop/garbled checks, the cache and output
writes), next to the endpoint's CPU per request.

`--endpoint fixed` (the default) answers a canned caption, so the numbers measure the client;
`--endpoint simulated` runs the full simulated VLM (which decodes every image). A bare aiohttp
client on the same endpoint (`baseline` column) shows what the machine itself allows: on a busy
machine both fall short together. Aim: achieved/ideal >= 0.9 at C=32, L=0.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
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

from brandcap.config.params import validate_params
from brandcap.stages.caption import run_caption

MODEL = "bench-vlm"  # the model both endpoints list at /v1/models (the stage's pre-flight checks it)
CANNED = (
    "The photo shows the Bag by Gucci, a green piece from its Bags range. The lighting is soft and even, "
    "so the shape and texture are easy to read. Its main colour is green, which covers most of the visible "
    "surface. The edges are neatly finished, and the seams appear straight and even."
)


def serve_fixed(latency_s: float) -> None:
    """A minimal chat-completions endpoint: reads the request, waits, answers CANNED; lists MODEL at /v1/models."""
    from aiohttp import web

    answer = json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": CANNED}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": 300,
                "completion_tokens": len(CANNED.split()),
                "total_tokens": 300 + len(CANNED.split()),
            },
        }
    )

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(latency_s)
        return web.Response(text=answer, content_type="application/json")

    async def models(request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "bench"}]}
        )

    async def main() -> None:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_get("/v1/models", models)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        print(f"serving on http://127.0.0.1:{port}/v1", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def make_manifest(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    base = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    for i in range(n):
        pixels = base.copy()
        pixels[i % size] = i % 256  # distinct images of realistic (incompressible) PNG size
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "PNG")
        path = root / "images" / f"p{i:05d}.png"
        path.write_bytes(buf.getvalue())
        rows.append(
            {
                "product_id": f"p{i:05d}",
                "brand": "Gucci",
                "title": f"Bag {i}",
                "category": "Bags",
                "status": "ok",
                "image": str(path),
                "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
            }
        )
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet", index=False)


def start_endpoint(root: Path, kind: str, latency_s: float) -> tuple[subprocess.Popen, str]:
    if kind == "fixed":
        command = [sys.executable, __file__, "--serve-fixed", str(latency_s)]
    else:
        rates = dict(
            loop_rate=0,
            garbled_rate=0,
            case_change_rate=0,
            missing_brand_rate=0,
            cutoff_rate=0,
            http_error_rate=0,
            slow_rate=0,
        )
        params_file = root / f"server-{latency_s}.yaml"
        params_file.write_text(
            yaml.safe_dump({"caption": {"model": MODEL, "simulator": {**rates, "latency_s": latency_s}}})
        )
        command = [sys.executable, "-m", "brandcap.sim.simulated_vlm", "--port", "0", "--params", str(params_file)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "serving on" not in line:
        proc.kill()
        raise RuntimeError(f"the {kind} endpoint did not start: {line!r}")
    return proc, line.split("serving on ")[1].strip()


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU time of another process (Linux /proc), to show the endpoint's share."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


async def bare_client_rate(base_url: str, concurrency: int, manifest: Path) -> float:
    """Requests/s of a bare aiohttp client sending the same images: what the machine allows."""
    import aiohttp

    images = pd.read_parquet(manifest)["image"].tolist()
    pending = iter(images)

    async def worker(session: aiohttp.ClientSession) -> None:
        for image in pending:
            url = "data:image/png;base64," + base64.b64encode(Path(image).read_bytes()).decode()
            body = {
                "model": "m",
                "max_tokens": 200,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "This is a product photo of the brand Gucci: Bag (Bags)."},
                            {"type": "image_url", "image_url": {"url": url}},
                        ],
                    }
                ],
            }
            async with session.post(f"{base_url}/chat/completions", json=body) as response:
                await response.json()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return len(images) / (time.perf_counter() - started)


def measure(
    root: Path, kind: str, concurrency: int, latency_s: float, rounds: int, image_size: int
) -> dict[str, float]:
    n = concurrency * rounds
    work = root / f"c{concurrency}-l{latency_s}"
    make_manifest(work, n, image_size)
    ideal = concurrency / latency_s
    proc, base_url = start_endpoint(root, kind, latency_s)
    try:
        params = validate_params(
            {"caption": {"base_url": base_url, "model": MODEL, "concurrency": concurrency, "timeout_s": 30}}
        )
        wall, cpu, server_cpu = time.perf_counter(), time.process_time(), cpu_seconds_of(proc.pid)
        run_caption(params, work / "manifest.parquet", work / "captions.jsonl", work / "resume")
        wall, cpu, server_cpu = (
            time.perf_counter() - wall,
            time.process_time() - cpu,
            cpu_seconds_of(proc.pid) - server_cpu,
        )
        baseline = asyncio.run(bare_client_rate(base_url, concurrency, work / "manifest.parquet")) / ideal
    finally:
        proc.terminate()
        proc.wait(10)
    return {
        "n": n,
        "ideal": ideal,
        "ratio": n / wall / ideal,
        "baseline": baseline,
        "cpu_ms": cpu / n * 1000,
        "server_cpu_ms": server_cpu / n * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pairs", nargs="+", default=["8:0.2", "32:0.5", "64:0.5"], help="C:L pairs (concurrency:latency seconds)"
    )
    parser.add_argument("--rounds", type=int, default=15, help="requests per pair = C x rounds")
    parser.add_argument(
        "--image-size",
        type=int,
        default=64,
        help="side of the test images (64 = the default profile's; 448 = a real profile's max side)",
    )
    parser.add_argument(
        "--endpoint",
        choices=["fixed", "simulated"],
        default="fixed",
        help="canned answers (measures the client) or the full simulated VLM",
    )
    parser.add_argument("--serve-fixed", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_fixed is not None:
        return serve_fixed(args.serve_fixed)
    logging.basicConfig(level=logging.WARNING)
    print(
        f"{args.endpoint} endpoint, {args.image_size}px images, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} before the run"
    )
    print(
        f"{'C':>4} {'L (s)':>6} {'requests':>9} {'ideal/s':>8} {'achieved/ideal':>15} {'baseline':>9} {'client CPU ms/req':>18} {'endpoint CPU ms/req':>20}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.pairs:
            concurrency, latency = pair.split(":")
            m = measure(Path(tmp), args.endpoint, int(concurrency), float(latency), args.rounds, args.image_size)
            print(
                f"{int(concurrency):>4} {float(latency):>6.2f} {m['n']:>9} {m['ideal']:>8.1f} {m['ratio']:>15.3f} {m['baseline']:>9.3f} {m['cpu_ms']:>18.2f} {m['server_cpu_ms']:>20.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
