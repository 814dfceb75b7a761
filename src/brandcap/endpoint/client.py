"""The client of an OpenAI-compatible chat-completions endpoint (vLLM, SGLang, OpenAI, the simulator).

    client = make_client(base_url, params.caption, secret)
    await check_endpoint(client, base_url, params.caption, secret)    # EndpointError with the fix
    reply, error, retries = await Requester(client, params.caption, secret).request(body)

Shared by the caption stage and the evaluate stage's endpoint backend (`cp` is `caption` or
`eval.endpoint`): our own retries (exponential backoff with full jitter, Retry-After honoured on
429/503), a wall-clock bound per attempt so a trickling server cannot stall it, a bound on the body
read, a circuit breaker (`EndpointDown`), the API key redacted from every message, and one named
reason for every answer that is not a usable completion (`classify`, `read_completion`): `timeout`,
`connection_refused`, `connection`, `http_NNN`, `html_body`, `non_json`, `not_a_completion`,
`undecodable_body`, `empty_answer`, `oversize`. The pre-flight `check_endpoint` asks GET /models.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
from pydantic import BaseModel, ValidationError

from brandcap.config.params import CaptionParams, EvalEndpointParams

MAX_RETRY_AFTER_S = 120.0
PLACEHOLDER_API_KEY = "EMPTY"  # vLLM and the simulator accept any key; the client insists on one
PREFLIGHT_TIMEOUT_S = 10.0  # GET /models of a running server answers in milliseconds


class EndpointFailure(RuntimeError):
    """The endpoint cannot be used: it failed the pre-flight, or every answer failed for too long."""


# --------------------------------------------------------------------------- reading an answer


class AnswerRejected(Exception):
    """An answer that is not a usable caption: `reason` names it, `retry` says whether asking again may help."""

    def __init__(self, reason: str, detail: str, retry: bool):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.retry = reason, detail, retry


class _ContentPart(BaseModel):
    type: str
    text: str | None = None


class _Message(BaseModel):
    # A string, or (as some OpenAI-compatible servers answer) a list of parts whose text parts are joined.
    content: str | list[_ContentPart] | None = None

    def text(self) -> str | None:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content


class _Choice(BaseModel):
    message: _Message
    finish_reason: str | None = None


class _Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class CompletionBody(BaseModel):
    """The part of a chat-completions answer the stage reads."""

    choices: list[_Choice]
    usage: _Usage | None = None


@dataclass
class Reply:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


def _snippet(body: bytes) -> str:
    return repr(body[:80].decode("utf-8", "replace"))


def looks_like_html(body: bytes, content_type: str) -> bool:
    return "html" in content_type.lower() or body.lstrip()[:1] == b"<"


def read_completion(body: bytes, content_type: str, max_chars: int, section: str = "caption") -> Reply:
    """The caption in an HTTP 200 answer's body, or AnswerRejected naming why there is none."""
    try:
        data = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8
        if looks_like_html(body, content_type):
            raise AnswerRejected(
                "html_body",
                f"an HTML page ({content_type or 'no content type'}) instead of JSON: {_snippet(body)}",
                retry=True,
            ) from None
        raise AnswerRejected("non_json", f"the body is not JSON: {_snippet(body)}", retry=True) from None
    try:
        completion = CompletionBody.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        cause = f"{'.'.join(map(str, first['loc'])) or 'the body'}: {first['msg']}"
        raise AnswerRejected(
            "not_a_completion", f"not a chat completion ({cause}); body starts {_snippet(body)}", retry=True
        ) from None
    if not completion.choices:
        raise AnswerRejected("empty_answer", "the endpoint returned no choices", retry=False)
    choice = completion.choices[0]
    text = choice.message.text()
    if not text or not text.strip():
        raise AnswerRejected(
            "empty_answer", f"message content is {text!r} (finish_reason {choice.finish_reason!r})", retry=False
        )
    if len(text) > max_chars:
        raise AnswerRejected(
            "oversize", f"{len(text)} characters, above {section}.max_answer_chars ({max_chars})", retry=False
        )
    usage = completion.usage or _Usage()
    return Reply(text, choice.finish_reason, usage.prompt_tokens, usage.completion_tokens)


# --------------------------------------------------------------------------- asking


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


def _caused_by(err: BaseException, kind: type[BaseException]) -> bool:
    """Whether `kind` is anywhere in the chain of causes (the client wraps transport errors twice)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kind):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


@dataclass
class Failure:
    reason: str  # a short name: timeout, connection_refused, http_503, non_json, oversize, ...
    detail: str
    retry: bool
    delay: float | None = None  # asked for by the server (Retry-After)

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"

    def is_final(self, retry: int, retries: int) -> bool:
        """Whether the item's answer stays this failure after transport retry number `retry` of `retries`."""
        return not self.retry or retry >= retries


