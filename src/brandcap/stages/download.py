"""download stage: fetch, validate and normalise every catalog image; record every failure.

    from brandcap.stages.download import run_download
    run_download(params, Path("data/raw/catalog.parquet"), Path("data/raw/images"),
                 Path("data/raw/manifest.parquet"), Path(".resume/download"))

- asyncio + aiohttp, at most `download.concurrency` requests in flight, a per-request
  timeout, retries with exponential backoff and full jitter on timeouts, connection errors,
  408/429 and 5xx (never on other 4xx), redirects followed; `http(s)://` and `file:` URLs
  (`file:rel/path` resolves against the cwd, `file:///abs/path` is absolute).
- Every image is decoded in full, checked (decompression bomb, minimum side, HTML or empty
  bodies), converted to RGB (CMYK, palette, alpha composited on white), resized so its longer
  side is at most `download.max_side`, and stored as PNG by an atomic write.
- Resume: finished images live in `resume_dir`, a cache that the orchestrators never delete
  (DVC and Snakemake delete a stage's outputs before rerunning it). A rerun, also after
  kill -9, makes no request for an image already there. At the end `images_dir/<stem>.png` is
  materialised from it (hard link, copy as fallback).
- File names never come from a product id as given (ids come from external tables and may be
  `../x`, absolute, very long or odd Unicode): `image_file_stem` makes a readable ASCII slug of
  the id plus a hash of the exact id, so distinct ids never share a file.
- `manifest.parquet`: one row per catalog product: product_id, brand, title, category,
  imageurl, status ('ok'/'failed'), reason, image (`images_dir/<stem>.png` or ''), sha256,
  width, height, bytes. Reasons: placeholder_url, invalid_url, http_404, http_4xx, http_5xx,
  http_3xx, http_408, http_429, timeout, connection_error, too_many_redirects, client_error,
  file_not_found, file_unreadable, local_file_outside_project (a file: URL outside the project's
  data/ folder, never read), too_large, empty, not_an_image, truncated, corrupt,
  too_small, decompression_bomb, error (anything unexpected; logged at DEBUG).
- The failure report (product_id, imageurl, reason, detail of every failed image) is written as
  CSV to `failure_report` (the entry script puts it beside the stage log, logs/download.failures.csv:
  orchestrators delete a failed job's outputs, never its logs). Raises DownloadError, naming that
  report, when the failed fraction exceeds `download.max_failed_fraction`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import random
import socket
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import aiohttp
import pandas as pd
from aiohttp import web
from PIL import Image

from brandcap.config.params import EXTERNAL_DATA_DIR, DownloadParams, Params
from brandcap.files.atomic import (
    DiskFullError,
    atomic_path,
    clear_owned_folder_of_temporaries,
    place_link_or_copy,
    remove_stale_temporaries,
    write_bytes,
    write_parquet,
)
from brandcap.files.digests import bytes_sha256, text_sha256
from brandcap.files.images import png_bytes, shrunk, upright_rgb
from brandcap.files.product_table import artifact_path, category_text, image_file_stem, is_image_url
from brandcap.files.stage_records import check_columns
from brandcap.running.progress import Progress, progress
from brandcap.running.resume_state import prepare_resume_dir, stage_fingerprint

log = logging.getLogger(__name__)

# file: URLs are read only inside the project's data folder: the synthetic shop's images (data/raw/shop) and
# a user's own (data/external/). A product table could otherwise make the pipeline read any local file and
# send it to the captioning endpoint.
LOCAL_IMAGE_ROOT = Path("data")

RETRYABLE_STATUS = {408, 429}  # transient by definition, although 4xx
MANIFEST_COLUMNS = [
    "product_id",
    "brand",
    "title",
    "category",
    "imageurl",
    "status",
    "reason",
    "image",
    "sha256",
    "width",
    "height",
    "bytes",
]


class DownloadError(RuntimeError):
    """Too many images failed; the manifest was written and names every failure."""


class ImageRejected(Exception):
    """An image failed; `reason` is the manifest's short code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class _Retryable(ImageRejected):
    """A failure worth another attempt (timeout, connection error, 5xx)."""


