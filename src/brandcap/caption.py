"""caption stage: a brand-aware caption of every downloaded image from an OpenAI-compatible VLM.

    python workflow/scripts/caption.py --params params.yaml --manifest data/raw/manifest.parquet \\
        --captions data/interim/captions.jsonl --resume .resume/caption

or from Python: `run_caption(params, manifest_path, captions_path, resume_dir)`.

- Asks `caption.base_url` (vLLM, SGLang, OpenAI, ...) with the official async `openai` client; when
  `caption.base_url` is empty it starts the built-in simulated VLM (`brandcap.simulated_vlm`) on
  127.0.0.1 for the duration of the stage. The API key comes from the environment variable named
  by `caption.api_key_env` and is never logged or written.
- Retries are ours (the client's are off): a concurrency limit, a per-request timeout, exponential
  backoff with full jitter, `Retry-After` honoured on 429/503; a non-retryable answer (400, other
  4xx) is recorded for the item and the run goes on.
- Loop-aware retry: an answer that is a repetition loop or garbled (the clean stage's own
  detectors) is asked again at the next temperature of `caption.retry_temperatures`.
- Cache and resume: `resume_dir/cache.jsonl` holds one appended, flushed record per answered item,
  keyed by a hash of (image sha256, rendered prompt, model, sampling params). A rerun asks only for
  items without a successful record under the current key, so a killed run loses at most the
  requests in flight and a changed prompt or sampling param re-asks exactly the affected items.
  The cache lives outside the stage's outputs because orchestrators delete outputs before a rerun.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import json
import logging
import mimetypes
import os
import random
import sys
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import openai
import pandas as pd
from tqdm import tqdm

from brandcap.atomic import read_jsonl, write_jsonl
from brandcap.clean_rules import is_garbled, is_repetition_loop
from brandcap.params import CaptionParams, CleanParams, Params
from brandcap.simulated_vlm import start_simulated_vlm

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("product_id", "brand", "title", "category", "status", "image", "sha256")
CACHE_NAME = "cache.jsonl"
MAX_RETRY_AFTER_S = 120.0
PLACEHOLDER_API_KEY = "EMPTY"  # vLLM and the simulator accept any key; the client insists on one


class CaptionError(RuntimeError):
    """Too many items got no caption; the message says how many, why, and what to do."""


@dataclass
class Item:
    product_id: str
    brand: str
    title: str
    category: str
    image: str
    sha256: str
    prompt: str
    key: str


# --------------------------------------------------------------------------- keys and items


def endpoint_identity(cp: CaptionParams, seed: int) -> dict[str, Any]:
    """What defines the answering model; the simulated one is defined by its params and seed too."""
    identity: dict[str, Any] = {"model": cp.model}
    if not cp.base_url:
        identity["simulator"] = cp.simulator.model_dump()
        identity["simulator_seed"] = seed
    return identity


def sampling_params(cp: CaptionParams) -> dict[str, Any]:
    return {
        "temperature": cp.temperature,
        "top_p": cp.top_p,
        "max_tokens": cp.max_tokens,
        "presence_penalty": cp.presence_penalty,
        "frequency_penalty": cp.frequency_penalty,
        "seed": cp.seed,
        "extra_body": cp.extra_body,
        "retry_temperatures": cp.retry_temperatures,
    }


def cache_key(image_sha256: str, prompt: str, identity: dict[str, Any], sampling: dict[str, Any]) -> str:
    payload = {"image_sha256": image_sha256, "prompt": prompt, "endpoint": identity, "sampling": sampling}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


# What the prompt says for a field the catalog has no value for (it made 'N.A.' and the like empty).
MISSING_FIELD_TEXT = {"title": "an untitled product", "category": "category not given"}


def prompt_fields(fields: dict[str, str]) -> dict[str, str]:
    """The prompt's {brand}, {title}, {category}; an empty title or category reads as not given."""
    return {k: v.strip() or MISSING_FIELD_TEXT.get(k, "") for k, v in fields.items()}


def load_items(params: Params, manifest_path: str | Path) -> tuple[list[Item], int]:
    """Items to caption (status ok, manifest order, first of duplicate product ids) and the number of duplicates."""
    manifest_path = Path(manifest_path)
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path}: manifest not found; run the download stage first")
    frame = pd.read_parquet(manifest_path)
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{manifest_path}: missing column(s) {missing}; it must come from the download stage (columns {list(MANIFEST_COLUMNS)})")
    cp = params.caption
    identity, sampling = endpoint_identity(cp, params.seed), sampling_params(cp)
    items, seen, duplicates = [], set(), 0
    for row in frame[frame["status"] == "ok"].to_dict("records"):
        product_id = _text(row["product_id"])
        if product_id in seen:
            duplicates += 1
            continue
        seen.add(product_id)
        image = _text(row["image"])
        sha = _text(row["sha256"])
        if not sha:
            try:
                sha = hashlib.sha256(Path(image).read_bytes()).hexdigest()
            except OSError:
                sha = "unreadable"
        fields = {"brand": _text(row["brand"]), "title": _text(row["title"]), "category": _text(row["category"])}
        prompt = cp.prompt.format(**prompt_fields(fields))
        items.append(Item(product_id=product_id, image=image, sha256=sha, prompt=prompt,
                          key=cache_key(sha, prompt, identity, sampling), **fields))
    return items, duplicates


