"""eval.backend endpoint against a loopback OpenAI-compatible server that serves an exported tiny model with
transformers: the same predictions and metrics as the in-process (hf) backend on the same checkpoint."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from aiohttp import web
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from brandcap.config.params import ParamsError, validate_params
from brandcap.endpoint.client import EndpointError
from brandcap.files.atomic import read_jsonl, write_jsonl
from brandcap.stages.evaluate import EndpointAnswersMissing, run_evaluate
from brandcap.stages.export import EXPORT_META, run_export
from tests.conftest import run_tiny_training, train_params

SERVED = "brandcap-best"


# ----------------------------------------------------------------------------- the loopback server
class TransformersServer:
    """POST /v1/chat/completions with one image and text: the served model's chat template, its processor
    (with the export's processor_kwargs, as `vllm serve --mm-processor-kwargs` passes them) and greedy
    generation; GET /v1/models lists SERVED. `answer` may replace the reply to a request."""

    def __init__(self, model_dir: Path, answer: Callable[[int, dict], web.Response | None] = lambda n, body: None):
        self.model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.processor_kwargs = json.loads((model_dir / EXPORT_META).read_text())["processor_kwargs"]
        self.answer, self.requests = answer, []

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": SERVED, "object": "model"}]})

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        replaced = self.answer(len(self.requests), body)
        if replaced is not None:
            return replaced
        if body["model"] != SERVED:
            return web.json_response({"error": {"message": f"model {body['model']} not served"}}, status=404)
        text = self.generate(body["messages"], body["max_tokens"])
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": SERVED,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
        )

    def generate(self, messages: list[dict], max_tokens: int) -> str:
        images, content = [], []
        for part in messages[0]["content"]:
            if part["type"] == "image_url":
                data = part["image_url"]["url"].split(",", 1)[1]
                images.append(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
                content.append({"type": "image"})
            else:
                content.append(part)
        prompt = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        inputs = self.processor(text=[prompt], images=images, return_tensors="pt", **self.processor_kwargs)
        with torch.no_grad():
            out = self.model.generate(
                **inputs, max_new_tokens=max_tokens, do_sample=False, pad_token_id=self.processor.tokenizer.pad_token_id
            )
        return self.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


@contextmanager
def serving(server: TransformersServer):
    """The server on 127.0.0.1 in a thread of its own; yields its API root (…/v1)."""
    app = web.Application(client_max_size=16 * 1024**2)
    app.router.add_get("/v1/models", server.models)
    app.router.add_post("/v1/chat/completions", server.chat)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


# ----------------------------------------------------------------------------- fixtures
# The fixture trains a checkpoint that names brands (12 epochs, about 70 s): an untrained model's blank answers
# would make any two backends agree.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sets(workdir) -> dict[str, Path]:
    """Test, validation and general sets from the tiny training images (paths relative to workdir)."""
    records = read_jsonl(workdir / "train.jsonl")
    write_jsonl(workdir / "ep-test.jsonl", records[:6])
    write_jsonl(workdir / "ep-val.jsonl", [{**r, "product_id": f"v{i}"} for i, r in enumerate(records[6:])])
    write_jsonl(
        workdir / "ep-general.jsonl",
        [
            {"id": f"g{i}", "image": r["image"], "caption": "A plain coloured square."}
            for i, r in enumerate(records[:2])
        ],
    )
    return {"test": Path("ep-test.jsonl"), "val": Path("ep-val.jsonl"), "general": Path("ep-general.jsonl")}


@pytest.fixture(scope="module")
def checkpoint_and_export(workdir) -> tuple[Path, Path]:
    """A training run whose one checkpoint (epoch 12) is trained long enough to answer with words and brands (the
    untrained tiny model answers only blank lines, which would make any two backends agree): the run's checkpoints
    folder, and the export of that checkpoint."""
    params = train_params(epochs=12, save_epochs=[12], learning_rate=1e-2)
    checkpoints = run_tiny_training(workdir, "full", params=params, tag="-endpoint")["checkpoints_dir"]
    (workdir / "processed-ep").mkdir(exist_ok=True)
    for name in ("train.jsonl", "test.jsonl"):
        (workdir / "processed-ep" / name).write_bytes((workdir / "train.jsonl").read_bytes())
    run_export(
        eval_params(),
        workdir / "base",
        workdir / "processed-ep",
        workdir / "export-ep",
        checkpoint_dir=checkpoints / "epoch-12",
    )
    return checkpoints, workdir / "export-ep"


def eval_params(**endpoint):
    settings = {
        "eval": {"max_new_tokens": 8, "batch_size": 4},
        "train": {"seeds": [3], "epochs": 12, "save_epochs": [12]},
    }
    if endpoint:
        settings["eval"].update(
            backend="endpoint", endpoint={"model": SERVED, "retries": 1, "backoff_s": 0.0, **endpoint}
        )
    return validate_params(settings)


def evaluate(workdir, sets, params, out: Path, checkpoints: Path | None = None):
    """Predictions and metrics of the served model, or (with a training run's `checkpoints`) of its epoch 12."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        run_evaluate(
            params,
            workdir / "base",
            checkpoints,
            sets["test"],
            sets["general"],
            out,
            out.with_name(out.name + "-resume"),
            val_jsonl=sets["val"],
        )
    scored = out / "epoch-12" if checkpoints is not None else out
    return read_jsonl(scored / "predictions.jsonl"), json.loads((scored / "metrics.json").read_text())


# ----------------------------------------------------------------------------- tests
def test_endpoint_backend_agrees_with_the_hf_backend_on_the_same_checkpoint(
    workdir, sets, checkpoint_and_export, tmp_path
):
    checkpoints, exported = checkpoint_and_export
    hf_predictions, hf_metrics = evaluate(workdir, sets, eval_params(), tmp_path / "hf", checkpoints)
    server = TransformersServer(exported)
    with serving(server) as base_url:
        ep_predictions, ep_metrics = evaluate(workdir, sets, eval_params(base_url=base_url), tmp_path / "endpoint")

    assert len(server.requests) == 6 + 2 + 2  # test, validation, general
    first = server.requests[0]
    assert (first["temperature"], first["max_tokens"]) == (0.0, 8)
    assert [p["type"] for p in first["messages"][0]["content"]] == ["image_url", "text"]  # the training layout
    assert first["messages"][0]["content"][1]["text"] == eval_params().train.instruction

    hf_answers = [p["prediction"] for p in hf_predictions]
    assert any(p["brands_named"] for p in hf_predictions) and len(set(hf_answers)) > 1  # a comparison that can fail
    assert [p["prediction"] for p in ep_predictions] == hf_answers
    assert [p["outcome"] for p in ep_predictions] == [p["outcome"] for p in hf_predictions]
    assert ep_metrics.keys() == hf_metrics.keys() and ep_predictions[0].keys() == hf_predictions[0].keys()
    for key in (
        "brand_accuracy",
        "macro_brand_accuracy",
        "hedged_rate",
        "val_brand_accuracy",
        "cider",
        "general_cider",
    ):
        assert ep_metrics[key] == hf_metrics[key], key
    assert hf_metrics["test_loss"] is not None and ep_metrics["test_loss"] is None and ep_metrics["val_loss"] is None
    assert all(p["reference_loss"] is None for p in ep_predictions)
    assert (tmp_path / "endpoint" / "general_predictions.jsonl").exists()


def test_unanswered_items_stop_the_stage_and_a_rerun_asks_only_them(workdir, sets, checkpoint_and_export, tmp_path):
    _, exported = checkpoint_and_export

    def refuse_second(n: int, body: dict) -> web.Response | None:
        if n == 2:
            return web.json_response({"error": {"message": "image too large"}}, status=400)
        if n == 3:  # content null: the model said nothing
            return web.json_response(
                {"choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "stop"}]}
            )
        return None

    server = TransformersServer(exported, refuse_second)
    with serving(server) as base_url:
        with pytest.raises(EndpointAnswersMissing, match=r"1 of 6 test items got no answer .*http_400"):
            evaluate(workdir, sets, eval_params(base_url=base_url), tmp_path / "ep")
        assert not (tmp_path / "ep").exists()
        asked = len(server.requests)
        predictions, _ = evaluate(workdir, sets, eval_params(base_url=base_url), tmp_path / "ep")
    assert (
        asked == 6 and len(server.requests) == asked + 1 + 2 + 2
    )  # the refused test item, then validation and general
    assert (
        sum(p["prediction"] == "" for p in predictions) == 1
    )  # the null answer, kept as said (the model's own are not blank)


def test_endpoint_settings_are_checked(workdir, sets, checkpoint_and_export, tmp_path):
    checkpoints, exported = checkpoint_and_export
    with pytest.raises(ParamsError, match="eval.endpoint.base_url is empty"):
        validate_params({"eval": {"backend": "endpoint"}})
    with pytest.raises(ValueError, match="export the checkpoint"):
        evaluate(workdir, sets, eval_params(base_url="http://127.0.0.1:9/v1"), tmp_path / "x", checkpoints)
    with serving(TransformersServer(exported)) as base_url:
        with pytest.raises(
            EndpointError, match=r"eval.endpoint.base_url .* the model 'other' \(eval.endpoint.model\) is not served"
        ):
            evaluate(
                workdir,
                sets,
                validate_params(
                    {"eval": {"backend": "endpoint", "endpoint": {"base_url": base_url, "model": "other"}}}
                ),
                tmp_path / "y",
            )
