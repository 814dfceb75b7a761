"""The caption stage against endpoints that misbehave: a real aiohttp server on loopback, small timeouts.

    .venv/bin/python -m pytest tests/test_caption_endpoint.py -q

One server answers at /{behaviour}/v1 in one way each (HTML with status 200, content null, invalid
JSON, 5 MB, never, ...); a closed port refuses; a socket that listens but never accepts stalls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import Counter

import openai
import pytest
from aiohttp import web

from brandcap.endpoint.client import EndpointDown, EndpointError, make_client
from brandcap.files.atomic import read_jsonl
from brandcap.sim.simulated_vlm import SimulatedVLMServer
from brandcap.stages.caption import Asker, CaptionError, load_items, run_caption
from tests.conftest import CAPTIONS, RESUME, make_manifest, params_for

MODEL = "test-vlm"
CAPTION = "The photo shows a black leather bag by Gucci with gold hardware on a plain white background."
SECRET = "sk-brandcap-TEST-55aa0e21"


class MisbehavingEndpoint:
    """Chat completions at /{behaviour}/v1 answered in that one way; /{behaviour}/v1/models lists MODEL."""

    def __init__(self):
        self.requests: list[str] = []  # the behaviour of every chat request, in arrival order
        self.bodies: list[dict] = []  # the JSON of every chat request that parsed
        self.connections: set[tuple] = set()  # the client ends (host, port) chat requests came over
        self.huge = json.dumps(self._completion("word " * 1_000_000))  # 5 MB of content

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_get("/{behaviour}/v1/models", self.models)
        app.router.add_post("/{behaviour}/v1/chat/completions", self.chat)
        return app

    @staticmethod
    def _completion(content: str | None) -> dict:
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320},
        }

    async def models(self, request: web.Request) -> web.Response:
        behaviour = request.match_info["behaviour"]
        if behaviour == "models-html":
            return web.Response(
                text="<!DOCTYPE html><html><body>Welcome to the dashboard</body></html>", content_type="text/html"
            )
        if behaviour == "models-401":
            return web.json_response({"error": {"message": "Invalid API key", "code": 401}}, status=401)
        return web.json_response(
            {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "test"}]}
        )

    async def chat(self, request: web.Request) -> web.Response:
        behaviour = request.match_info["behaviour"]
        body = await request.read()
        self.requests.append(behaviour)
        self.connections.add(request.transport.get_extra_info("peername"))
        try:
            self.bodies.append(json.loads(body))
        except ValueError:
            pass
        if behaviour == "html":
            return web.Response(
                text="<!DOCTYPE html>\n<html><body><h1>Sign in to the proxy</h1></body></html>",
                content_type="text/html",
            )
        if behaviour == "null":
            return web.json_response(self._completion(None))
        if behaviour == "invalid-json":
            return web.Response(text='{"choices": [{"message": {"content": "The pho', content_type="application/json")
        if behaviour == "error-200":
            return web.json_response({"error": {"message": "model overloaded"}})
        if behaviour == "huge":
            return web.Response(text=self.huge, content_type="application/json")
        if behaviour == "hang" or (behaviour == "dies-after-3" and self.requests.count(behaviour) > 3):
            await asyncio.sleep(3600)
        if behaviour == "parts":  # content as a list of text parts, as some OpenAI-compatible servers send it
            half = len(CAPTION) // 2
            return web.json_response(
                self._completion([{"type": "text", "text": CAPTION[:half]}, {"type": "text", "text": CAPTION[half:]}])
            )
        if behaviour == "bad-gzip":  # declares gzip, sends plain JSON
            return web.Response(
                body=json.dumps(self._completion(CAPTION)).encode(),
                content_type="application/json",
                headers={"Content-Encoding": "gzip"},
            )
        if behaviour == "invalid-then-good" and self.requests.count(behaviour) % 2:
            return web.Response(text="{not json", content_type="application/json")
        return web.json_response(self._completion(CAPTION))


@pytest.fixture
def endpoint():
    with SimulatedVLMServer(MisbehavingEndpoint()) as server:
        yield server


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BRANDCAP_API_KEY", SECRET)
    return tmp_path


def base_url(server, behaviour: str) -> str:
    return f"http://{server.host}:{server.port}/{behaviour}/v1"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(url: str, **caption) -> list[dict]:
    params = params_for(
        url, **{"model": MODEL, "retries": 1, "backoff_s": 0, "timeout_s": 0.5, "retry_temperatures": [], **caption}
    )
    run_caption(params, "data/raw/manifest.parquet", CAPTIONS, RESUME)
    return read_jsonl(CAPTIONS)


@pytest.mark.parametrize(
    "behaviour, reason, requests_per_item",
    [
        ("html", "html_body", 2),  # a proxy page with status 200: retried, then a failure, not a crash
        ("invalid-json", "non_json", 2),  # retried
        ("error-200", "not_a_completion", 2),  # retried
        ("null", "empty_answer", 1),  # content null is no caption
        ("huge", "oversize", 1),  # 5 MB is no caption
        ("hang", "timeout", 2),  # accepts and never answers: each attempt ends at timeout_s
        (
            "bad-gzip",
            "undecodable_body",
            2,
        ),  # Content-Encoding gzip on a body that is not: retried like a transport error
    ],
)
def test_every_bad_answer_is_a_named_failure(workdir, endpoint, behaviour, reason, requests_per_item):
    make_manifest(workdir, 3)
    started = time.monotonic()
    records = run(base_url(endpoint, behaviour), max_failed_fraction=1.0)
    assert time.monotonic() - started < 10
    assert [r["error"].split(":")[0] for r in records] == [reason] * 3
    assert all(r["text"] is None for r in records)
    assert Counter(endpoint.handler.requests) == {behaviour: 3 * requests_per_item}
    # Failures are counted in the failure fraction, and a rerun asks again.
    with pytest.raises(CaptionError, match=rf"3 of 3 items .*'{reason}': 3"):
        run(base_url(endpoint, behaviour))


def test_invalid_json_is_retried_into_a_caption(workdir, endpoint):
    make_manifest(workdir, 4)
    records = run(base_url(endpoint, "invalid-then-good"), concurrency=1)
    assert [r["text"] for r in records] == [CAPTION] * 4
    assert [r["retries"] for r in records] == [1] * 4


def test_answers_beyond_the_length_bound_are_rejected(workdir, endpoint):
    make_manifest(workdir, 2)
    records = run(base_url(endpoint, "good"), max_answer_chars=len(CAPTION) - 1, max_failed_fraction=1.0)
    assert all(r["error"].startswith(f"oversize: {len(CAPTION)} characters") for r in records)
    assert [r["text"] for r in run(base_url(endpoint, "good"), max_answer_chars=len(CAPTION))] == [CAPTION] * 2


def test_requests_are_what_the_typed_client_sends_over_kept_alive_connections(workdir, endpoint):
    """The stage posts its own body through the client (skipping `create`'s typed walk): it must be the very
    body `chat.completions.create` sends for the same settings, and the pool must reuse its connections."""
    make_manifest(workdir, 12)
    url = base_url(endpoint, "good")
    params = params_for(url, model=MODEL, concurrency=3, seed=7, extra_body={"repetition_penalty": 1.05, "top_k": 20})
    run_caption(params, "data/raw/manifest.parquet", CAPTIONS, RESUME)
    stage_body = endpoint.handler.bodies[0]
    assert len(endpoint.handler.connections) <= 3  # 12 requests, 3 in flight: no connection per request

    cp = params.caption
    content = stage_body["messages"][0]["content"]

    async def typed_request() -> None:
        async with openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0) as client:
            await client.chat.completions.create(
                model=cp.model,
                messages=[{"role": "user", "content": content}],
                temperature=cp.temperature,
                top_p=cp.top_p,
                max_tokens=cp.max_tokens,
                presence_penalty=cp.presence_penalty,
                frequency_penalty=cp.frequency_penalty,
                seed=cp.seed,
                extra_body=cp.extra_body,
            )

    asyncio.run(typed_request())
    assert stage_body == endpoint.handler.bodies[-1]
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_refused_connection_is_not_a_timeout(workdir):
    make_manifest(workdir, 1)
    params = params_for(f"http://127.0.0.1:{closed_port()}/v1", retries=2, backoff_s=0, timeout_s=5)
    item = load_items(params, "data/raw/manifest.parquet")[0][0]

    async def ask() -> dict:
        client = make_client(params.caption.base_url, params.caption, "")
        try:
            return await Asker(client, params.caption, params.clean, "").ask(item)
        finally:
            await client.close()

    started = time.monotonic()
    result = asyncio.run(ask())
    assert time.monotonic() - started < 2  # refused at once, not waited on for timeout_s
    assert result["error"].startswith("connection_refused") and result["retries"] == 2


def test_circuit_breaker_stops_a_dead_endpoint_and_keeps_finished_items(workdir, endpoint):
    rows = make_manifest(workdir, 12)
    url = base_url(endpoint, "dies-after-3")
    started = time.monotonic()
    with pytest.raises(EndpointDown) as caught:
        run(url, concurrency=1, timeout_s=0.2, retries=100, breaker_s=1.0)
    # Without the breaker: 9 items x 101 attempts x 0.2 s = 3 minutes.
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert url in message and "timeout" in message and "breaker_s" in message and "3 item(s) captioned" in message
    assert not (workdir / CAPTIONS).exists()
    # The three answers stay cached: a rerun against a working endpoint asks only the other nine.
    before = len(endpoint.handler.requests)
    records = run(base_url(endpoint, "good"))
    assert len(endpoint.handler.requests) - before == 9
    assert [r["product_id"] for r in records] == [r["product_id"] for r in rows]


# --------------------------------------------------------------------------- pre-flight


def never_accepting_socket() -> socket.socket:
    """A socket that listens (the kernel completes the handshake) but never accepts: requests stall."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


@pytest.mark.parametrize(
    "where, model, expected",
    [
        ("refused", MODEL, r"connection refused: nothing listens there; start the server"),
        ("stalled", MODEL, r"no answer to GET /models within 0.5 s; check that host and port"),
        ("no-v1", MODEL, r"HTTP 404: no /models there; caption.base_url must be the API root, usually ending in /v1"),
        (
            "models-401",
            MODEL,
            r"HTTP 401: the API key was refused; put a valid key in the environment variable \$BRANDCAP_API_KEY",
        ),
        (
            "models-html",
            MODEL,
            r"GET /models answered an HTML page; caption.base_url must be the OpenAI-compatible API root",
        ),
        (
            "good",
            "Qwen/Qwen2.5-VL-72B-Instruct",
            r"the model 'Qwen/Qwen2.5-VL-72B-Instruct' \(caption.model\) is not served; it serves \['test-vlm'\]",
        ),
    ],
)
def test_preflight_fails_in_seconds_with_the_url_and_the_fix(workdir, endpoint, caplog, where, model, expected):
    make_manifest(workdir, 50)
    stalled = never_accepting_socket()
    url = {
        "refused": f"http://127.0.0.1:{closed_port()}/v1",
        "stalled": f"http://127.0.0.1:{stalled.getsockname()[1]}/v1",
        "no-v1": f"http://{endpoint.host}:{endpoint.port}/good",
    }.get(where) or base_url(endpoint, where)
    started = time.monotonic()
    try:
        with caplog.at_level(logging.DEBUG), pytest.raises(EndpointError) as caught:
            run_caption(params_for(url, model=model, timeout_s=0.5), "data/raw/manifest.parquet", CAPTIONS, RESUME)
    finally:
        stalled.close()
    assert time.monotonic() - started < 3
    assert str(caught.value).startswith(f"caption.base_url {url}: ")
    assert caught.match(expected)
    assert endpoint.handler.requests == []  # no caption was asked for
    assert SECRET not in str(caught.value) and SECRET not in caplog.text
    assert not (workdir / CAPTIONS).exists()


def test_content_given_as_text_parts_is_the_parts_joined(workdir, endpoint):
    make_manifest(workdir, 2)
    records = run(base_url(endpoint, "parts"))
    assert [r["text"] for r in records] == [CAPTION] * 2 and all(r["error"] is None for r in records)


def test_a_body_that_is_not_a_completion_names_the_cause_before_the_excerpt(workdir, endpoint):
    make_manifest(workdir, 1)
    (record,) = run(base_url(endpoint, "error-200"), max_failed_fraction=1.0)
    assert record["error"].startswith("not_a_completion: not a chat completion (choices: Field required); body starts")
