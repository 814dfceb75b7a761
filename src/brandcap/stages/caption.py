"""caption stage: a brand-aware caption of every downloaded image from an OpenAI-compatible VLM.

    python workflow/scripts/caption.py --params params.yaml --manifest data/raw/manifest.parquet \\
        --captions data/interim/captions.jsonl --resume .resume/caption

or from Python: `run_caption(params, manifest_path, captions_path, resume_dir)`.

- Asks `caption.base_url` (vLLM, SGLang, OpenAI, ...) with the official async `openai` client; when
  `caption.base_url` is empty it starts the built-in simulated VLM (`brandcap.sim.simulated_vlm`) on
  127.0.0.1 for the duration of the stage. The API key comes from the environment variable named
  by `caption.api_key_env` and is never logged or written.
- Retries are ours (the client's are off): a concurrency limit, a per-request timeout, exponential
  backoff with full jitter, `Retry-After` honoured on 429/503; a non-retryable answer (400, other
  4xx) is recorded for the item and the run goes on.
- Pre-flight: before the first request, `GET {base_url}/models` must answer JSON within seconds and
  list `caption.model` (the simulator too); otherwise EndpointError names the URL, what went wrong
  (refused, timeout, HTTP status, HTML, model not served: with the served list) and the fix.
- Every answer ends as a caption or as a failure with a named reason, counted in the failure
  fraction: `timeout`, `connection_refused`, `connection`, `http_NNN`, `html_body`, `non_json`,
  `not_a_completion` (the last three retried; `message.content` may also be a list of text parts,
  joined), `undecodable_body` (a body that does not decompress as its Content-Encoding says; retried), `empty_answer` (content null or blank), `oversize`
  (beyond `caption.max_answer_chars`; the body is not read past the bound), `image_unreadable`.
  Each attempt has a wall-clock bound of `caption.timeout_s`, so a trickling server cannot stall it.
- Circuit breaker: when every answer has failed for `caption.breaker_s` seconds in a row the
  stage stops with EndpointDown naming the base_url and the last reasons; what finished stays cached.
- Loop-aware retry: an answer that is a repetition loop or garbled (the clean stage's own
  detectors) is asked again at the next temperature of `caption.retry_temperatures`.
- Cache and resume: `resume_dir/cache.jsonl` holds one appended, flushed record per answered item
  (read by `brandcap.append_only`: torn and invalid lines are skipped and reported, records validated),
  keyed by a hash of (image sha256, rendered prompt, model, sampling params). A rerun asks only for
  items without a successful record under the current key, so a killed run loses at most the
  requests in flight and a changed prompt or sampling param re-asks exactly the affected items.
  The cache lives outside the stage's outputs because orchestrators delete outputs before a rerun.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import mimetypes
import os
import statistics
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import openai
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from brandcap.append_only import open_append_only, read_append_only
from brandcap.atomic import write_jsonl
from brandcap.clean_rules import is_garbled, is_repetition_loop
from brandcap.endpoint_client import EndpointDown, Requester, check_endpoint, make_client
from brandcap.images import data_url
from brandcap.params import CaptionParams, CleanParams, Params
from brandcap.progress import Progress, progress
from brandcap.record_files import check_columns

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("product_id", "brand", "title", "category", "status", "image", "sha256")
CACHE_NAME = "cache.jsonl"


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
    check_columns(
        frame.columns,
        MANIFEST_COLUMNS,
        manifest_path,
        f"it must come from the download stage (columns {list(MANIFEST_COLUMNS)})",
    )
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
        items.append(
            Item(
                product_id=product_id,
                image=image,
                sha256=sha,
                prompt=prompt,
                key=cache_key(sha, prompt, identity, sampling),
                **fields,
            )
        )
    return items, duplicates


# --------------------------------------------------------------------------- the cache


class CacheRecord(BaseModel):
    """One asked item in the cache: a caption, or a failure with its reason."""

    model_config = ConfigDict(extra="ignore")

    key: str = Field(min_length=1)
    product_id: str
    sha256: str
    model: str
    text: str | None
    finish_reason: str | None
    attempts: int = Field(ge=0)
    retries: int = Field(ge=0)
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    latency_s: float = Field(ge=0)
    error: str | None

    @model_validator(mode="after")
    def _caption_or_error(self) -> CacheRecord:
        if self.error is None and not self.text:
            raise ValueError("a record without an error must hold a caption")
        return self


def load_cache(path: Path) -> dict[str, dict[str, Any]]:
    """Successful records by key (the last one wins); torn and invalid lines are left to the reader."""
    if not path.exists():
        return {}
    return {rec["key"]: rec for rec in read_append_only(path, CacheRecord) if rec["error"] is None}


def completion_request(cp: CaptionParams, prompt: str, image_url: str, temperature: float) -> dict[str, Any]:
    """The JSON body of one chat-completions request: the prompt, the image and the sampling params."""
    body: dict[str, Any] = {
        "model": cp.model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": prompt},
                    {"type": "image_url", "image_url": {"url": image_url}},
                ],
            }
        ],
        "temperature": temperature,
        "top_p": cp.top_p,
        "max_tokens": cp.max_tokens,
        "presence_penalty": cp.presence_penalty,
        "frequency_penalty": cp.frequency_penalty,
    }
    if cp.seed is not None:
        body["seed"] = cp.seed
    return {**body, **cp.extra_body}  # as the client's extra_body: server-specific keys at the top level


class Asker(Requester):
    """Asks for one item's caption with transport retries and the loop-aware temperature ladder."""

    def __init__(self, client: openai.AsyncOpenAI, cp: CaptionParams, clean: CleanParams, secret: str):
        super().__init__(client, cp, secret)
        self.clean = clean

    async def ask(self, item: Item) -> dict[str, Any]:
        started = time.monotonic()
        result: dict[str, Any] = {
            "text": None,
            "finish_reason": None,
            "attempts": 0,
            "retries": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "error": None,
        }
        try:
            image_bytes = Path(item.image).read_bytes()  # local and small: cheaper than a thread hop
        except OSError as err:
            result["error"] = f"image_unreadable: {item.image}: {err.strerror or err}"
            result["latency_s"] = round(time.monotonic() - started, 6)
            return result
        mime = mimetypes.guess_type(item.image)[0] or "image/png"
        image_url = data_url(image_bytes, mime)
        for temperature in [self.cp.temperature, *self.cp.retry_temperatures]:
            reply, error, retries = await self.request(completion_request(self.cp, item.prompt, image_url, temperature))
            result["attempts"] += 1
            result["retries"] += retries
            if reply is None:
                result.update(text=None, finish_reason=None, error=error)
                break
            result["prompt_tokens"] += reply.prompt_tokens
            result["completion_tokens"] += reply.completion_tokens
            result.update(text=reply.text, finish_reason=reply.finish_reason, error=None)
            if not (is_repetition_loop(reply.text, self.clean) or is_garbled(reply.text, self.clean)):
                break
        result["latency_s"] = round(time.monotonic() - started, 6)
        return result


