"""A built-in OpenAI-compatible VLM endpoint that writes brand-aware captions and misbehaves on purpose.

Run it alone and point any OpenAI client at it:

    brandcap serve-vlm --port 8000 --params params.yaml
    curl http://127.0.0.1:8000/v1/models

or start it inside a process for the duration of a stage or a test:

    with start_simulated_vlm(params.caption.simulator, params.seed) as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key="EMPTY")

It speaks `POST /v1/chat/completions` and `GET /v1/models`. The caption comes from what the prompt
gives (brand, title and category, parsed back out of the prompt template) and from what the image
pixels give (dominant and accent colour, `brandcap.sim.colours.dominant_and_accent`). It injects the failure modes of the reference study at
the rates in `SimulatorParams`: repetition loops, garbled characters, brand case changes, a missing
brand, text cut at max_tokens (`finish_reason: "length"`), HTTP 429 (with Retry-After) / 500, and
slow answers. Every decision is drawn from an RNG seeded by (seed, request content, temperature),
so the same request gets the same answer and a re-ask at another temperature can come out clean;
HTTP errors and slowness are also re-drawn per repeat of a request so that transport retries can
succeed. Tokens are counted roughly as whitespace-separated words. `SimulatedVLM.respond` answers one
request body, over HTTP here and in a batch file in `brandcap.sim.run_batch` (the simulator playing
`vllm run-batch` for the caption stage's batch mode).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import io
import json
import logging
import math
import random
import re
import socket
import string
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image, UnidentifiedImageError

from brandcap.config.params import DEFAULT_CAPTION_PROMPT, SimulatorParams, load_params
from brandcap.sim.colours import dominant_and_accent
from brandcap.text import brands
from brandcap.text.clean_rules import word_count

log = logging.getLogger(__name__)

MODEL_NAME = "simulated-vlm"
IMAGE_TOKENS = 256  # rough prompt-token cost of one image (one 448px InternVL tile)
MAX_CONTEXT_TOKENS = 8192

# --------------------------------------------------------------------------- reading the prompt


def prompt_pattern(template: str) -> re.Pattern[str] | None:
    """A regex that reads brand/title/category back out of a prompt rendered from `template`."""
    parts: list[str] = []
    seen: set[str] = set()
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(r"\s+".join(re.escape(word) for word in literal.split(" ")))
        if name:
            if name in seen:
                parts.append(f"(?P={name})")
            else:
                parts.append(f"(?P<{name}>.+?)")
                seen.add(name)
    if not seen:
        return None
    return re.compile("".join(parts), re.DOTALL)


def parse_prompt(prompt: str, pattern: re.Pattern[str] | None) -> dict[str, str] | None:
    """{brand, title, category} found in the prompt, or None when it does not follow the template."""
    if pattern is None:
        return None
    m = pattern.fullmatch(prompt.strip())
    if not m or not m.groupdict().get("brand"):
        return None
    found = {k: v.strip() for k, v in m.groupdict().items() if v}
    return {
        "brand": found["brand"],
        "title": found.get("title", "product"),
        "category": found.get("category", "fashion"),
    }


# --------------------------------------------------------------------------- reading the image


def decode_data_url(url: str) -> bytes:
    if not url.startswith("data:") or ";base64," not in url:
        raise ValueError("image_url must be a base64 data: URL (data:image/png;base64,...)")
    return base64.b64decode(url.split(";base64,", 1)[1], validate=True)


# --------------------------------------------------------------------------- writing the caption

_OPENINGS = [
    "This {title} from {brand} is photographed on its own against a plain background.",
    "The photo shows the {title} by {brand}, a {colour} piece from its {category} range.",
    "Here is a {colour} {title} from {brand}, shown in a clean product shot.",
    "Made by {brand}, this {title} appears mostly in {colour} tones in the photo.",
]
_DETAILS = [
    "Its main colour is {colour}, which covers most of the visible surface.",
    "Small {accent} details break up the {colour} surface and catch the eye.",
    "The item belongs to the {category} category and keeps a clean, modern outline.",
    "The lighting is soft and even, so the shape and texture are easy to read.",
    "The product is centred in the frame with some empty space around it.",
    "Its silhouette is simple, and the proportions look balanced from this angle.",
    "The finish looks smooth, with no visible wear, stains or loose threads.",
    "A shopper would recognise the typical style of {brand} in the careful construction.",
    "The background stays neutral, keeping attention on the product itself.",
    "Overall, the {title} looks like a versatile choice for everyday wear.",
    "The edges are neatly finished, and the seams appear straight and even.",
    "Nothing else appears in the picture, so this {category} item is the only subject.",
]
_GENERIC = (
    "The photo shows a {colour} product with some {accent} areas on a plain background. "
    "The request did not say which brand, title or category this is, so this description is generic "
    "and based on the image alone. The object is centred in the frame, the lighting is even, "
    "and no text or logo can be read with confidence."
)
_MISSING_BRAND = "an unnamed designer"
_MOJIBAKE = {"e": "Ã©", "a": "Ã¤", "o": "Ã¶", "u": "Ã¼", "'": "â€™", "i": "Ã¯"}
_SYMBOLS = "#@%¤§¶~^|¦¬"


def base_caption(fields: dict[str, str], colour: str, accent: str, rng: random.Random) -> str:
    """40-80 words; the brand is named in the first sentence."""
    values = {**fields, "colour": colour, "accent": accent if accent != colour else "darker"}
    sentences = [rng.choice(_OPENINGS).format(**values)]
    target = rng.randint(40, 80)
    for template in rng.sample(_DETAILS, len(_DETAILS)):
        sentence = template.format(**values)
        current = sum(word_count(s) for s in sentences)
        if current >= target:
            break
        if current + word_count(sentence) <= 80:
            sentences.append(sentence)
    return " ".join(sentences)


def _replace_brand(text: str, brand: str, replacement: str) -> str:
    out, start = "", 0
    while (span := brands.brand_span(text[start:], brand)) is not None:
        a, b = span[0] + start, span[1] + start
        out += text[start:a] + replacement
        start = b
    return out + text[start:]


def change_brand_case(text: str, brand: str) -> str:
    changed = brand.upper() if brand != brand.upper() else brand.lower()
    return _replace_brand(text, brand, changed)


def drop_brand(text: str, brand: str) -> str:
    return re.sub(r"\s{2,}", " ", _replace_brand(text, brand, _MISSING_BRAND))


def garble(text: str, rng: random.Random) -> str:
    """Mojibake, replacement characters and stray symbols in about a third of the words."""
    words = text.split(" ")
    for i, w in enumerate(words):
        if rng.random() >= 0.35:
            continue
        kind = rng.randrange(3)
        if kind == 0:
            words[i] = "".join(_MOJIBAKE.get(c, c) for c in w)
        elif kind == 1:
            pos = rng.randrange(len(w) + 1)
            words[i] = w[:pos] + "\ufffd\ufffd" + w[pos:]
        else:
            words[i] = "".join(rng.choice(_SYMBOLS) for _ in range(max(2, len(w) // 2))) + w[len(w) // 2 :]
    return " ".join(words)


def loop(text: str, rng: random.Random, max_tokens: int) -> str:
    """The first sentence, then one phrase over and over until the token budget runs out."""
    first = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
    words = first.split()
    phrase = rng.choice([s for s in re.split(r"(?<=\.)\s", text)[1:]] or [first]).split()
    phrase = phrase[: max(4, len(phrase) // 2)]
    while len(words) < max_tokens:
        words.extend(phrase)
    return " ".join(words[:max_tokens])


def cut_off(text: str, rng: random.Random) -> str:
    """Text cut mid-sentence, as when generation stops at max_tokens."""
    words = text.split()
    n = rng.randint(max(1, int(len(words) * 0.5)), max(1, int(len(words) * 0.9)))
    while n > 1 and words[n - 1].endswith("."):
        n -= 1
    return " ".join(words[:n])


@dataclass
class Answer:
    text: str
    finish_reason: str


def write_answer(
    fields: dict[str, str] | None, png: bytes, max_tokens: int, sim: SimulatorParams, rng: random.Random
) -> Answer:
    colour, accent = dominant_and_accent(png)
    if fields is None:
        text = _GENERIC.format(colour=colour, accent=accent)
    else:
        text = base_caption(fields, colour, accent, rng)
        brand = fields["brand"]
        # Draw every roll, always in the same order, so one rate does not shift the others' draws.
        rolls = {k: rng.random() for k in ("missing", "case", "garbled", "loop", "cutoff")}
        if rolls["missing"] < sim.missing_brand_rate:
            text = drop_brand(text, brand)
        elif rolls["case"] < sim.case_change_rate:
            text = change_brand_case(text, brand)
        if rolls["garbled"] < sim.garbled_rate:
            text = garble(text, rng)
        if rolls["loop"] < sim.loop_rate:
            return Answer(loop(text, rng, max_tokens), "length")
        if rolls["cutoff"] < sim.cutoff_rate:
            return Answer(cut_off(text, rng), "length")
    words = text.split()
    if len(words) > max_tokens:
        return Answer(" ".join(words[:max_tokens]), "length")
    return Answer(text, "stop")


# --------------------------------------------------------------------------- the HTTP server


class BadRequest(Exception):
    pass


def error_body(status: int, message: str, kind: str) -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


@dataclass
class SimReply:
    """What the simulated VLM answers one request: an HTTP status, its JSON body, headers, and a delay before it."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None
    delay: float = 0.0