def retryable_status(status: int) -> bool:
    """Whether asking again may help after this HTTP status: timeouts, conflicts, rate limits, server errors."""
    return status in (408, 409, 429) or status >= 500


def classify(err: Exception, timeout_s: float, section: str = "caption") -> Failure:
    """What went wrong with one request, and whether asking again may help (`section`: where the settings live)."""
    if isinstance(err, AnswerRejected):
        return Failure(err.reason, err.detail, err.retry)
    if _caused_by(err, ConnectionRefusedError):  # the aiohttp transport reports it as a connect timeout
        return Failure("connection_refused", "nothing listens at that host and port", True)
    if isinstance(err, (TimeoutError, openai.APITimeoutError)):
        return Failure("timeout", f"no complete answer within {timeout_s:g} s ({section}.timeout_s)", True)
    if isinstance(err, httpx2.DecodingError):  # e.g. Content-Encoding: gzip on a body that is not gzip
        return Failure("undecodable_body", f"the body does not decode as its Content-Encoding says ({err})"[:300], True)
    if isinstance(err, openai.APIConnectionError):
        return Failure("connection", str(getattr(err, "__cause__", None) or err), True)
    if isinstance(err, openai.APIStatusError):
        status = err.status_code
        delay = retry_after_seconds(err.response.headers) if status in (429, 503) else None
        return Failure(f"http_{status}", (err.message or "")[:300], retryable_status(status), delay)
    return Failure(type(err).__name__, str(err)[:300], False)


class CircuitBreaker:
    """Trips when every endpoint answer has failed for `after_s` seconds in a row."""

    def __init__(self, after_s: float):
        self.after_s = after_s
        self.failing_since: float | None = None
        self.reasons: Counter[str] = Counter()  # of the current streak of failures
        self.last = ""

    def success(self) -> None:
        self.failing_since = None
        self.reasons.clear()

    def failure(self, failure: str) -> bool:
        """Count a failure ("reason: detail"); True when the streak has lasted `after_s`."""
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        self.reasons[failure.split(":", 1)[0]] += 1
        self.last = failure[:300]
        return now - self.failing_since >= self.after_s


class EndpointDown(EndpointFailure):
    """The circuit breaker tripped; the stage stops (finished items stay cached)."""


COMPLETIONS_PATH = "/chat/completions"


class Requester:
    """Sends chat-completions bodies to one endpoint: our retries, a wall-clock bound per attempt, a bound on
    the body read, the circuit breaker, the key redacted from messages. `cp` holds the endpoint settings
    (caption, or eval.endpoint for the evaluate stage's endpoint backend)."""

    def __init__(self, client: openai.AsyncOpenAI, cp: CaptionParams | EvalEndpointParams, secret: str):
        self.client, self.cp, self.secret = client, cp, secret
        self.jitter = random.Random()
        self.breaker = CircuitBreaker(cp.breaker_s)
        # JSON escapes a character in at most 12 bytes; the rest of a completion is small.
        self.max_body_bytes = 12 * cp.answer_char_limit + 64 * 1024

    def _redact(self, message: str) -> str:
        return message.replace(self.secret, "***") if self.secret else message

    async def _post(self, body: dict[str, Any]) -> Reply:
        """One HTTP request, its body read up to the size bound and checked; raises on any failure."""
        async with asyncio.timeout(self.cp.timeout_s):  # the client's timeouts are per read: a trickle never ends
            # The client's raw POST: its auth, pool and error classes, without `create`'s per-request walk
            # over the typed message unions (a third of the client's CPU), which changes nothing in this body.
            response = await self.client.post(COMPLETIONS_PATH, cast_to=httpx2.Response, body=body, stream=True)
            try:
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > self.max_body_bytes:
                        limit = (
                            f"far beyond {self.cp.section}.max_answer_chars ({self.cp.answer_char_limit} characters)"
                        )
                        raise AnswerRejected(
                            "oversize", f"the answer body exceeds {self.max_body_bytes} bytes, {limit}", retry=False
                        )
            finally:
                await response.aclose()
            return read_completion(
                bytes(data), response.headers.get("content-type", ""), self.cp.answer_char_limit, self.cp.section
            )

    async def request(self, body: dict[str, Any]) -> tuple[Reply | None, str | None, int]:
        """(answer, None) or (None, "reason: detail") for one request body, and the transport retries spent."""
        cp = self.cp
        for retry in range(cp.retries + 1):
            try:
                reply = await self._post(body)
            except Exception as err:  # noqa: BLE001 - every failure is classified and recorded
                failure = classify(err, cp.timeout_s, cp.section)
                message = self._redact(str(failure))
                if self.breaker.failure(message):
                    raise EndpointDown(message) from None
                if failure.is_final(retry, cp.retries):
                    return None, message, retry
                delay = failure.delay if failure.delay is not None else self.jitter.uniform(0, cp.backoff_s * 2**retry)
                await asyncio.sleep(delay)
                continue
            self.breaker.success()
            return reply, None, retry
        raise AssertionError("unreachable")