# ----------------------------------------------------------------------------- images
def normalise_image(data: bytes, dl: DownloadParams) -> tuple[bytes, int, int]:
    """Validate raw bytes as an image and return (PNG bytes, width, height) in RGB."""
    if not data:
        raise ImageRejected("empty")
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{")):
        raise ImageRejected("not_an_image", "markup or JSON body")
    try:
        img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageRejected("decompression_bomb", str(err)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # UnidentifiedImageError is an OSError
        raise ImageRejected("not_an_image", str(err)) from None
    with img:
        width, height = img.size
        if width * height > dl.max_pixels:
            raise ImageRejected("decompression_bomb", f"{width}x{height} exceeds download.max_pixels={dl.max_pixels}")
        if min(width, height) < dl.min_side:
            raise ImageRejected("too_small", f"{width}x{height} below download.min_side={dl.min_side}")
        try:
            img.load()  # decodes every byte: truncated files fail here, not later in training
            rgb = upright_rgb(img)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageRejected("decompression_bomb", str(err)) from None
        except OSError as err:
            reason = "truncated" if "truncat" in str(err).lower() else "corrupt"
            raise ImageRejected(reason, str(err)) from None
        except (SyntaxError, ValueError, EOFError, MemoryError) as err:
            raise ImageRejected("corrupt", str(err)) from None
    rgb = shrunk(rgb, dl.max_side)
    return png_bytes(rgb), rgb.size[0], rgb.size[1]


# ----------------------------------------------------------------------------- fetching
def file_url_path(url: str) -> Path:
    """`file:rel/path` -> cwd-relative path; `file:/abs`, `file:///abs`, `file://localhost/abs` -> absolute.
    Only a file under the project's data folder (`LOCAL_IMAGE_ROOT`, symlinks resolved) is ever read:
    anything else is refused as `local_file_outside_project`."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ImageRejected("invalid_url", f"file URL with host {parts.netloc!r}")
    path = Path(unquote(parts.path))
    if not is_project_data(path):
        raise ImageRejected(
            "local_file_outside_project",
            f"{path} lies outside the project's {LOCAL_IMAGE_ROOT}/ folder (symlinks "
            f"resolved), so it is not read; copy the image under {EXTERNAL_DATA_DIR}/ and point its URL there",
        )
    return path


def is_project_data(path: Path) -> bool:
    """Whether `path` (relative to the project root, the working directory) resolves into LOCAL_IMAGE_ROOT."""
    return (Path.cwd() / path).resolve().is_relative_to((Path.cwd() / LOCAL_IMAGE_ROOT).resolve())


@dataclass
class _Fetcher:
    dl: DownloadParams
    session: aiohttp.ClientSession
    rewrite: dict[str, str] = field(default_factory=dict)  # file: URL -> loopback http URL
    requests: int = 0

    async def fetch(self, url: str) -> bytes:
        """Bytes of one URL, with retries; raises ImageRejected with the final reason."""
        url = self.rewrite.get(url, url)
        attempt = 0
        while True:
            try:
                return await self._fetch_once(url)
            except _Retryable as err:
                if attempt >= self.dl.retries:
                    raise ImageRejected(err.reason, str(err)) from None
                # exponential backoff with full jitter: spreads retries of many failures apart
                await asyncio.sleep(random.uniform(0, self.dl.backoff_s * 2**attempt))
                attempt += 1

    async def _fetch_once(self, url: str) -> bytes:
        if url.lower().startswith("file:"):
            path = file_url_path(url)
            try:
                size = path.stat().st_size
                if size > self.dl.max_bytes:
                    raise ImageRejected("too_large", f"{size} bytes > download.max_bytes")
                return await asyncio.to_thread(path.read_bytes)
            except FileNotFoundError:
                raise ImageRejected("file_not_found", str(path)) from None
            except (IsADirectoryError, PermissionError) as err:
                raise ImageRejected("file_unreadable", str(err)) from None
        self.requests += 1
        try:
            async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=self.dl.timeout_s)) as resp:
                status = resp.status
                if status >= 500 or status in RETRYABLE_STATUS:
                    raise _Retryable("http_5xx" if status >= 500 else f"http_{status}", f"HTTP {status}")
                if status == 404:
                    raise ImageRejected("http_404")
                if status >= 400:
                    raise ImageRejected("http_4xx", f"HTTP {status}")
                if status >= 300:
                    raise ImageRejected("http_3xx", f"unfollowed redirect {status}")
                if (resp.content_length or 0) > self.dl.max_bytes:
                    raise ImageRejected("too_large", f"{resp.content_length} bytes > download.max_bytes")
                if resp.content_length is not None:
                    return await resp.read()
                body = bytearray()  # no length announced: count as it streams
                async for chunk in resp.content.iter_chunked(1 << 16):
                    body += chunk
                    if len(body) > self.dl.max_bytes:
                        raise ImageRejected("too_large", f"more than download.max_bytes={self.dl.max_bytes}")
                return bytes(body)
        except ImageRejected:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError) as err:
            raise _Retryable("timeout", str(err) or "timed out") from None
        except aiohttp.TooManyRedirects as err:
            raise ImageRejected("too_many_redirects", str(err)) from None
        except aiohttp.InvalidURL as err:
            raise ImageRejected("invalid_url", str(err)) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as err:
            raise _Retryable("connection_error", str(err) or type(err).__name__) from None
        except aiohttp.ClientError as err:
            raise ImageRejected("client_error", str(err) or type(err).__name__) from None


# ----------------------------------------------------------------------------- the shop over HTTP
@contextlib.asynccontextmanager
async def _serve_files_over_http(paths: list[str]):
    """A loopback server for the synthetic shop's files; yields {file URL: http URL}."""
    allowed = {}
    for url in paths:
        allowed["/" + quote(str(file_url_path(url)).lstrip("/"))] = file_url_path(url)

    async def handle(request: web.Request) -> web.StreamResponse:
        path = allowed.get(request.raw_path.split("?", 1)[0])
        if path is None or not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=await asyncio.to_thread(path.read_bytes), content_type="image/png")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    port = sock.getsockname()[1]
    try:
        yield {url: f"http://127.0.0.1:{port}/" + quote(str(file_url_path(url)).lstrip("/")) for url in paths}
    finally:
        await runner.cleanup()


# ----------------------------------------------------------------------------- resume cache
def cache_key(url: str, dl: DownloadParams) -> str:
    """Changes whenever the stored image would differ: another URL or other image settings."""
    text = f"{url}\n{dl.max_side}\n{dl.min_side}\n{dl.max_pixels}"
    return text_sha256(text)[:12]


def _cached_image(path: Path) -> tuple[str, int, int, int] | None:
    """(sha256, width, height, bytes) of a valid cached PNG, else None (and the file is removed)."""
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            img.verify()  # chunk CRCs; cheap, no full decode
            width, height = img.size
        return bytes_sha256(data), width, height, len(data)
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - anything unreadable is refetched
        path.unlink(missing_ok=True)
        return None


def _store(data: bytes, dl: DownloadParams, path: Path) -> tuple[str, int, int, int]:
    """Normalise and atomically store one image; (sha256, width, height, bytes) of the PNG."""
    png, width, height = normalise_image(data, dl)
    write_bytes(path, png)
    return bytes_sha256(png), width, height, len(png)


def _remove_stale_temporaries(own_dirs: Sequence[Path], own_files: Sequence[Path]) -> None:
    """Temporaries of a run killed mid-write: any in the folders this stage owns, only its own files'
    beside them (data/raw/ and logs/ are shared with jobs running side by side)."""
    for d in own_dirs:
        clear_owned_folder_of_temporaries(d)
    for path in own_files:
        remove_stale_temporaries(path)


# ----------------------------------------------------------------------------- the stage
def _resumed_and_todo(
    rows: list[dict], dl: DownloadParams, resume_dir: Path, bar: Progress
) -> tuple[dict[str, dict], list[tuple[dict, Path]]]:
    """Results for placeholder URLs and images already in the resume folder; the rest to fetch."""
    results: dict[str, dict] = {}
    todo = []
    for row in rows:
        url = row["imageurl"]
        if not is_image_url(url):
            results[row["product_id"]] = {"status": "failed", "reason": "placeholder_url"}
            bar.update(1)
            continue
        cached = resume_dir / f"{image_file_stem(row['product_id'])}.{cache_key(url, dl)}.png"
        info = _cached_image(cached)
        if info is not None:
            results[row["product_id"]] = {"status": "ok", "reason": "", "cache": cached, "info": info, "resumed": True}
            bar.update(1)
            continue
        todo.append((row, cached))
    return results, todo


class _FetchAndStore:
    """Workers that fetch images and hand each one to a decode-and-write task.

    Decoding and writing run beside the fetches, so a slot is free for the next request as soon as
    its bytes arrived; the bound on tasks in processing keeps memory flat when the CPU is the bottleneck.
    """

    def __init__(self, dl: DownloadParams, fetcher: _Fetcher, results: dict[str, dict], bar: Progress):
        self.dl, self.fetcher, self.results, self.bar = dl, fetcher, results, bar
        self.processing_slots = asyncio.Semaphore(2 * dl.concurrency)
        self.processing: set[asyncio.Task] = set()
        self.disk_full: list[DiskFullError] = []

    def record_failure(self, pid: str, err: Exception) -> None:
        if isinstance(err, ImageRejected):
            self.results[pid] = {"status": "failed", "reason": err.reason, "detail": str(err)}
        else:  # one odd image must not end the stage
            log.debug("unexpected error for %s", pid, exc_info=err)
            self.results[pid] = {"status": "failed", "reason": "error", "detail": f"{type(err).__name__}: {err}"}
        self.bar.update(1)

    async def process(self, pid: str, data: bytes, cached: Path) -> None:
        try:
            info = await asyncio.to_thread(_store, data, self.dl, cached)  # CPU work off the event loop
            self.results[pid] = {"status": "ok", "reason": "", "cache": cached, "info": info, "resumed": False}
            self.bar.update(1)
        except DiskFullError as err:  # not the image's fault: stop the stage
            self.disk_full.append(err)
        except Exception as err:  # noqa: BLE001
            self.record_failure(pid, err)
        finally:
            self.processing_slots.release()

    async def worker(self, queue: asyncio.Queue) -> None:
        while not self.disk_full:
            try:
                row, cached = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            pid = row["product_id"]
            try:
                data = await self.fetcher.fetch(row["imageurl"])
            except Exception as err:  # noqa: BLE001
                self.record_failure(pid, err)
                continue
            await self.processing_slots.acquire()
            task = asyncio.create_task(self.process(pid, data, cached))
            self.processing.add(task)
            task.add_done_callback(self.processing.discard)

    async def run(self, todo: list[tuple[dict, Path]]) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        for item in todo:
            queue.put_nowait(item)
        await asyncio.gather(*(self.worker(queue) for _ in range(min(self.dl.concurrency, max(1, len(todo))))))
        while self.processing:
            await asyncio.gather(*list(self.processing))
        if self.disk_full:
            raise self.disk_full[0]


def _readable_file_url(url: str) -> bool:
    """Whether the loopback server may serve this file: URL (one it would refuse fails when fetched)."""
    try:
        file_url_path(url)
    except ImageRejected:
        return False
    return True


async def _download_all(
    rows: list[dict], dl: DownloadParams, resume_dir: Path, serve_shop: bool, bar: Progress
) -> tuple[dict[str, dict], int]:
    """Per product_id: status, reason, cached file and (sha256, width, height, bytes); and the HTTP request count."""
    results, todo = _resumed_and_todo(rows, dl, resume_dir, bar)
    file_urls = [
        row["imageurl"]
        for row, _ in todo
        if row["imageurl"].lower().startswith("file:") and _readable_file_url(row["imageurl"])
    ]
    server = _serve_files_over_http(file_urls) if serve_shop and file_urls else contextlib.nullcontext({})
    connector = aiohttp.TCPConnector(limit=dl.concurrency, limit_per_host=dl.concurrency)
    async with (
        server as rewrite,
        aiohttp.ClientSession(connector=connector, headers={"User-Agent": "brandcap/0.1"}) as session,
    ):
        fetcher = _Fetcher(dl, session, rewrite)
        await _FetchAndStore(dl, fetcher, results, bar).run(todo)
    return results, fetcher.requests


def read_catalog(catalog_path: Path) -> pd.DataFrame:
    """The catalog table, refused early (naming the file) when it cannot feed the stage."""
    if not catalog_path.exists():
        raise FileNotFoundError(f"{catalog_path}: catalog not found; run the catalog stage first")
    catalog = pd.read_parquet(catalog_path)
    check_columns(
        catalog.columns, ("product_id", "brand", "title", "imageurl"), catalog_path, "write it with the catalog stage"
    )
    if catalog.empty:
        raise ValueError(
            f"{catalog_path}: the catalog has no rows; rerun the catalog stage and check its log for what it dropped"
        )
    ids = catalog["product_id"]
    no_id = ids.isna() | (ids.astype(str).str.strip() == "")
    if no_id.any():
        raise ValueError(
            f"{catalog_path}: {int(no_id.sum())} row(s) without a product_id; write it with the catalog stage"
        )
    if ids.duplicated().any():
        raise ValueError(f"{catalog_path}: product_id values repeat; write it with the catalog stage")
    catalog["product_id"] = ids.astype(str)
    return catalog


def write_failure_report(path: Path, results: dict[str, dict], catalog: pd.DataFrame) -> None:
    """One CSV row per failed image, in catalog order: product_id, imageurl, reason, detail."""
    failed = [
        {"product_id": pid, "imageurl": url, "reason": results[pid]["reason"], "detail": results[pid].get("detail", "")}
        for pid, url in zip(catalog["product_id"], catalog["imageurl"])
        if results[pid]["status"] == "failed"
    ]
    frame = pd.DataFrame(failed, columns=["product_id", "imageurl", "reason", "detail"])
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _catalog_rows(catalog: pd.DataFrame) -> list[dict]:
    rows = catalog.to_dict("records")
    for row in rows:
        row["imageurl"] = str(row["imageurl"] or "").strip() if row["imageurl"] is not None else ""
    return rows


def _manifest(catalog: pd.DataFrame, results: dict[str, dict], images_dir: Path) -> pd.DataFrame:
    """One manifest row per catalog row; fetched images linked (or copied) into images_dir, and the
    images of products no longer in the catalog removed from it."""
    keep = set()
    records = []
    images_prefix = artifact_path(images_dir)
    for row in catalog.to_dict("records"):
        pid = row["product_id"]
        res = results[pid]
        rec = {
            "product_id": pid,
            "brand": row["brand"],
            "title": row["title"],
            "category": category_text(row),
            "imageurl": row["imageurl"] if isinstance(row["imageurl"], str) else "",
            "status": res["status"],
            "reason": res["reason"],
            "image": "",
            "sha256": "",
            "width": 0,
            "height": 0,
            "bytes": 0,
        }
        if res["status"] == "ok":
            target = images_dir / f"{image_file_stem(pid)}.png"
            place_link_or_copy(res["cache"], target)
            keep.add(target.name)
            sha, width, height, size = res["info"]
            rec.update(image=f"{images_prefix}/{target.name}", sha256=sha, width=width, height=height, bytes=size)
        records.append(rec)
    for stale in images_dir.glob("*.png"):
        if stale.name not in keep:
            stale.unlink()
    return pd.DataFrame(records, columns=MANIFEST_COLUMNS).astype(
        {"width": "int64", "height": "int64", "bytes": "int64"}
    )


def _log_summary(manifest: pd.DataFrame, results: dict[str, dict], elapsed: float, n_requests: int) -> None:
    ok = manifest["status"] == "ok"
    failures = Counter(manifest.loc[~ok, "reason"])
    fetched = sum(1 for r in results.values() if r["status"] == "ok" and not r.get("resumed"))
    resumed = sum(1 for r in results.values() if r.get("resumed"))
    megabytes = manifest.loc[ok, "bytes"].sum() / 1e6
    log.info(
        "download: %d ok (%d fetched, %d resumed), %d failed%s, %.1f MB, %.1f images/s over %.1f s, %d HTTP requests",
        int(ok.sum()),
        fetched,
        resumed,
        int((~ok).sum()),
        " (" + ", ".join(f"{k}={v}" for k, v in failures.most_common()) + ")" if failures else "",
        megabytes,
        len(manifest) / elapsed if elapsed > 0 else 0.0,
        elapsed,
        n_requests,
    )
    for pid, res in results.items():
        if res["status"] == "failed" and res.get("detail"):
            log.debug("failed %s: %s", pid, res["detail"])


def _check_failed_fraction(manifest: pd.DataFrame, dl: DownloadParams, failure_report: Path) -> None:
    ok = manifest["status"] == "ok"
    failed_fraction = float((~ok).mean()) if len(manifest) else 0.0
    if failed_fraction > dl.max_failed_fraction:
        failures = Counter(manifest.loc[~ok, "reason"])
        raise DownloadError(
            f"{failed_fraction:.1%} of {len(manifest)} images failed ({dict(failures)}), more than "
            f"download.max_failed_fraction={dl.max_failed_fraction}; see {failure_report} for each failure "
            f"(product_id, imageurl, reason), fix the source or raise download.max_failed_fraction"
        )


def run_download(
    params: Params,
    catalog_path: Path,
    images_dir: Path,
    manifest_path: Path,
    resume_dir: Path,
    failure_report: Path | None = None,
) -> None:
    """Fetch every catalog image into resume_dir, materialise images_dir, write manifest_path and the
    failure report (default: resume_dir/failures.csv; both survive an orchestrator's cleanup)."""
    dl = params.download
    catalog_path, images_dir, manifest_path, resume_dir = map(
        Path, (catalog_path, images_dir, manifest_path, resume_dir)
    )
    failure_report = Path(failure_report) if failure_report is not None else resume_dir / "failures.csv"
    catalog = read_catalog(catalog_path)
    # Each cached image is keyed by its URL and the settings that shape it; other such settings or other
    # code (another normaliser) make the whole cache stale (brandcap.running.resume_state). Concurrency,
    # timeouts and retries change no image, so they keep it.
    shaping = dl.model_dump(include={"max_side", "min_side", "max_pixels", "max_bytes"})
    prepare_resume_dir(resume_dir, stage_fingerprint("brandcap.stages.download", {}, {"download": shaping}))
    images_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries([resume_dir, images_dir], [manifest_path, failure_report])

    rows = _catalog_rows(catalog)
    serve_shop = params.data.source == "synthetic" and params.data.synthetic.serve_over_http
    started = time.perf_counter()
    with warnings.catch_warnings(), progress(len(rows), "download", unit="img", logger=log) as bar:
        # PIL only warns above its own limit; a bomb must fail like any other bad image
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        results, n_requests = asyncio.run(_download_all(rows, dl, resume_dir, serve_shop, bar))
    elapsed = time.perf_counter() - started

    manifest = _manifest(catalog, results, images_dir)
    write_parquet(manifest_path, manifest)
    _log_summary(manifest, results, elapsed, n_requests)
    write_failure_report(failure_report, results, catalog)
    _check_failed_fraction(manifest, dl, failure_report)