def _read_messages(body: dict[str, Any]) -> tuple[str, bytes]:
    """(prompt text, image bytes) of the last user message."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    user = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not user:
        raise BadRequest("no user message")
    content = user[-1].get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list):
        raise BadRequest("message content must be a string or a list of parts")
    texts, images = [], []
    for part in parts:
        if not isinstance(part, dict):
            raise BadRequest("every content part must be an object")
        if part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif part.get("type") == "image_url":
            url = part.get("image_url", {})
            images.append(url.get("url", "") if isinstance(url, dict) else str(url))
    if not images:
        raise BadRequest("this model needs one image_url part")
    try:
        png = decode_data_url(images[0])
    except (ValueError, binascii.Error) as err:
        raise BadRequest(f"invalid image: {err}") from None
    return "\n".join(texts), png


def _check_image(png: bytes) -> None:
    try:
        Image.open(io.BytesIO(png)).verify()
    except (UnidentifiedImageError, OSError, ValueError) as err:
        # without PIL's '<_io.BytesIO object at 0x...>': the same request gets the same answer
        raise BadRequest(f"invalid image: {re.sub(r' ?<[^<>]* at 0x[0-9a-f]+>', '', str(err))}") from None


@dataclass
class SimulatedVLM:
    """The request handler and its bookkeeping (what tests count)."""

    sim: SimulatorParams
    seed: int
    prompt_template: str = DEFAULT_CAPTION_PROMPT
    model_name: str = MODEL_NAME
    requests: list[dict[str, Any]] = field(default_factory=list)
    _repeats: Counter = field(default_factory=Counter)

    def __post_init__(self):
        self._pattern = prompt_pattern(self.prompt_template)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": self.model_name, "object": "model", "created": 0, "owned_by": "brandcap"}],
            }
        )

    def _rng(self, *parts: Any) -> random.Random:
        digest = hashlib.sha256(json.dumps([self.seed, *parts], default=str).encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    async def chat_completions(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        entry: dict[str, Any] = {
            "time": time.time(),
            "prompt": None,
            "temperature": None,
            "status": None,
            "authorization": request.headers.get("Authorization", ""),
        }
        self.requests.append(entry)
        response = await self._answer(request, entry)
        entry["status"] = response.status
        entry["seconds"] = time.monotonic() - started
        return response

    async def _answer(self, request: web.Request, entry: dict[str, Any]) -> web.Response:
        try:
            body = await request.json()
        except ValueError as err:  # not JSON (JSONDecodeError), or not UTF-8
            reply = SimReply(400, error_body(400, str(err), "invalid_request_error"))
        else:
            reply = self.respond(body, entry)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    def respond(self, body: Any, entry: dict[str, Any], transport_key: str | int | None = None) -> SimReply:
        """The answer to one chat-completions request body, the same over HTTP and in a batch (`sim.run_batch`).

        Its HTTP errors and slowness are drawn per repeat of the same request content (so that transport
        retries can succeed), or from `transport_key` when given (a batch request's custom_id)."""
        try:
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
            prompt, png = _read_messages(body)
            entry["image_sha256"] = hashlib.sha256(png).hexdigest()
            _check_image(png)
            temperature = float(body.get("temperature") if body.get("temperature") is not None else 1.0)
            max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 512
            if not isinstance(max_tokens, int) or max_tokens < 1:
                raise BadRequest("max_tokens must be a positive integer")
        except (BadRequest, TypeError, ValueError) as err:
            return SimReply(400, error_body(400, str(err), "invalid_request_error"))
        entry.update(prompt=prompt, temperature=temperature)
        prompt_tokens = word_count(prompt) + IMAGE_TOKENS
        if prompt_tokens + max_tokens > MAX_CONTEXT_TOKENS:
            message = f"This model's maximum context length is {MAX_CONTEXT_TOKENS} tokens; the request asks for {prompt_tokens + max_tokens}."
            return SimReply(400, error_body(400, message, "invalid_request_error"))

        content = [prompt, entry["image_sha256"], temperature, body.get("top_p"), body.get("seed"), max_tokens]
        if transport_key is None:
            transport_key = self._repeats[json.dumps(content)]
            self._repeats[json.dumps(content)] += 1
        transport = self._rng("transport", content, transport_key)
        delay = self.sim.latency_s + (self.sim.slow_s if transport.random() < self.sim.slow_rate else 0.0)
        if transport.random() < self.sim.http_error_rate:
            if transport.random() < 0.5:
                wait = self.sim.retry_after_s
                headers = {"Retry-After": str(math.ceil(wait)), "retry-after-ms": str(int(wait * 1000))}
                return SimReply(
                    429, error_body(429, "Rate limit reached; retry later.", "rate_limit_error"), headers, delay
                )
            return SimReply(
                500,
                error_body(500, "The server had an error while processing the request.", "server_error"),
                None,
                delay,
            )
        answer = write_answer(
            parse_prompt(prompt, self._pattern), png, max_tokens, self.sim, self._rng("answer", content)
        )
        return SimReply(200, self._completion(body.get("model") or self.model_name, answer, prompt_tokens), None, delay)

    @staticmethod
    def _completion(model: str, answer: Answer, prompt_tokens: int) -> dict[str, Any]:
        completion_tokens = word_count(answer.text)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text},
                    "finish_reason": answer.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


