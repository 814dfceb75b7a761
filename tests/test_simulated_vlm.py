"""The built-in simulated VLM endpoint, over real loopback HTTP.

.venv/bin/python -m pytest tests/test_simulated_vlm.py -q
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import openai
import pytest

from brandcap.config.params import DEFAULT_CAPTION_PROMPT, CleanParams, SimulatorParams
from brandcap.sim.colours import dominant_and_accent
from brandcap.sim.simulated_vlm import parse_prompt, prompt_pattern, start_simulated_vlm
from brandcap.text import brands
from brandcap.text.clean_rules import is_garbled, is_repetition_loop
from tests.conftest import NO_FAILURES, png_bytes

BRAND = "Dolce & Gabbana"
PROMPT = DEFAULT_CAPTION_PROMPT.format(brand=BRAND, title="Leather tote bag", category="Bags")


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def messages(prompt: str = PROMPT, png: bytes | None = None) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": prompt},
                {"type": "image_url", "image_url": {"url": data_url(png or png_bytes())}},
            ],
        }
    ]


def post(base_url: str, body: dict) -> tuple[int, dict, dict]:
    req = urllib.request.Request(
        f"{base_url}/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


@pytest.fixture
def clean_server():
    with start_simulated_vlm(SimulatorParams(**NO_FAILURES), seed=4) as server:
        yield server


def test_plain_openai_client_call(clean_server):
    client = openai.OpenAI(base_url=clean_server.base_url, api_key="EMPTY", max_retries=0)
    reply = client.chat.completions.create(
        model="simulated-vlm", messages=messages(), temperature=0.1, top_p=0.2, max_tokens=200, seed=0
    )
    text = reply.choices[0].message.content
    first_sentence = text.split(". ")[0]
    assert BRAND in first_sentence
    assert 40 <= len(text.split()) <= 80
    assert "red" in text  # from the pixels
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == len(text.split())
    assert reply.usage.prompt_tokens > len(PROMPT.split())
    assert [m.id for m in client.models.list()] == ["simulated-vlm"]


def test_raw_http_request_and_models(clean_server):
    status, _, body = post(
        clean_server.base_url, {"model": "m", "messages": messages(png=png_bytes((40, 80, 215))), "max_tokens": 200}
    )
    assert status == 200
    assert body["object"] == "chat.completion"
    assert "blue" in body["choices"][0]["message"]["content"]
    with urllib.request.urlopen(f"{clean_server.base_url}/models", timeout=10) as resp:
        assert json.loads(resp.read())["data"][0]["id"] == "simulated-vlm"


def test_same_request_same_answer_and_temperature_changes_it(clean_server):
    body = {"model": "m", "messages": messages(), "max_tokens": 200, "seed": 0}
    first = post(clean_server.base_url, {**body, "temperature": 0.1})[2]["choices"][0]["message"]["content"]
    again = post(clean_server.base_url, {**body, "temperature": 0.1})[2]["choices"][0]["message"]["content"]
    others = {
        post(clean_server.base_url, {**body, "temperature": t})[2]["choices"][0]["message"]["content"]
        for t in (0.3, 0.5, 0.7, 0.9)
    }
    assert first == again
    assert others - {first}


def test_max_tokens_cuts_with_finish_reason_length(clean_server):
    status, _, body = post(clean_server.base_url, {"model": "m", "messages": messages(), "max_tokens": 10})
    assert status == 200
    assert body["choices"][0]["finish_reason"] == "length"
    assert len(body["choices"][0]["message"]["content"].split()) == 10


def test_bad_requests_are_400(clean_server):
    bad_image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": PROMPT},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}},
            ],
        }
    ]
    assert post(clean_server.base_url, {"model": "m", "messages": bad_image})[0] == 400
    assert post(clean_server.base_url, {"model": "m", "messages": []})[0] == 400
    status, _, body = post(clean_server.base_url, {"model": "m", "messages": messages(), "max_tokens": 100_000})
    assert status == 400 and "context length" in body["error"]["message"]


def test_unparsable_prompt_gives_a_generic_caption(clean_server):
    status, _, body = post(
        clean_server.base_url, {"model": "m", "messages": messages("Describe this."), "max_tokens": 200}
    )
    text = body["choices"][0]["message"]["content"]
    assert status == 200 and "did not say which brand" in text and "red" in text


def test_prompt_template_parsing_with_repeated_placeholders():
    pattern = prompt_pattern(DEFAULT_CAPTION_PROMPT)
    assert parse_prompt(PROMPT, pattern) == {"brand": BRAND, "title": "Leather tote bag", "category": "Bags"}
    custom = "Brand: {brand}\nTitle: {title}\nName {brand} in the caption."
    assert (
        parse_prompt(custom.format(brand="Acne Studios", title="Scarf (wool)"), prompt_pattern(custom))["brand"]
        == "Acne Studios"
    )
    assert parse_prompt("something else", pattern) is None


def test_dominant_colour_ignores_background():
    assert dominant_and_accent(png_bytes((40, 155, 60), background=(245, 245, 245)))[0] == "green"
    assert dominant_and_accent(png_bytes((245, 245, 245), background=(20, 20, 20)))[0] == "white"


def _answers(rate_name: str, n: int = 12, **extra) -> list[dict]:
    sim = SimulatorParams(**{**NO_FAILURES, rate_name: 1.0, **extra})
    with start_simulated_vlm(sim, seed=4) as server:
        out = []
        for i in range(n):
            status, headers, body = post(
                server.base_url,
                {
                    "model": "m",
                    "messages": messages(png=png_bytes((10 * i, 80, 200))),
                    "max_tokens": 200,
                    "temperature": 0.1,
                },
            )
            out.append({"status": status, "headers": headers, "body": body})
        return out


def _texts(answers):
    return [(a["body"]["choices"][0]["message"]["content"], a["body"]["choices"][0]["finish_reason"]) for a in answers]


def test_failure_mode_loops():
    clean = CleanParams()
    for text, finish in _texts(_answers("loop_rate")):
        assert is_repetition_loop(text, clean) and finish == "length" and len(text.split()) == 200


def test_failure_mode_garbled():
    clean = CleanParams()
    assert all(is_garbled(text, clean) for text, _ in _texts(_answers("garbled_rate")))


def test_failure_mode_brand_case_and_missing_brand():
    for text, _ in _texts(_answers("case_change_rate")):
        assert BRAND not in text and BRAND.upper() in text and brands.mentions(text, BRAND)
    for text, _ in _texts(_answers("missing_brand_rate")):
        assert not brands.mentions(text, BRAND)


def test_failure_mode_cut_off():
    for text, finish in _texts(_answers("cutoff_rate")):
        assert finish == "length" and not text.endswith(".")


def test_failure_mode_http_errors_and_retry_after():
    answers = _answers("http_error_rate", n=16, retry_after_s=2.5)
    statuses = {a["status"] for a in answers}
    assert statuses == {429, 500}
    for a in answers:
        if a["status"] == 429:
            assert a["headers"]["Retry-After"] == "3" and a["headers"]["retry-after-ms"] == "2500"
            assert a["body"]["error"]["type"] == "rate_limit_error"


def test_failure_mode_slow_answers():
    sim = SimulatorParams(**{**NO_FAILURES, "slow_rate": 1.0, "slow_s": 0.4})
    with start_simulated_vlm(sim, seed=4) as server:
        started = time.monotonic()
        assert post(server.base_url, {"model": "m", "messages": messages()})[0] == 200
        assert time.monotonic() - started >= 0.4


def test_http_errors_are_redrawn_when_a_request_repeats():
    sim = SimulatorParams(**{**NO_FAILURES, "http_error_rate": 0.5, "retry_after_s": 0})
    with start_simulated_vlm(sim, seed=4) as server:
        statuses = [
            post(server.base_url, {"model": "m", "messages": messages(), "max_tokens": 50})[0] for _ in range(12)
        ]
    assert 200 in statuses and set(statuses) - {200}


def test_serve_vlm_command(tmp_path):
    (tmp_path / "params.yaml").write_text("caption:\n  simulator:\n    http_error_rate: 0\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "brandcap.sim.simulated_vlm", "--port", "0", "--params", str(tmp_path / "params.yaml")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "serving on http://127.0.0.1:" in line
        base_url = line.split("serving on ")[1].strip()
        assert post(base_url, {"model": "m", "messages": messages()})[0] == 200
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