async def ask_all(
    items: list[Item], base_url: str, params: Params, cache: TextIO, bar: Progress
) -> dict[str, dict[str, Any]]:
    """Check the endpoint, then ask for every item with at most `caption.concurrency` in flight.

    Each answer is appended to the cache as it comes; EndpointDown when the circuit breaker trips."""
    cp = params.caption
    secret = os.environ.get(cp.api_key_env, "")
    client = make_client(base_url, cp, secret)
    asker = Asker(client, cp, params.clean, secret)
    results: dict[str, dict[str, Any]] = {}
    pending = iter(items)

    async def worker() -> None:
        for item in pending:  # the shared iterator hands each item to exactly one worker
            result = await asker.ask(item)
            record = {
                "key": item.key,
                "product_id": item.product_id,
                "sha256": item.sha256,
                "model": cp.model,
                **result,
            }
            cache.write(json.dumps(record, ensure_ascii=False) + "\n")
            cache.flush()
            results[item.key] = record
            bar.update(1)

    async def ask_every_item() -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(cp.concurrency, max(len(items), 1))):
                    group.create_task(worker())
        except* EndpointDown:
            breaker = asker.breaker
            captioned = sum(1 for r in results.values() if r["error"] is None)
            raise EndpointDown(
                f"caption.base_url {base_url}: every answer failed for {cp.breaker_s:g} s in a row (caption.breaker_s), "
                f"so the stage stopped; failures by reason: {dict(breaker.reasons)}, the last: {breaker.last}. {captioned} "
                f"item(s) captioned in this run are cached; check the endpoint (curl {base_url}/models), then rerun to ask only the rest"
            ) from None

    try:
        await check_endpoint(client, base_url, cp, secret)
        await ask_every_item()
    finally:
        await client.close()
    return results


