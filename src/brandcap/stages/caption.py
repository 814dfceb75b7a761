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
  (read by `brandcap.files.append_only`: torn and invalid lines are skipped and reported, records validated),
  keyed by a hash of (image sha256, rendered prompt, model, sampling params). A rerun asks only for
  items without a successful record under the current key, so a killed run loses at most the
  requests in flight and a changed prompt or sampling param re-asks exactly the affected items.
  The cache lives outside the stage's outputs because orchestrators delete outputs before a rerun.
- Batch mode (`caption.mode: batch`), for a captioner too big to keep serving: the stage writes every
  request it would send into `resume_dir/batch/requests-NNN.jsonl` (batch JSONL, `brandcap.endpoint.batch_files`:
  custom_id = the item's cache key (`request_id`: a retry's is the key's start and its number), body =
  exactly the online request, the image inlined; each file under `caption.batch_max_bytes` and 50,000
  requests; `index.jsonl` lists what each file holds), then stops with BatchPending, printing for each file
  the command that answers it (`vllm run-batch -i .../requests-001.jsonl -o .../results-001.jsonl --model
  M`). A rerun reads the results beside the request files and those in `caption.batch_results` (OpenAI's
  output and error files), checks each with the online rules (the same failure reasons), and takes each
  item's results in order through the same temperature ladder (`Ladder`) and transport retry rule: a
  retryable failure (5xx, 429, an expired request) is asked again at the same temperature, a loop or
  garbled answer at the next one, in a new request file; a request with no result in a finished run's
  results file is written again. Final answers go into the cache under the same key as online ones;
  captions.jsonl is written only when every item has its answer: the bytes an online run with the same
  answers writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import os
import re
import shlex
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import openai
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from brandcap.config.params import CaptionParams, CleanParams, Params
from brandcap.endpoint.batch_files import (
    BatchFileError,
    RequestFiles,
    read_results,
    request_line,
    result_outcome,
    same_model,
)
from brandcap.endpoint.client import EndpointDown, Failure, Reply, Requester, check_endpoint, make_client
from brandcap.files.append_only import open_append_only, read_append_only
from brandcap.files.atomic import clear_owned_folder_of_temporaries, write_jsonl
from brandcap.files.digests import file_sha256, sorted_json_sha256
from brandcap.files.images import data_url
from brandcap.files.stage_records import check_columns
from brandcap.running.progress import Progress, progress
from brandcap.running.stage import StageWaits
from brandcap.text.clean_rules import is_garbled, is_repetition_loop

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
    return sorted_json_sha256(payload)


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
                sha = file_sha256(image)
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
    latency_s: float | None = Field(ge=0)  # None: answered in a batch, which times no single request
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


def cache_record(item: Item, model: str, answer: dict[str, Any]) -> dict[str, Any]:
    """The cache's record of one item's answer (a Ladder's tally with its latency)."""
    return {"key": item.key, "product_id": item.product_id, "sha256": item.sha256, "model": model, **answer}


# --------------------------------------------------------------------------- one item's answer, online or in batches


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


def image_data_url(path: str) -> str:
    """The image inlined as a data: URL, as every request carries it; OSError when it cannot be read."""
    image_bytes = Path(path).read_bytes()  # local and small: cheaper than a thread hop
    return data_url(image_bytes, mimetypes.guess_type(path)[0] or "image/png")


