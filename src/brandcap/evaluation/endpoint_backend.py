"""The evaluate stage's endpoint backend (`eval.backend: endpoint`): the model an OpenAI-compatible server serves.

    vllm serve results/export/best --served-model-name brandcap-best --port 8000
    with EndpointModel(params.eval.endpoint, params.eval.max_new_tokens) as model:
        answers = model.predict(images, params.train.instruction)   # [{"prediction", "error"}, ...]

Each image is one chat-completions request whose user turn is `brandcap.model.chat.user_messages`
(the image, then the instruction: the layout training renders through the chat template) with the
image in the image's place as a lossless PNG data URL of the decoded RGB pixels the `hf` backend
sees; the server applies the served model's chat template (the export stage saves models/base's).
Greedy: temperature 0, max_tokens = eval.max_new_tokens.

The client, the pre-flight (`GET /models` lists `eval.endpoint.model`), retries with backoff, the
wall-clock bound per attempt, the circuit breaker and the failure reasons are the caption stage's
(`brandcap.endpoint.client`). An answer whose content is null or blank is the prediction "" (the
model said nothing, as the `hf` backend records it); any other failure is returned as the item's
`error` ("reason: detail"), for the stage to report.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from PIL import Image

from brandcap.config.params import EvalEndpointParams
from brandcap.endpoint.client import EndpointDown, Requester, check_endpoint, make_client
from brandcap.files.images import data_url, png_bytes
from brandcap.model.chat import user_messages

EMPTY_ANSWER = "empty_answer"  # brandcap.endpoint.client's reason for content null or blank


def chat_request(model: str, instruction: str, image: Image.Image, max_new_tokens: int) -> dict[str, Any]:
    """The JSON body of one greedy chat-completions request: `user_messages` with the image as a data URL."""
    messages = user_messages(instruction)
    for part in messages[0]["content"]:
        if part["type"] == "image":
            part.clear()
            part.update({"type": "image_url", "image_url": {"url": data_url(png_bytes(image), "image/png")}})
    return {"model": model, "messages": messages, "temperature": 0.0, "max_tokens": max_new_tokens}


class EndpointModel:
    """The server at `eval.endpoint`, asked one batch at a time on one event loop and one connection pool."""

    def __init__(self, settings: EvalEndpointParams, max_new_tokens: int):
        self.settings, self.max_new_tokens = settings, max_new_tokens
        self._runner: asyncio.Runner | None = None
        self._requester: Requester | None = None

    def __enter__(self) -> EndpointModel:
        self._runner = asyncio.Runner()
        try:
            self._runner.run(self._open())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            if self._requester is not None:
                self._runner.run(self._requester.client.close())
        finally:
            self._runner.close()

    async def _open(self) -> None:
        settings = self.settings
        secret = os.environ.get(settings.api_key_env, "")
        client = make_client(settings.base_url, settings, secret)
        self._requester = Requester(client, settings, secret)
        await check_endpoint(client, settings.base_url, settings, secret)

    def predict(self, images: list[Image.Image], instruction: str) -> list[dict[str, Any]]:
        """{"prediction": text or None, "error": None or "reason: detail"} per image, in order."""
        return self._runner.run(self._ask_all(images, instruction))

    async def _ask_all(self, images: list[Image.Image], instruction: str) -> list[dict[str, Any]]:
        limit = asyncio.Semaphore(self.settings.concurrency)

        async def ask(image: Image.Image) -> dict[str, Any]:
            async with limit:
                reply, error, _ = await self._requester.request(
                    chat_request(self.settings.model, instruction, image, self.max_new_tokens)
                )
            if reply is not None:
                return {"prediction": reply.text.strip(), "error": None}
            if error.split(":", 1)[0] == EMPTY_ANSWER:
                return {"prediction": "", "error": None}
            return {"prediction": None, "error": error}

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(ask(image)) for image in images]
        except* EndpointDown:
            breaker = self._requester.breaker
            raise EndpointDown(
                f"eval.endpoint.base_url {self.settings.base_url}: every answer failed for {self.settings.breaker_s:g} s in a row "
                f"(eval.endpoint.breaker_s), so the stage stopped; failures by reason: {dict(breaker.reasons)}, the last: "
                f"{breaker.last}. Answered items are kept in the resume folder; check the server (curl {self.settings.base_url}/models), "
                "then rerun to ask only the rest"
            ) from None
        return [task.result() for task in tasks]