# --------------------------------------------------------------------------- the stage

# Fields of an answer copied into captions.jsonl. Not its latency: a timing would give the same
# captions another hash on every run, so DVC would see the clean stage's input changed (the latency
# stays in the resume cache, and the stage's log line gives its median and 95th percentile).
OUTPUT_FIELDS = ("text", "finish_reason", "attempts", "retries", "prompt_tokens", "completion_tokens", "error")


def latency_summary(latencies: list[float]) -> str:
    """'latency median X s, p95 Y s' of the items asked in this run (retries included)."""
    if not latencies:
        return "no latency: nothing asked"
    ordered = sorted(latencies)
    return f"latency median {statistics.median(ordered):.3f} s, p95 {ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]:.3f} s"


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

    server = None
    if todo and not cp.base_url:
        from brandcap.sim.simulated_vlm import (
            start_simulated_vlm,
        )  # the simulated world, only where the profile selects it

        server = start_simulated_vlm(cp.simulator, params.seed, cp.prompt, model_name=cp.model)
    base_url = server.base_url if server else cp.base_url
    if server:
        log.info("caption.base_url is empty: started the simulated VLM at %s", base_url)
    started = time.monotonic()
    with (
        server or nullcontext(),
        open_append_only(cache_path) as cache,
        progress(len(items), "caption", unit="item", initial=n_cached, logger=log) as bar,
    ):
        fresh = asyncio.run(ask_all(todo, base_url, params, cache, bar)) if todo else {}
    elapsed = time.monotonic() - started

    answers = {**cached, **fresh}
    records = []
    for it in items:
        answer = answers[it.key]
        records.append(
            {
                "product_id": it.product_id,
                "brand": it.brand,
                "title": it.title,
                "category": it.category,
                "image": it.image,
                "sha256": it.sha256,
                "key": it.key,
                **{k: answer.get(k) for k in OUTPUT_FIELDS},
            }
        )
    write_jsonl(captions_path, records)

    failures = Counter(r["error"].split(":", 1)[0] for r in records if r["error"])
    asked = len(todo)
    tokens = sum(r["completion_tokens"] for r in fresh.values())
    log.info(
        "caption: %d items, %d cached, %d asked in %.1f s (%.2f items/s, %.1f completion tokens/s, %s), %d re-asked for loops/garbling, failures: %s -> %s",
        len(items),
        n_cached,
        asked,
        elapsed,
        asked / elapsed if asked and elapsed else 0.0,
        tokens / elapsed if asked and elapsed else 0.0,
        latency_summary([r["latency_s"] for r in fresh.values()]),
        sum(1 for r in fresh.values() if r["attempts"] > 1),
        dict(failures) or "none",
        captions_path,
    )
    failed_fraction = sum(failures.values()) / len(items) if items else 0.0
    if failed_fraction > cp.max_failed_fraction:
        raise CaptionError(
            f"{captions_path}: {sum(failures.values())} of {len(items)} items ({failed_fraction:.0%}) got no caption "
            f"(by reason: {dict(failures)}), above caption.max_failed_fraction={cp.max_failed_fraction}; "
            f"check that caption.base_url ({cp.base_url or 'simulated'}) answers and the key in ${cp.api_key_env} is valid, "
            "then rerun (finished items are cached), or raise caption.max_failed_fraction"
        )