class Ladder:
    """One item's answer as the temperature ladder builds it, online or in batches: asked at caption.temperature,
    then again at each of caption.retry_temperatures while the answer is a repetition loop or garbled (the clean
    stage's own detectors); a failure (after its transport retries) ends it. `tally` counts the temperatures
    asked (attempts), the transport retries and the tokens, and holds the last answer or the failure."""

    def __init__(self, cp: CaptionParams, clean: CleanParams):
        self.temperatures = [cp.temperature, *cp.retry_temperatures]
        self.clean = clean
        self.step = 0
        self.done = False
        self.tally = self.empty_tally()

    @staticmethod
    def empty_tally() -> dict[str, Any]:
        return {
            "text": None,
            "finish_reason": None,
            "attempts": 0,
            "retries": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "error": None,
        }

    @property
    def temperature(self) -> float:
        """The temperature to ask at next."""
        return self.temperatures[self.step]

    def record(self, reply: Reply | None, error: str | None, retries: int) -> None:
        """The outcome of asking at `temperature`: a reply, or the error ("reason: detail") it ended with,
        after `retries` transport retries."""
        tally = self.tally
        tally["attempts"] += 1
        tally["retries"] += retries
        if reply is None:
            tally.update(text=None, finish_reason=None, error=error)
            self.done = True
            return
        tally["prompt_tokens"] += reply.prompt_tokens
        tally["completion_tokens"] += reply.completion_tokens
        tally.update(text=reply.text, finish_reason=reply.finish_reason, error=None)
        reask = is_repetition_loop(reply.text, self.clean) or is_garbled(reply.text, self.clean)
        if reask and self.step + 1 < len(self.temperatures):
            self.step += 1
        else:
            self.done = True


def unreadable_image(item: Item, err: OSError) -> dict[str, Any]:
    """The answer of an item whose image cannot be read: a failure, and no request sent."""
    return {**Ladder.empty_tally(), "error": f"image_unreadable: {item.image}: {err.strerror or err}"}


# --------------------------------------------------------------------------- online mode


class Asker(Requester):
    """Asks for one item's caption with transport retries and the loop-aware temperature ladder."""

    def __init__(self, client: openai.AsyncOpenAI, cp: CaptionParams, clean: CleanParams, secret: str):
        super().__init__(client, cp, secret)
        self.clean = clean

    async def ask(self, item: Item) -> dict[str, Any]:
        started = time.monotonic()
        try:
            image_url = image_data_url(item.image)
        except OSError as err:
            return {**unreadable_image(item, err), "latency_s": round(time.monotonic() - started, 6)}
        ladder = Ladder(self.cp, self.clean)
        while not ladder.done:
            body = completion_request(self.cp, item.prompt, image_url, ladder.temperature)
            ladder.record(*await self.request(body))
        return {**ladder.tally, "latency_s": round(time.monotonic() - started, 6)}


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
            record = cache_record(item, cp.model, await asker.ask(item))
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


def answer_online(items: list[Item], todo: list[Item], params: Params, cache_path: Path) -> dict[str, dict[str, Any]]:
    """Online mode: ask caption.base_url (or the simulated VLM, started when it is empty) for every item of `todo`;
    the answers by key, each also appended to the cache as it comes."""
    cp = params.caption
    server = None
    if todo and not cp.base_url:
        from brandcap.sim.simulated_vlm import (
            start_simulated_vlm,
        )  # the simulated world, only where the profile selects it

        server = start_simulated_vlm(cp.simulator, params.seed, cp.prompt, model_name=cp.model)
    base_url = server.base_url if server else cp.base_url
    if server:
        log.info("caption.base_url is empty: started the simulated VLM at %s", base_url)
    with (
        server or nullcontext(),
        open_append_only(cache_path) as cache,
        progress(len(items), "caption", unit="item", initial=len(items) - len(todo), logger=log) as bar,
    ):
        return asyncio.run(ask_all(todo, base_url, params, cache, bar)) if todo else {}


# --------------------------------------------------------------------------- batch mode

BATCH_FOLDER = "batch"
INDEX_NAME = "index.jsonl"
_RETRY_ID = re.compile(r"([0-9a-f]{60})-(\d{3,})")
_FILE_NUMBER = re.compile(r"(?:requests|results)-(\d+)\.jsonl")


class BatchPending(StageWaits):
    """Batch mode: some items still wait for answers; the message names the request files to run and how."""


