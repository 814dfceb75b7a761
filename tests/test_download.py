"""The download stage against a real HTTP server on 127.0.0.1 that misbehaves in every way."""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from brandcap.config.params import validate_params
from brandcap.stages.download import DownloadError, ImageRejected, image_file_stem, normalise_image, run_download

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- fixtures
def png(size=(100, 80), colour=(200, 30, 40), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(size=(120, 90), mode="RGB", colour=(30, 90, 200)) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.new(mode, size, colour)
    if mode == "RGB":  # texture, so the file is long enough to truncate meaningfully
        img = Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims huge dimensions: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def alpha_png() -> bytes:
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # fully transparent black
    img.paste((20, 150, 150, 255), (16, 16, 48, 48))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class Shop:
    """Routes -> behaviour; records every request path (the request log)."""

    def __init__(self):
        self.log: list[str] = []
        self.counts: dict[str, int] = {}
        self.delay_s = 0.0
        self.lock = threading.Lock()
        good = jpeg()
        self.routes = {
            "/ok.png": (200, png(), "image/png"),
            "/ok2.png": (200, png(colour=(35, 140, 60)), "image/png"),
            "/big.png": (200, png(size=(900, 600)), "image/png"),
            "/missing.png": (404, b"not found", "text/plain"),
            "/forbidden.png": (403, b"forbidden", "text/plain"),
            "/always500.png": (500, b"oops", "text/plain"),
            "/truncated.jpg": (200, good[: len(good) // 2], "image/jpeg"),
            "/page.html": (200, b"<!DOCTYPE html><html><body>Sorry</body></html>", "text/html"),
            "/empty.png": (200, b"", "image/png"),
            "/bomb.png": (200, png_header_only(30000, 30000), "image/png"),
            "/bomb2.png": (200, png_header_only(7000, 7000), "image/png"),
            "/cmyk.jpg": (200, jpeg(mode="CMYK", colour=(0, 255, 255, 0)), "image/jpeg"),
            "/alpha.png": (200, alpha_png(), "image/png"),
            "/tiny.png": (200, png(size=(8, 8)), "image/png"),
            "/garbage.bin": (
                200,
                bytes(np.random.default_rng(1).integers(0, 255, 3000, dtype=np.uint8)),
                "application/octet-stream",
            ),
        }
        for i in range(30):
            self.routes[f"/slowshop/{i}.png"] = (200, png(colour=(i * 8, 100, 100)), "image/png")

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path
        with self.lock:
            self.log.append(path)
            self.counts[path] = self.counts.get(path, 0) + 1
            count = self.counts[path]
        if path.startswith("/slowshop/"):
            time.sleep(self.delay_s)
        if path == "/slow.png":
            time.sleep(2.0)
            status, body, ctype = 200, png(), "image/png"
        elif path == "/flaky.png":
            status, body, ctype = (500, b"busy", "text/plain") if count == 1 else (200, png(), "image/png")
        elif path == "/redirect":
            handler.send_response(302)
            handler.send_header("Location", "/ok2.png")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        else:
            status, body, ctype = self.routes.get(path, (404, b"no route", "text/plain"))
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


@pytest.fixture
def shop():
    state = Shop()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 - http.server's name
            try:
                state.respond(self)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DOWNLOAD = {
    "concurrency": 4,
    "timeout_s": 0.5,
    "retries": 1,
    "backoff_s": 0.01,
    "max_side": 256,
    "min_side": 16,
    "max_failed_fraction": 1.0,
}


def write_catalog(path: Path, urls: dict[str, str]) -> None:
    pd.DataFrame(
        {
            "product_id": list(urls),
            "brand": ["Maison Éclat"] * len(urls),
            "title": [f"item {k}" for k in urls],
            "category1_code": ["WOMEN"] * len(urls),
            "category2_code": ["BAGS"] * len(urls),
            "category3_code": ["TOTE BAGS"] * len(urls),
            "imageurl": list(urls.values()),
        }
    ).to_parquet(path, index=False)


def no_temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- tests
EXPECTED = {
    "ok": ("ok", ""),
    "big": ("ok", ""),
    "flaky": ("ok", ""),
    "cmyk": ("ok", ""),
    "alpha": ("ok", ""),
    "redirect": ("ok", ""),
    "file_rel": ("ok", ""),
    "file_abs": ("ok", ""),
    "missing": ("failed", "http_404"),
    "forbidden": ("failed", "http_4xx"),
    "always500": ("failed", "http_5xx"),
    "slow": ("failed", "timeout"),
    "truncated": ("failed", "truncated"),
    "html": ("failed", "not_an_image"),
    "empty": ("failed", "empty"),
    "bomb": ("failed", "decompression_bomb"),
    "bomb2": ("failed", "decompression_bomb"),
    "tiny": ("failed", "too_small"),
    "garbage": ("failed", "not_an_image"),
    "placeholder": ("failed", "placeholder_url"),
    "refused": ("failed", "connection_error"),
    "file_missing": ("failed", "file_not_found"),
    **dict.fromkeys(
        ["file_outside", "file_symlink_out", "file_dotdot", "file_passwd"], ("failed", "local_file_outside_project")
    ),
}


def test_every_failure_mode_ends_in_the_manifest_with_its_reason(shop, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("data/external").mkdir(parents=True)
    Path("data/external/shoe.png").write_bytes(png(colour=(240, 205, 40)))
    outside = tmp_path.parent / f"{tmp_path.name}-outside"  # a real image beside the project, never to be read
    outside.mkdir()
    (outside / "secret.png").write_bytes(png(colour=(1, 2, 3)))
    Path("data/external/link.png").symlink_to(outside / "secret.png")
    b = shop.base
    urls = {
        "ok": f"{b}/ok.png",
        "big": f"{b}/big.png",
        "flaky": f"{b}/flaky.png",
        "cmyk": f"{b}/cmyk.jpg",
        "alpha": f"{b}/alpha.png",
        "redirect": f"{b}/redirect",
        "file_rel": "file:data/external/shoe.png",
        "file_abs": f"file://{tmp_path / 'data' / 'external' / 'shoe.png'}",
        "file_outside": f"file://{outside / 'secret.png'}",
        "file_symlink_out": "file:data/external/link.png",
        "file_dotdot": f"file:data/../../{outside.name}/secret.png",
        "file_passwd": "file:///etc/passwd",
        "missing": f"{b}/missing.png",
        "forbidden": f"{b}/forbidden.png",
        "always500": f"{b}/always500.png",
        "slow": f"{b}/slow.png",
        "truncated": f"{b}/truncated.jpg",
        "html": f"{b}/page.html",
        "empty": f"{b}/empty.png",
        "bomb": f"{b}/bomb.png",
        "bomb2": f"{b}/bomb2.png",
        "tiny": f"{b}/tiny.png",
        "garbage": f"{b}/garbage.bin",
        "placeholder": "N.A.",
        "refused": f"http://127.0.0.1:{closed_port()}/x.png",
        "file_missing": "file:data/external/nope.png",
    }
    write_catalog(Path("data/catalog.parquet"), urls)
    params = validate_params({"download": DOWNLOAD})

    run_download(
        params, Path("data/catalog.parquet"), Path("data/images"), Path("data/manifest.parquet"), Path("cache")
    )

    manifest = pd.read_parquet("data/manifest.parquet").set_index("product_id")
    assert set(manifest.index) == set(urls)
    got = {pid: (row.status, row.reason) for pid, row in manifest.iterrows()}
    assert got == EXPECTED
    assert shop.counts["/flaky.png"] == 2  # retried after the 500
    assert shop.counts["/missing.png"] == 1 and shop.counts["/forbidden.png"] == 1  # 4xx never retried
    assert shop.counts["/always500.png"] == 2  # 1 try + download.retries=1

    ok = manifest[manifest.status == "ok"]
    for pid, row in ok.iterrows():
        assert row.image == f"data/images/{image_file_stem(pid)}.png"
        with Image.open(row.image) as img:
            assert img.mode == "RGB" and img.size == (row.width, row.height)
            assert max(img.size) <= 256
    assert (manifest.loc["big", "width"], manifest.loc["big", "height"]) == (256, 171)
    with Image.open(manifest.loc["alpha", "image"]) as img:
        assert img.getpixel((2, 2)) == (255, 255, 255)  # transparency composited on white
        assert img.getpixel((32, 32)) == (20, 150, 150)
    with Image.open(manifest.loc["cmyk", "image"]) as img:
        r, g, bl = img.getpixel((10, 10))
        assert r > 200 and g < 60 and bl < 60  # CMYK (0, 255, 255, 0) is red
    failed = manifest[manifest.status == "failed"]
    assert (failed.image == "").all() and (failed.width == 0).all()
    assert sorted(p.name for p in Path("data/images").iterdir()) == sorted(
        f"{image_file_stem(pid)}.png" for pid in ok.index
    )
    assert no_temporaries(tmp_path) == []

    # rerun: finished images are not requested again
    before = len(shop.log)
    run_download(
        params, Path("data/catalog.parquet"), Path("data/images"), Path("data/manifest.parquet"), Path("cache")
    )
    again = shop.log[before:]
    for pid in ["ok", "big", "flaky", "cmyk", "alpha", "redirect"]:
        assert urls[pid].removeprefix(b) not in again
    assert "/ok2.png" not in again
    assert pd.read_parquet("data/manifest.parquet").equals(manifest.reset_index())


def test_too_many_failures_raise_after_writing_the_manifest(shop, tmp_path):
    write_catalog(
        tmp_path / "catalog.parquet", {"a": f"{shop.base}/ok.png", "b": f"{shop.base}/missing.png", "c": "N.A."}
    )
    params = validate_params({"download": {**DOWNLOAD, "max_failed_fraction": 0.5}})
    with pytest.raises(DownloadError, match=r"download\.max_failed_fraction=0\.5"):
        run_download(
            params, tmp_path / "catalog.parquet", tmp_path / "images", tmp_path / "manifest.parquet", tmp_path / "cache"
        )
    manifest = pd.read_parquet(tmp_path / "manifest.parquet")
    assert list(manifest.status) == ["ok", "failed", "failed"]


def test_modes_are_converted_to_rgb():
    dl = validate_params({}).download
    pal = Image.new("P", (40, 40), 1)
    pal.putpalette([0, 0, 0, 200, 30, 40] + [0] * 762)
    pal.info["transparency"] = 0
    pal.putpixel((0, 0), 0)
    buf = io.BytesIO()
    pal.save(buf, format="PNG", transparency=0)
    out, w, h = normalise_image(buf.getvalue(), dl)
    with Image.open(io.BytesIO(out)) as img:
        assert img.mode == "RGB" and (w, h) == (40, 40)
        assert img.getpixel((0, 0)) == (255, 255, 255) and img.getpixel((5, 5)) == (200, 30, 40)
    la = io.BytesIO()
    Image.new("LA", (40, 40), (90, 255)).save(la, format="PNG")
    out, _, _ = normalise_image(la.getvalue(), dl)
    assert Image.open(io.BytesIO(out)).getpixel((3, 3)) == (90, 90, 90)
    with pytest.raises(ImageRejected) as err:
        normalise_image(b"   <html><body>x</body></html>", dl)
    assert err.value.reason == "not_an_image"


KILL_SCRIPT = """
import sys
from pathlib import Path
from brandcap.stages.download import run_download
from brandcap.config.params import validate_params
params = validate_params({"download": {"concurrency": 2, "timeout_s": 5, "retries": 0}})
run_download(params, Path("catalog.parquet"), Path("images"), Path("manifest.parquet"), Path("cache"))
"""


def test_kill_9_mid_run_then_rerun_fetches_nothing_finished_again(shop, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    n = 24
    urls = {f"p{i:02d}": f"{shop.base}/slowshop/{i}.png" for i in range(n)}
    write_catalog(Path("catalog.parquet"), urls)
    shop.delay_s = 0.25
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 30
    while time.time() < deadline and len(list(Path("cache").glob("*.png"))) < 6:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.name.split(".")[0].rsplit("-", 1)[0] for p in Path("cache").glob("*.png")}  # <slug>-<hash>.<key>.png
    assert 6 <= len(finished) < n, "the run should be killed part-way"
    assert not Path("manifest.parquet").exists()
    killed_at = len(shop.log)

    shop.delay_s = 0.0
    params = validate_params({"download": {"concurrency": 4, "timeout_s": 5, "retries": 0}})
    run_download(params, Path("catalog.parquet"), Path("images"), Path("manifest.parquet"), Path("cache"))

    refetched = {p for p in shop.log[killed_at:]}
    assert not refetched & {urls[pid].removeprefix(shop.base) for pid in finished}
    assert len(refetched) == n - len(finished)  # the unfinished ones, each asked once
    manifest = pd.read_parquet("manifest.parquet")
    assert (manifest.status == "ok").all() and len(manifest) == n
    assert no_temporaries(tmp_path) == []


def test_synthetic_shop_over_loopback_http(tmp_path, monkeypatch, caplog):
    """The default profile's path: catalog of the synthetic shop, served on 127.0.0.1 by the stage itself."""
    from brandcap.stages.catalog import run_catalog

    monkeypatch.chdir(tmp_path)
    params = validate_params(
        {
            "data": {"sample_size": 60, "synthetic": {"n_brands": 5, "serve_over_http": True}},
            "download": {"max_failed_fraction": 0.1},
        }
    )
    run_catalog(params, Path("data/raw/catalog.parquet"), Path("data/raw/shop"))
    with caplog.at_level(logging.INFO, logger="brandcap.stages.download"):
        run_download(
            params,
            Path("data/raw/catalog.parquet"),
            Path("data/raw/images"),
            Path("data/raw/manifest.parquet"),
            Path("data/cache"),
        )
    assert "57 ok (57 fetched, 0 resumed), 2 failed" in caplog.text
    assert re.search(r"\b59 HTTP requests", caplog.text)  # every image went through the loopback server
    manifest = pd.read_parquet("data/raw/manifest.parquet")
    assert len(manifest) == 59  # one placeholder dropped by the catalog
    assert sorted(manifest.loc[manifest.status == "failed", "reason"]) == [
        "not_an_image",
        "truncated",
    ]  # the injected broken files
    assert set(manifest.category) <= {"tote bags", "sneakers", "dresses", "jackets", "hats", "watches"}
    ok = manifest[manifest.status == "ok"]
    assert all(Path(p).exists() for p in ok.image) and (ok.width == 64).all()


# ----------------------------------------------------------------------------- hostile product ids
def hostile_ids(outside: Path) -> list[str]:
    return [
        "../../escape",
        "../escape",
        "..",
        ".",
        "./.hidden",
        str(outside / "absolute"),  # paths
        "a/b",
        "a\\b",
        "a_b",
        "A_B",
        "a b",
        "a:b",  # equal once slugged, and case-insensitively
        "nul\x00byte",
        "x" * 300,
        "é" * 200,
        "Été ☃ 名前",
        "名前",
        "e",
        "é",
        "-rf",
        " padded ",
    ]


def test_hostile_product_ids_stay_inside_the_images_folder(tmp_path, monkeypatch):
    """Ids come from external tables: none may name a path, and each keeps a file of its own."""
    work = tmp_path / "work"
    (work / "data" / "shop").mkdir(parents=True)
    monkeypatch.chdir(work)
    ids = hostile_ids(tmp_path / "outside")
    colours = {pid: (i * 11 % 256, 255 - i * 7, (i * 37) % 256) for i, pid in enumerate(ids)}
    urls = {}
    for i, pid in enumerate(ids):
        Path(f"data/shop/{i}.png").write_bytes(png(colour=colours[pid]))
        urls[pid] = f"file:data/shop/{i}.png"
    write_catalog(Path("catalog.parquet"), urls)
    before = {p for p in tmp_path.rglob("*")}
    params = validate_params({"download": DOWNLOAD})

    run_download(params, Path("catalog.parquet"), Path("data/images"), Path("data/manifest.parquet"), Path("cache"))

    written = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    allowed = (work / "data" / "images", work / "cache")
    strays = [
        p
        for p in written
        if not p.is_relative_to(allowed[0])
        and not p.is_relative_to(allowed[1])
        and p.name not in ("manifest.parquet", "failures.csv")
    ]
    assert strays == []
    assert not (tmp_path / "outside").exists()
    manifest = pd.read_parquet("data/manifest.parquet")
    assert list(manifest.product_id) == ids and (manifest.status == "ok").all()
    assert manifest.image.is_unique
    assert sorted(p.name for p in Path("data/images").iterdir()) == sorted(Path(p).name for p in manifest.image)
    for pid, image in zip(manifest.product_id, manifest.image):
        path = Path(image)
        assert path.parent == Path("data/images") and len(path.name.encode()) <= 64, image
        assert path.name.isascii() and not path.name.startswith(("-", "."))
        with Image.open(path) as img:
            assert img.getpixel((5, 5)) == colours[pid]  # its own image, not another id's


def test_empty_catalog_and_missing_ids_fail_before_any_work(tmp_path):
    params = validate_params({"download": DOWNLOAD})
    args = (tmp_path / "images", tmp_path / "manifest.parquet", tmp_path / "cache")
    write_catalog(tmp_path / "empty.parquet", {})
    with pytest.raises(ValueError, match=r"empty\.parquet: the catalog has no rows; rerun the catalog stage"):
        run_download(params, tmp_path / "empty.parquet", *args)
    pd.DataFrame(
        {"product_id": ["a", None], "brand": ["B", "B"], "title": ["t", "t"], "imageurl": ["N.A.", "N.A."]}
    ).to_parquet(tmp_path / "noid.parquet")
    with pytest.raises(ValueError, match=r"noid\.parquet: 1 row\(s\) without a product_id"):
        run_download(params, tmp_path / "noid.parquet", *args)
    assert not (tmp_path / "manifest.parquet").exists()


def test_failure_report_survives_the_deleted_manifest(shop, tmp_path):
    """Snakemake deletes the outputs of a failed job: the message points to a report beside the log."""
    write_catalog(
        tmp_path / "catalog.parquet", {"a": f"{shop.base}/ok.png", "b": f"{shop.base}/missing.png", "c": "N.A."}
    )
    params = validate_params({"download": {**DOWNLOAD, "max_failed_fraction": 0.5}})
    report = tmp_path / "logs" / "download.failures.csv"
    with pytest.raises(DownloadError) as err:
        run_download(
            params,
            tmp_path / "catalog.parquet",
            tmp_path / "images",
            tmp_path / "manifest.parquet",
            tmp_path / "cache",
            failure_report=report,
        )
    assert f"see {report} for each failure" in str(err.value)
    assert "manifest" not in str(err.value)
    (tmp_path / "manifest.parquet").unlink()  # what Snakemake does to a failed job's outputs
    failures = pd.read_csv(report, keep_default_na=False)
    assert failures.to_dict("records") == [
        {"product_id": "b", "imageurl": f"{shop.base}/missing.png", "reason": "http_404", "detail": "http_404"},
        {"product_id": "c", "imageurl": "N.A.", "reason": "placeholder_url", "detail": ""},
    ]


def test_download_entry_script_keeps_the_failure_report_beside_its_log(tmp_path):
    write_catalog(tmp_path / "catalog.parquet", {"a": "N.A."})
    params = tmp_path / "params.yaml"
    params.write_text("download:\n  max_failed_fraction: 0.5\n")
    run = subprocess.run(
        [
            sys.executable,
            REPO / "workflow/scripts/download.py",
            "--params",
            params,
            "--catalog",
            "catalog.parquet",
            "--images",
            "images",
            "--manifest",
            "manifest.parquet",
            "--resume",
            "cache",
            "--log",
            "logs/download.log",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert run.returncode != 0
    assert "see logs/download.failures.csv for each failure" in run.stderr
    assert "see logs/download.failures.csv" in (tmp_path / "logs/download.log").read_text()
    assert pd.read_csv(tmp_path / "logs/download.failures.csv").product_id.tolist() == ["a"]


def test_a_full_disk_stops_the_stage_naming_the_file(tmp_path, monkeypatch):
    """ENOSPC is not the image's fault: no per-image failures, no manifest, the path in the message."""
    from brandcap.files.atomic import DiskFullError

    monkeypatch.chdir(tmp_path)
    Path("data/shop").mkdir(parents=True)
    urls = {}
    for i in range(6):
        Path(f"data/shop/{i}.png").write_bytes(png(colour=(i * 30, 80, 80)))
        urls[f"p{i}"] = f"file:data/shop/{i}.png"
    write_catalog(Path("catalog.parquet"), urls)

    def disk_full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(
        DiskFullError, match=r"cache/p\d-[0-9a-f]{12}\.[0-9a-f]{12}\.png: cannot write it, the disk is full"
    ):
        run_download(
            validate_params({"download": DOWNLOAD}),
            Path("catalog.parquet"),
            Path("images"),
            Path("manifest.parquet"),
            Path("cache"),
        )
    assert not Path("manifest.parquet").exists()
    assert no_temporaries(tmp_path) == []


def test_a_rerun_removes_its_own_stale_temporaries_and_no_other_jobs(shop, tmp_path, monkeypatch):
    """data/raw/ is shared with jobs running beside the download (make run uses every core): their
    temporaries there are in use (a general set being staged, a file being written) and must survive."""
    monkeypatch.chdir(tmp_path)
    write_catalog(Path("catalog.parquet"), {"ok": f"{shop.base}/ok.png"})
    raw = Path("data/raw")
    (raw / "images").mkdir(parents=True)
    own = [
        raw / ".manifest.parquet.dead0001.tmp",
        raw / "images" / ".ok-1234.png.dead0002.tmp",
        Path("cache/.x.dead0003.tmp"),
    ]
    others = [raw / ".general_train.beef0001.tmp", raw / ".catalog.parquet.beef0002.tmp"]
    for path in own + others[1:]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    others[0].mkdir()
    (others[0] / "general_train.jsonl").write_text("{}\n")

    run_download(
        validate_params({"download": DOWNLOAD}),
        Path("catalog.parquet"),
        raw / "images",
        raw / "manifest.parquet",
        Path("cache"),
    )

    assert [p for p in own if p.exists()] == []
    assert all(p.exists() for p in others) and (others[0] / "general_train.jsonl").exists()