class SimulatedVLMServer:
    """A SimulatedVLM (or any handler with `.app()` and `.requests`) served on a loopback port by a background
    thread; `.base_url`, `.stop()`, context manager."""

    def __init__(self, handler: SimulatedVLM, host: str = "127.0.0.1", port: int = 0):
        self.handler = handler
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(1024)
        self.host, self.port = self._sock.getsockname()[:2]
        self.base_url = f"http://{self.host}:{self.port}/v1"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="simulated-vlm", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError(f"simulated VLM endpoint failed to start: {self._error}") from self._error

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.handler.requests

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            # A client that gave up (timeout) cancels its handler, so stopping never waits on abandoned work.
            self._runner = web.AppRunner(self.handler.app(), access_log=None, handler_cancellation=True)
            await self._runner.setup()
            await web.SockSite(self._runner, self._sock).start()

        try:
            self._loop.run_until_complete(start())
        except BaseException as err:  # reported to the starting thread
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self._sock.close()

    def __enter__(self) -> SimulatedVLMServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_simulated_vlm(
    sim: SimulatorParams,
    seed: int,
    prompt_template: str = DEFAULT_CAPTION_PROMPT,
    host: str = "127.0.0.1",
    port: int = 0,
    model_name: str = MODEL_NAME,
) -> SimulatedVLMServer:
    """Serve the simulated VLM in a background thread (port 0 = an ephemeral port); returns the running server.

    `model_name` is the one model it lists at /v1/models (the caption stage passes caption.model)."""
    return SimulatedVLMServer(SimulatedVLM(sim, seed, prompt_template, model_name), host, port)


def serve_vlm_main(argv: list[str] | None = None) -> None:
    """`brandcap serve-vlm`: serve the simulated VLM in the foreground until interrupted."""
    parser = argparse.ArgumentParser(prog="brandcap serve-vlm", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--params", default="params.yaml", help="parameter file (caption.simulator, caption.prompt and seed are used)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 = an ephemeral port (the URL is printed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    params = load_params(args.params)
    server = start_simulated_vlm(
        params.caption.simulator,
        params.seed,
        params.caption.prompt,
        args.host,
        args.port,
        model_name=params.caption.model,
    )
    print(f"simulated VLM serving on {server.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


main = serve_vlm_main

if __name__ == "__main__":
    serve_vlm_main()