def request_id(key: str, n: int) -> str:
    """The custom_id of an item's n-th request: its cache key for the first; for a retry, the key's first 60
    characters, '-' and n (`...-002`), so that every request has its own id of at most 64 characters (some
    OpenAI-compatible batch APIs take no longer ones)."""
    return key if n == 1 else f"{key[:60]}-{n:03d}"


def key_of(custom_id: str, keys: dict[str, Item], by_prefix: dict[str, str]) -> str | None:
    """The cache key whose request `custom_id` names, among `keys`; None for a request of no item of this run."""
    if custom_id in keys:
        return custom_id
    match = _RETRY_ID.fullmatch(custom_id)
    return by_prefix.get(match[1]) if match and int(match[2]) >= 2 else None


class RequestIndexRecord(BaseModel):
    """One request file the stage wrote, and the custom_ids it holds."""

    model_config = ConfigDict(extra="ignore")

    file: str = Field(min_length=1)
    custom_ids: list[str]


@dataclass
class Waiting:
    """An item's next request: the custom_id and temperature it is asked with."""

    key: str
    custom_id: str
    temperature: float


class BatchFolder:
    """resume_dir/batch: the request files the stage writes (requests-NNN.jsonl), the results a batch run writes
    beside them (results-NNN.jsonl, where the printed commands put them), and index.jsonl, what each request
    file holds (appended once the file is whole)."""

    def __init__(self, resume_dir: Path):
        self.path = resume_dir / BATCH_FOLDER
        self.index_path = self.path / INDEX_NAME
        self.holder: dict[str, Path] = {}  # custom_id -> the (latest) request file that holds it
        self.sizes: dict[Path, int] = {}  # request file -> the number of requests in it
        records = read_append_only(self.index_path, RequestIndexRecord) if self.index_path.exists() else []
        for record in records:
            if (path := self.path / record["file"]).exists():
                self._note(path, record["custom_ids"])
        clear_owned_folder_of_temporaries(self.path)
        for orphan in set(self.path.glob("requests-*.jsonl")) - self.sizes.keys():
            orphan.unlink()  # written whole by a run killed before it indexed the file: its requests are written again

    def _note(self, path: Path, custom_ids: list[str]) -> None:
        self.sizes[path] = len(custom_ids)
        self.holder.update(dict.fromkeys(custom_ids, path))

    @staticmethod
    def results_beside(requests: Path) -> Path:
        return requests.with_name("results-" + requests.name.removeprefix("requests-"))

    def next_path(self) -> Path:
        """A new request file, numbered after every request and results file there (no number is used twice)."""
        numbers = [int(m[1]) for f in self.path.glob("*.jsonl") if (m := _FILE_NUMBER.fullmatch(f.name))]
        return self.path / f"requests-{max(numbers, default=0) + 1:03d}.jsonl"

    def add(self, path: Path, custom_ids: list[str]) -> None:
        """Index a request file that has just been written whole."""
        with open_append_only(self.index_path) as index:
            index.write(json.dumps({"file": path.name, "custom_ids": custom_ids}) + "\n")
        self._note(path, custom_ids)


def results_files(folder: BatchFolder, cp: CaptionParams) -> list[tuple[Path, bool]]:
    """(results file, listed in caption.batch_results) to read: those beside the request files, then the listed ones."""
    sources = [(r, False) for r in map(folder.results_beside, sorted(folder.sizes)) if r.exists()]
    seen = {r.resolve() for r, _ in sources}
    for name in cp.batch_results:
        path = Path(name).expanduser()
        if not path.is_file():
            problem = "is a folder" if path.is_dir() else "does not exist"
            raise BatchFileError(
                f"caption.batch_results: {name} {problem}; list the results files themselves "
                "(what `vllm run-batch -o` wrote, or the output and error files of an OpenAI batch)"
            )
        if path.resolve() not in seen:
            seen.add(path.resolve())
            sources.append((path, True))
    return sources