# --------------------------------------------------------------------------- the cache


def load_cache(path: Path) -> dict[str, dict[str, Any]]:
    """Successful records by key (the last one wins); a torn last line is ignored."""
    if not path.exists():
        return {}
    return {rec["key"]: rec for rec in read_jsonl(path) if rec.get("error") is None and rec.get("key")}


def open_cache_for_append(path: Path) -> TextIO:
    """Append handle; a torn last line left by a killed run is cut off first so records never merge."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        with open(path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
    return open(path, "a", encoding="utf-8")


# --------------------------------------------------------------------------- asking


@dataclass
class Reply:
    text: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


def retry_after_seconds(headers: Any) -> float | None:
    """Delay asked for by `retry-after-ms` or `Retry-After` (seconds or an HTTP date), if any."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return min(max(float(value) / 1000, 0.0), MAX_RETRY_AFTER_S)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(when.timestamp() - time.time(), 0.0), MAX_RETRY_AFTER_S)


def _retryable(err: Exception) -> tuple[bool, str, float | None]:
    """(retry?, short reason, server-requested delay) for an exception from the client."""
    if isinstance(err, openai.APITimeoutError):
        return True, "timeout", None
    if isinstance(err, openai.APIConnectionError):
        return True, "connection", None
    if isinstance(err, openai.APIStatusError):
        status = err.status_code
        delay = retry_after_seconds(err.response.headers) if status in (429, 503) else None
        return status in (408, 409, 429) or status >= 500, f"http_{status}", delay
    return False, type(err).__name__, None


class Asker:
    """Asks for one item's caption with transport retries and the loop-aware temperature ladder."""

    def __init__(self, client: openai.AsyncOpenAI, cp: CaptionParams, clean: CleanParams, secret: str):
        self.client, self.cp, self.clean, self.secret = client, cp, clean, secret
        self.jitter = random.Random()

    def _redact(self, message: str) -> str:
        return message.replace(self.secret, "***") if self.secret else message

    async def _request(self, item: Item, image_url: str, temperature: float) -> tuple[Reply, int]:
        """One answer at one temperature; returns it and the number of transport retries spent."""
        cp = self.cp
        messages = [{"role": "user", "content": [
            {"type": "text", "text": item.prompt},
            {"type": "image_url", "image_url": {"url": image_url}},
        ]}]
        kwargs: dict[str, Any] = dict(
            model=cp.model, messages=messages, temperature=temperature, top_p=cp.top_p, max_tokens=cp.max_tokens,
            presence_penalty=cp.presence_penalty, frequency_penalty=cp.frequency_penalty, timeout=cp.timeout_s,
        )
        if cp.seed is not None:
            kwargs["seed"] = cp.seed
        if cp.extra_body:
            kwargs["extra_body"] = dict(cp.extra_body)
        for retry in range(cp.retries + 1):
            try:
                completion = await self.client.chat.completions.create(**kwargs)
            except Exception as err:  # noqa: BLE001 - every failure is classified and recorded
                again, reason, delay = _retryable(err)
                if not again or retry == cp.retries:
                    message = getattr(err, "message", None) or str(err)
                    return Reply(error=f"{reason}: {self._redact(message)}"), retry
                if delay is None:
                    delay = self.jitter.uniform(0, cp.backoff_s * 2**retry)
                await asyncio.sleep(delay)
                continue
            if not completion.choices:
                return Reply(error="empty_answer: the endpoint returned no choices"), retry
            choice = completion.choices[0]
            usage = completion.usage
            return Reply(
                text=choice.message.content or "",
                finish_reason=choice.finish_reason,
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
            ), retry
        raise AssertionError("unreachable")

    async def ask(self, item: Item) -> dict[str, Any]:
        started = time.monotonic()
        result: dict[str, Any] = {"text": None, "finish_reason": None, "attempts": 0, "retries": 0,
                                  "prompt_tokens": 0, "completion_tokens": 0, "error": None}
        try:
            image_bytes = Path(item.image).read_bytes()  # local and small: cheaper than a thread hop
        except OSError as err:
            result["error"] = f"image_unreadable: {item.image}: {err.strerror or err}"
            result["latency_s"] = round(time.monotonic() - started, 4)
            return result
        mime = mimetypes.guess_type(item.image)[0] or "image/png"
        image_url = f"data:{mime};base64,{base64.b64encode(image_bytes).decode('ascii')}"
        for temperature in [self.cp.temperature, *self.cp.retry_temperatures]:
            reply, retries = await self._request(item, image_url, temperature)
            result["attempts"] += 1
            result["retries"] += retries
            result["prompt_tokens"] += reply.prompt_tokens
            result["completion_tokens"] += reply.completion_tokens
            result.update(text=reply.text, finish_reason=reply.finish_reason, error=reply.error)
            if reply.error is not None:
                break
            if not (is_repetition_loop(reply.text, self.clean) or is_garbled(reply.text, self.clean)):
                break
        result["latency_s"] = round(time.monotonic() - started, 4)
        return result


