"""Batch JSONL files of chat completions, as `vllm run-batch` and OpenAI's Batch API read and write them.

    with RequestFiles(next_path, max_bytes, on_file, "caption.batch_max_bytes") as files:
        files.add(custom_id, request_line(custom_id, body), what=image_path)
    for number, result in read_results(path):
        outcome = result_outcome(result, max_chars, "caption")      # a Reply, or a Failure with its reason

A requests file holds one `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}` per
line: at most MAX_REQUESTS_PER_FILE lines and a byte bound (OpenAI's limits: 50,000 requests, 200 MB);
`RequestFiles` splits a stream of lines into such files, each appearing whole (written under a temporary
name, then renamed). A results file holds one `{"id", "custom_id", "response": {"status_code",
"request_id", "body"}, "error"}` per line, in any order: a success has status 200 and the completion as
body; vLLM writes an error as its status with `error` set and no body; OpenAI puts failed requests in a
separate error file (status and an error body) and a request its batch never ran (expired, cancelled)
as `response: null` with `error: {"code", "message"}`. `result_outcome` reads a result with the online
client's rules (`brandcap.endpoint.client.read_completion`, `retryable_status`), so an answer fails for
the same named reasons whichever way it came; a result without a response is `batch_error` (retried).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from brandcap.endpoint.client import AnswerRejected, Failure, Reply, read_completion, retryable_status
from brandcap.files.atomic import atomic_path

log = logging.getLogger(__name__)

BATCH_URL = "/v1/chat/completions"
MAX_REQUESTS_PER_FILE = 50_000  # OpenAI's Batch API takes no more in one file
RESULT_SHAPE = '{"id", "custom_id", "response": {"status_code", "body"}, "error"}'


class BatchFileError(ValueError):
    """A batch file that cannot be used: the message names the file, the line and the fix."""


# --------------------------------------------------------------------------- requests


def request_line(custom_id: str, body: dict[str, Any]) -> str:
    """One line of a requests file: the chat-completions `body` as the online client sends it."""
    line = {"custom_id": custom_id, "method": "POST", "url": BATCH_URL, "body": body}
    return json.dumps(line, ensure_ascii=False) + "\n"


class RequestFiles:
    """Request lines into files (`next_path()` names each) under `max_bytes` bytes and `max_requests` lines;
    `on_file(path, custom_ids)` hears of each file once it is whole. A context manager: an error leaves no
    partial file."""

    def __init__(
        self,
        next_path: Callable[[], Path],
        max_bytes: int,
        on_file: Callable[[Path, list[str]], None],
        limit_name: str,
        max_requests: int = MAX_REQUESTS_PER_FILE,
    ):
        self.next_path, self.max_bytes, self.on_file = next_path, max_bytes, on_file
        self.limit_name, self.max_requests = limit_name, max_requests
        self._stack: ExitStack | None = None
        self._path: Path | None = None
        self._ids: list[str] = []
        self._bytes = 0

    def add(self, custom_id: str, line: str, what: str) -> None:
        """Append one request line (`what` names its subject in an error)."""
        data = line.encode("utf-8")
        if len(data) > self.max_bytes:
            raise BatchFileError(
                f"{what}: its request is {len(data):,} bytes, above {self.limit_name} ({self.max_bytes:,}); raise "
                f"{self.limit_name} (OpenAI's Batch API takes files up to 200 MB) or store smaller images (download.max_side)"
            )
        if self._stack is not None and (
            self._bytes + len(data) > self.max_bytes or len(self._ids) >= self.max_requests
        ):
            self._finish(None, None, None)
        if self._stack is None:
            self._open()
        self._handle.write(data)
        self._ids.append(custom_id)
        self._bytes += len(data)

    def _open(self) -> None:
        self._path = self.next_path()
        self._stack = ExitStack()
        tmp = self._stack.enter_context(atomic_path(self._path))
        self._handle = self._stack.enter_context(open(tmp, "wb"))

    def _finish(self, *exc: Any) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        stack.__exit__(*exc)  # closes the file, then renames it into place (or, on an error, removes it)
        if exc[0] is None:
            self.on_file(self._path, self._ids)
        self._ids, self._bytes = [], 0

    def __enter__(self) -> RequestFiles:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._finish(*exc)


# --------------------------------------------------------------------------- results


class BatchResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status_code: int
    request_id: str | None = None
    body: Any = None


class BatchResult(BaseModel):
    """One line of a results file (vLLM's BatchRequestOutput, OpenAI's request output object)."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    custom_id: str = Field(min_length=1)
    response: BatchResponse | None = None
    error: Any = None

    @property
    def model(self) -> str | None:
        """The model that answered, as the completion names it (None when there is no completion)."""
        body = self.response.body if self.response else None
        return body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None