def unknown_request(path: Path, number: int, custom_id: str, folder: BatchFolder) -> BatchFileError:
    return BatchFileError(
        f"{path}: line {number}: custom_id {custom_id[:80]!r} is not among the requests of this run (under {folder.path}/): "
        "a custom_id is the hash of an item's image, prompt, caption.model and sampling params, so this file answers "
        "another product table, prompt, model or sampling; remove it from caption.batch_results, or restore the params it was made with"
    )


def read_batch_answers(folder: BatchFolder, keys: dict[str, Item], cp: CaptionParams) -> dict[str, Reply | Failure]:
    """Every result that answers a request of this run's items, by custom_id, checked as online answers are
    (a success wins over a failure for the same request, else the first read). A result for no such request
    is refused in a listed file and skipped beside an old request file (made with other params)."""
    by_prefix = {key[:60]: key for key in keys}
    answers: dict[str, Reply | Failure] = {}
    stale = 0
    for path, listed in results_files(folder, cp):
        for number, result in read_results(path):
            if key_of(result.custom_id, keys, by_prefix) is None:
                if listed:
                    raise unknown_request(path, number, result.custom_id, folder)
                stale += 1
                continue
            if result.model is not None and not same_model(result.model, cp.model):
                raise BatchFileError(
                    f"{path}: line {number}: answered by the model {result.model!r}, but caption.model is {cp.model!r}; "
                    f"run the requests with `--model {cp.model}` (vLLM: add `--served-model-name {cp.model}` when --model "
                    "is a local folder), or set caption.model to the model you mean"
                )
            outcome = result_outcome(result, cp.answer_char_limit, cp.section)
            earlier = answers.get(result.custom_id)
            if earlier is None or (isinstance(earlier, Failure) and not isinstance(outcome, Failure)):
                answers[result.custom_id] = outcome
    if stale:
        log.info("%s: %d result(s) of requests made with other params skipped", folder.path, stale)
    return answers


def replay(
    key: str, answers: dict[str, Reply | Failure], cp: CaptionParams, clean: CleanParams
) -> dict[str, Any] | Waiting:
    """An item's answer from the results of its requests, taken in order through the temperature ladder and the
    online transport retry rule; or, while a result is missing, its next request."""
    ladder = Ladder(cp, clean)
    n, retry = 1, 0
    while not ladder.done:
        answer = answers.get(request_id(key, n))
        if answer is None:
            return Waiting(key, request_id(key, n), ladder.temperature)
        n += 1
        if isinstance(answer, Failure):
            if not answer.is_final(retry, cp.retries):
                retry += 1
                continue
            ladder.record(None, str(answer), retry)
        else:
            ladder.record(answer, None, retry)
        retry = 0
    return {**ladder.tally, "latency_s": None}


def needs_writing(waiting: Waiting, folder: BatchFolder) -> bool:
    """Whether no request file holds the request yet, or one does whose finished run left no result for it."""
    holder = folder.holder.get(waiting.custom_id)
    return holder is None or folder.results_beside(holder).exists()


def write_requests(
    waiting: list[Waiting], keys: dict[str, Item], folder: BatchFolder, cp: CaptionParams, finals: dict[str, Any]
) -> int:
    """Write the waiting requests that need it into new request files; an item whose image cannot be read gets
    its failure in `finals` instead. Returns the number of requests written."""
    todo = [w for w in waiting if needs_writing(w, folder)]
    if not todo:
        return 0
    written = 0
    files = RequestFiles(folder.next_path, cp.batch_max_bytes, folder.add, "caption.batch_max_bytes")
    with files, progress(len(todo), "caption batch requests", unit="request", logger=log) as bar:
        for request in todo:
            item = keys[request.key]
            try:
                image_url = image_data_url(item.image)
            except OSError as err:
                finals[request.key] = {**unreadable_image(item, err), "latency_s": None}
                continue
            body = completion_request(cp, item.prompt, image_url, request.temperature)
            files.add(request.custom_id, request_line(request.custom_id, body), what=item.image)
            written += 1
            bar.update(1)
    return written