# --------------------------------------------------------------------------- the endpoint pre-flight


class EndpointError(EndpointFailure):
    """The endpoint failed the pre-flight check; the message names the URL, the problem and the fix."""


def _preflight_problem(err: Exception, cp: CaptionParams | EvalEndpointParams, timeout_s: float) -> str:
    failure = classify(err, timeout_s, cp.section)
    key = cp.section
    status = getattr(err, "status_code", None)
    if failure.reason == "connection_refused":
        return f"connection refused: nothing listens there; start the server (e.g. `vllm serve {cp.model}`) or correct {key}.base_url"
    if failure.reason == "timeout":
        return (
            f"no answer to GET /models within {timeout_s:g} s; check that host and port are right and reachable "
            "(firewall, VPN, SSH tunnel) and that the server has finished loading the model"
        )
    if status in (401, 403):
        return f"HTTP {status}: the API key was refused; put a valid key in the environment variable ${cp.api_key_env} ({key}.api_key_env)"
    if status == 404:
        return f"HTTP 404: no /models there; {key}.base_url must be the API root, usually ending in /v1 (http://host:8000/v1)"
    if status is not None:
        return f"HTTP {status}: {failure.detail[:200]}; check the server's log"
    return f"cannot connect ({failure.detail[:200]}); check the host name and port in {key}.base_url"


async def check_endpoint(
    client: openai.AsyncOpenAI, base_url: str, cp: CaptionParams | EvalEndpointParams, secret: str
) -> None:
    """GET {base_url}/models must answer JSON within seconds and list `cp.model`; else EndpointError with the fix."""
    timeout_s = min(cp.timeout_s, PREFLIGHT_TIMEOUT_S)
    problem = None
    try:
        async with asyncio.timeout(timeout_s):
            async with client.models.with_streaming_response.list(timeout=timeout_s) as response:
                body, content_type = await response.read(), response.headers.get("content-type", "")
    except Exception as err:  # noqa: BLE001 - every failure becomes one clear message
        problem = _preflight_problem(err, cp, timeout_s)
    else:
        try:
            served = [m["id"] for m in json.loads(body)["data"]]
        except (ValueError, KeyError, TypeError):
            kind = (
                "an HTML page"
                if looks_like_html(body, content_type)
                else f"something that is not a model list ({_snippet(body)})"
            )
            problem = (
                f"GET /models answered {kind}; {cp.section}.base_url must be the OpenAI-compatible API root, "
                "usually ending in /v1, not a web page or a proxy"
            )
        else:
            if cp.model not in served:
                problem = f"the model {cp.model!r} ({cp.section}.model) is not served; it serves {served}; set {cp.section}.model to one of them"
    if problem is not None:
        message = f"{cp.section}.base_url {base_url}: {problem}"
        raise EndpointError(message.replace(secret, "***") if secret else message)


def make_client(base_url: str, cp: CaptionParams | EvalEndpointParams, secret: str) -> openai.AsyncOpenAI:
    """The openai client the stage asks with: no retries of its own (ours are), `timeout_s`, and a
    connection pool that holds one kept-alive connection per concurrent request (no request waits for a
    connection or reconnects). Its aiohttp transport costs about half the CPU per request of the httpx2
    one at 32 requests in flight (benchmarks/caption.py), and the CPU per request is what keeps a
    client from keeping up with a fast endpoint."""
    pool = httpx2.Limits(max_connections=cp.concurrency, max_keepalive_connections=cp.concurrency)
    return openai.AsyncOpenAI(
        base_url=base_url,
        api_key=secret or PLACEHOLDER_API_KEY,
        max_retries=0,
        timeout=cp.timeout_s,
        http_client=openai.DefaultAioHttpClient(limits=pool, timeout=cp.timeout_s),
    )