async def ask_all(items: list[Item], base_url: str, params: Params, cache: TextIO, bar: tqdm) -> dict[str, dict[str, Any]]:
    """Ask for every item with at most `caption.concurrency` in flight; each answer is appended to the cache."""
    cp = params.caption
    secret = os.environ.get(cp.api_key_env, "")
    # openai's aiohttp transport: the same client API at about two thirds of httpx2's CPU per request.
    client = openai.AsyncOpenAI(base_url=base_url, api_key=secret or PLACEHOLDER_API_KEY, max_retries=0,
                                timeout=cp.timeout_s, http_client=openai.DefaultAioHttpClient())
    asker = Asker(client, cp, params.clean, secret)
    results: dict[str, dict[str, Any]] = {}
    pending = iter(items)

    async def worker() -> None:
        for item in pending:  # the shared iterator hands each item to exactly one worker
            result = await asker.ask(item)
            record = {"key": item.key, "product_id": item.product_id, "sha256": item.sha256, "model": cp.model, **result}
            cache.write(json.dumps(record, ensure_ascii=False) + "\n")
            cache.flush()
            results[item.key] = record
            bar.update(1)

    try:
        await asyncio.gather(*(worker() for _ in range(min(cp.concurrency, max(len(items), 1)))))
    finally:
        await client.close()
    return results


# --------------------------------------------------------------------------- the stage

OUTPUT_FIELDS = ("text", "finish_reason", "attempts", "retries", "latency_s", "prompt_tokens", "completion_tokens", "error")


def run_caption(params: Params, manifest_path: str | Path, captions_path: str | Path, resume_dir: str | Path) -> None:
    """Caption every ok image of the manifest into `captions_path` (JSONL, manifest order)."""
    cp = params.caption
    items, duplicates = load_items(params, manifest_path)
    if duplicates:
        log.warning("%s: %d duplicate product_id row(s) ignored (the first is kept)", manifest_path, duplicates)
    cache_path = Path(resume_dir) / CACHE_NAME
    cached = load_cache(cache_path)
    todo = [it for it in items if it.key not in cached]
    n_cached = len(items) - len(todo)

    server = start_simulated_vlm(cp.simulator, params.seed, cp.prompt) if (todo and not cp.base_url) else None
    base_url = server.base_url if server else cp.base_url
    if server:
        log.info("caption.base_url is empty: started the simulated VLM at %s", base_url)
    started = time.monotonic()
    with server or nullcontext(), open_cache_for_append(cache_path) as cache, \
            tqdm(total=len(items), initial=n_cached, desc="caption", unit="item", file=sys.stderr, dynamic_ncols=True) as bar:
        fresh = asyncio.run(ask_all(todo, base_url, params, cache, bar)) if todo else {}
    elapsed = time.monotonic() - started

    answers = {**cached, **fresh}
    records = []
    for it in items:
        answer = answers[it.key]
        records.append({
            "product_id": it.product_id, "brand": it.brand, "title": it.title, "category": it.category,
            "image": it.image, "sha256": it.sha256, "key": it.key, **{k: answer.get(k) for k in OUTPUT_FIELDS},
        })
    write_jsonl(captions_path, records)

    failures = Counter(r["error"].split(":", 1)[0] for r in records if r["error"])
    asked = len(todo)
    tokens = sum(r["completion_tokens"] for r in fresh.values())
    log.info(
        "caption: %d items, %d cached, %d asked in %.1f s (%.2f items/s, %.1f completion tokens/s), %d re-asked for loops/garbling, failures: %s -> %s",
        len(items), n_cached, asked, elapsed, asked / elapsed if asked and elapsed else 0.0, tokens / elapsed if asked and elapsed else 0.0,
        sum(1 for r in fresh.values() if r["attempts"] > 1), dict(failures) or "none", captions_path,
    )
    failed_fraction = sum(failures.values()) / len(items) if items else 0.0
    if failed_fraction > cp.max_failed_fraction:
        raise CaptionError(
            f"{captions_path}: {sum(failures.values())} of {len(items)} items ({failed_fraction:.0%}) got no caption "
            f"(by reason: {dict(failures)}), above caption.max_failed_fraction={cp.max_failed_fraction}; "
            f"check that caption.base_url ({cp.base_url or 'simulated'}) answers and the key in ${cp.api_key_env} is valid, "
            "then rerun (finished items are cached), or raise caption.max_failed_fraction"
        )