def batch_command(requests: Path, results: Path, cp: CaptionParams, params_files: Sequence[str | Path]) -> str:
    """The command that answers one request file: `vllm run-batch`, or the simulated VLM when caption.base_url is
    empty, given the parameter files this stage ran with (params.yaml and its profile overlays: the simulator's
    settings and seed)."""
    runner = ["vllm", "run-batch"] if cp.base_url else ["python", "-m", "brandcap.sim.run_batch"]
    first, *overlays = map(str, params_files)
    extra = [] if cp.base_url else ["--params", first, *(arg for o in overlays for arg in ("--overlay", o))]
    return shlex.join([*runner, "-i", str(requests), "-o", str(results), "--model", cp.model, *extra])


def pending_message(
    waiting: list[Waiting], folder: BatchFolder, cp: CaptionParams, answered: int, params_files: Sequence[str | Path]
) -> str:
    files = Counter(folder.holder[w.custom_id] for w in waiting)
    lines = [
        f"caption.mode batch: {len(waiting):,} request(s) wait for answers, in {len(files)} request file(s) under "
        f"{folder.path}/ ({answered:,} item(s) answered and cached so far); run each, then rerun this stage:"
    ]
    for path in sorted(files):
        unanswered = (
            ""
            if files[path] == folder.sizes[path]
            else f"   # {files[path]:,} of its {folder.sizes[path]:,} unanswered"
        )
        lines.append(f"  {batch_command(path, folder.results_beside(path), cp, params_files)}{unanswered}")
    if cp.base_url:
        lines.append(
            "vLLM takes the engine options of `vllm serve` (e.g. --tensor-parallel-size 4; --served-model-name "
            f"{cp.model} when --model is a local folder). With OpenAI's Batch API instead, upload each file, create a "
            "batch for /v1/chat/completions and list its output and error files in caption.batch_results "
            "(docs/real-runs.md, 'Batch captioning')."
        )
    else:
        lines.append(
            "caption.base_url is empty, so the simulated VLM answers, with the parameter files this stage ran with."
        )
    lines.append(
        "Rerun the stage once those runs have finished: a request without a line in the results file beside its "
        "request file is written again into a new one."
    )
    return "\n".join(lines)


def answer_in_batches(
    items: list[Item],
    todo: list[Item],
    params: Params,
    resume_dir: Path,
    cache_path: Path,
    params_files: Sequence[str | Path] = ("params.yaml",),
) -> dict[str, dict[str, Any]]:
    """Batch mode: the answers of `todo` (by key) from batch results, when every one has its answer. Otherwise
    the answers that are final are appended to the cache, the requests still to be asked are written, and
    BatchPending names the request files to run."""
    cp = params.caption
    keys: dict[str, Item] = {}
    for item in items:
        keys.setdefault(item.key, item)
    folder = BatchFolder(resume_dir)
    answers = read_batch_answers(folder, keys, cp)
    finals: dict[str, Any] = {}
    waiting: list[Waiting] = []
    for key in dict.fromkeys(item.key for item in todo):
        outcome = replay(key, answers, cp, params.clean)
        if isinstance(outcome, Waiting):
            waiting.append(outcome)
        else:
            finals[key] = outcome
    written = write_requests(waiting, keys, folder, cp, finals)
    records = {key: cache_record(keys[key], cp.model, answer) for key, answer in finals.items()}
    with open_append_only(cache_path) as cache:
        cache.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records.values())
    waiting = [w for w in waiting if w.key not in finals]
    log.info(
        "caption batch: %d result(s) read, %d item(s) answered now, %d request(s) written, %d waiting",
        len(answers),
        len(finals),
        written,
        len(waiting),
    )
    if waiting:
        waiting_keys = {w.key for w in waiting}
        answered = sum(1 for item in items if item.key not in waiting_keys)
        raise BatchPending(pending_message(waiting, folder, cp, answered, params_files))
    return records


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