def _not_a_result(path: Path, number: int, why: str) -> BatchFileError:
    return BatchFileError(
        f"{path}: line {number}: {why}; a results file holds one {RESULT_SHAPE} per line, as `vllm run-batch -o` "
        "and OpenAI's Batch API (its output and error files) write them: list only such files in caption.batch_results"
    )


def parse_result(raw: bytes, path: Path, number: int) -> BatchResult:
    """The result on one line; BatchFileError naming the file, the line, what is wrong and the fix."""
    try:
        obj = json.loads(raw)
    except ValueError:
        raise _not_a_result(path, number, f"not JSON ({raw[:60].decode('utf-8', 'replace')!r})") from None
    if not isinstance(obj, dict):
        raise _not_a_result(path, number, f"a JSON {type(obj).__name__}, not an object")
    if "response" not in obj and "error" not in obj:
        if {"method", "url", "body"} <= obj.keys():
            why = "a request, not a result: this is a requests file; run it and read its output"
        else:
            why = f"neither 'response' nor 'error' (keys: {', '.join(sorted(obj)[:8])})"
        raise _not_a_result(path, number, why)
    try:
        return BatchResult.model_validate(obj)
    except ValidationError as err:
        first = err.errors()[0]
        raise _not_a_result(path, number, f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def read_results(path: Path) -> Iterator[tuple[int, BatchResult]]:
    """(line number, result) for every line of a results file; a torn last line (its writer still at work,
    or killed) is left out with a log line, and is asked again if nothing else answers it."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            if not raw.endswith(b"\n"):
                try:
                    json.loads(raw)
                except ValueError:
                    log.info("%s: line %d is unfinished (a batch run still writing, or killed); left out", path, number)
                    return
            yield number, parse_result(raw, path, number)


def _error_fields(error: Any) -> dict[str, Any]:
    """The fields of a result's error: a string (vLLM), {"code", "message"}, or {"error": {"code", "message"}}."""
    if isinstance(error, str):
        return {"message": error}
    if isinstance(error, dict):
        return error["error"] if isinstance(error.get("error"), dict) else error
    return {}


def http_error_detail(status: int, *errors: Any) -> str:
    """What the online client says of an HTTP error (`Error code: 500 - message`), from the first error that has a message."""
    messages = (_error_fields(error).get("message") for error in errors)
    message = next((m for m in messages if isinstance(m, str) and m), None)
    return f"Error code: {status}" + (f" - {message}" if message else "")


def result_outcome(result: BatchResult, max_chars: int, section: str) -> Reply | Failure:
    """The caption in a result, or the Failure an online request would have met (same reasons, same retry rule)."""
    response = result.response
    if response is None:
        fields = _error_fields(result.error)
        said = ": ".join(str(fields[k]) for k in ("code", "message") if fields.get(k) not in (None, ""))
        return Failure("batch_error", f"no response ({said or 'no error given'})"[:300], True)
    status = response.status_code
    if not 200 <= status < 300:
        return Failure(
            f"http_{status}", http_error_detail(status, result.error, response.body)[:300], retryable_status(status)
        )
    body = response.body
    raw = body.encode("utf-8") if isinstance(body, str) else json.dumps(body, ensure_ascii=False).encode("utf-8")
    try:
        return read_completion(raw, "" if isinstance(body, str) else "application/json", max_chars, section)
    except AnswerRejected as err:
        return Failure(err.reason, err.detail, err.retry)


def same_model(answered: str, asked: str) -> bool:
    """Whether a completion's model is the one asked for: the same name, or (OpenAI) a dated snapshot of it."""
    return re.fullmatch(re.escape(asked) + r"(-\d{4}-\d{2}-\d{2})?", answered) is not None