def caption_records(items: list[Item], answers: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """captions.jsonl: every item in manifest order with its answer's OUTPUT_FIELDS."""
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
    return records


def log_summary(
    cp: CaptionParams,
    n_items: int,
    asked: int,
    fresh: dict[str, dict[str, Any]],
    elapsed: float,
    failures: Counter,
    captions_path: str | Path,
) -> None:
    """The stage's one-line summary: counts, speed and latency (online), failures by reason."""
    reasked = sum(1 for r in fresh.values() if r["attempts"] > 1)
    if cp.mode == "batch":
        log.info(
            "caption: %d items, %d cached, %d answered from batch results, %d re-asked for loops/garbling, failures: %s -> %s",
            n_items,
            n_items - asked,
            asked,
            reasked,
            dict(failures) or "none",
            captions_path,
        )
        return
    tokens = sum(r["completion_tokens"] for r in fresh.values())
    log.info(
        "caption: %d items, %d cached, %d asked in %.1f s (%.2f items/s, %.1f completion tokens/s, %s), %d re-asked for loops/garbling, failures: %s -> %s",
        n_items,
        n_items - asked,
        asked,
        elapsed,
        asked / elapsed if asked and elapsed else 0.0,
        tokens / elapsed if asked and elapsed else 0.0,
        latency_summary([r["latency_s"] for r in fresh.values()]),
        reasked,
        dict(failures) or "none",
        captions_path,
    )


def check_failures(cp: CaptionParams, n_items: int, failures: Counter, captions_path: str | Path) -> None:
    """CaptionError when more than caption.max_failed_fraction of the items got no caption."""
    failed_fraction = sum(failures.values()) / n_items if n_items else 0.0
    if failed_fraction <= cp.max_failed_fraction:
        return
    if cp.mode == "batch":
        fix = (
            "a failure stays final for the results read: raise caption.retries to ask retryable ones again, or remove "
            "the batch folder under the resume folder and the files in caption.batch_results to ask every failed item again"
        )
    else:
        fix = (
            f"check that caption.base_url ({cp.base_url or 'simulated'}) answers and the key in ${cp.api_key_env} is valid, "
            "then rerun (finished items are cached)"
        )
    raise CaptionError(
        f"{captions_path}: {sum(failures.values())} of {n_items} items ({failed_fraction:.0%}) got no caption "
        f"(by reason: {dict(failures)}), above caption.max_failed_fraction={cp.max_failed_fraction}; "
        f"{fix}, or raise caption.max_failed_fraction"
    )


def run_caption(
    params: Params,
    manifest_path: str | Path,
    captions_path: str | Path,
    resume_dir: str | Path,
    params_files: Sequence[str | Path] = ("params.yaml",),
) -> None:
    """Caption every ok image of the manifest into `captions_path` (JSONL, manifest order)."""
    cp = params.caption
    items, duplicates = load_items(params, manifest_path)
    if duplicates:
        log.warning("%s: %d duplicate product_id row(s) ignored (the first is kept)", manifest_path, duplicates)
    cache_path = Path(resume_dir) / CACHE_NAME
    cached = load_cache(cache_path)
    todo = [it for it in items if it.key not in cached]
    started = time.monotonic()
    if cp.mode == "batch":
        fresh = answer_in_batches(items, todo, params, Path(resume_dir), cache_path, params_files) if todo else {}
    else:
        fresh = answer_online(items, todo, params, cache_path)
    elapsed = time.monotonic() - started
    records = caption_records(items, {**cached, **fresh})
    write_jsonl(captions_path, records)
    failures = Counter(r["error"].split(":", 1)[0] for r in records if r["error"])
    log_summary(cp, len(items), len(todo), fresh, elapsed, failures, captions_path)
    check_failures(cp, len(items), failures, captions_path)
