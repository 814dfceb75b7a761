"""The caption stage against real loopback servers (the simulated VLM), counting requests at the server.

.venv/bin/python -m pytest tests/test_caption.py -q
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pandas as pd
import pytest
import yaml

from brandcap.config.params import SimulatorParams
from brandcap.files.atomic import read_jsonl
from brandcap.sim.simulated_vlm import start_simulated_vlm
from brandcap.stages.caption import CaptionError, run_caption
from tests.conftest import CAPTIONS, NO_FAILURES, RESUME, make_manifest, params_for, write_manifest


def run(params) -> list[dict]:
    run_caption(params, "data/raw/manifest.parquet", CAPTIONS, RESUME)
    return read_jsonl(CAPTIONS)


def asked(server, since: int = 0) -> Counter:
    """Requests per image sha256 that reached the handler."""
    return Counter(r.get("image_sha256") for r in server.requests[since:])


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_failure_mode_is_recorded_and_retried(workdir):
    broken = workdir / "data/raw/images/broken.png"
    make_manifest(workdir, 16)
    broken.write_bytes(b"this is not a png")
    extra = [
        {
            "product_id": "broken",
            "brand": "Gucci",
            "title": "Broken",
            "category": "Bags",
            "status": "ok",
            "image": "data/raw/images/broken.png",
            "sha256": hashlib.sha256(b"this is not a png").hexdigest(),
        },
        {
            "product_id": "gone",
            "brand": "Gucci",
            "title": "Gone",
            "category": "Bags",
            "status": "ok",
            "image": "data/raw/images/gone.png",
            "sha256": "0" * 64,
        },
        {
            "product_id": "failed-download",
            "brand": "Gucci",
            "title": "x",
            "category": "Bags",
            "status": "failed",
            "reason": "http_404",
            "image": None,
            "sha256": None,
        },
    ]
    rows = make_manifest(workdir, 16, extra)
    sim = SimulatorParams(
        loop_rate=0.3,
        garbled_rate=0.3,
        case_change_rate=0.3,
        missing_brand_rate=0.2,
        cutoff_rate=0.2,
        http_error_rate=0.3,
        slow_rate=0.0,
        retry_after_s=0.05,
    )
    with start_simulated_vlm(sim, seed=4) as server:
        records = run(params_for(server.base_url, retries=8, max_failed_fraction=0.5))
        first_run = len(server.requests)
        again = run(params_for(server.base_url, retries=8, max_failed_fraction=0.5))
        rerun_asked = asked(server, first_run)

    by_id = {r["product_id"]: r for r in records}
    assert [r["product_id"] for r in records] == [r["product_id"] for r in rows if r["status"] == "ok"]
    assert by_id["broken"]["error"].startswith("http_400") and by_id["broken"]["text"] is None
    assert by_id["gone"]["error"].startswith("image_unreadable")
    good = [r for r in records if r["product_id"] not in ("broken", "gone")]
    assert all(r["error"] is None and r["text"] for r in good)
    statuses = Counter(r["status"] for r in server.requests[:first_run])
    assert statuses[429] + statuses[500] > 0 and sum(r["retries"] for r in good) == statuses[429] + statuses[500]
    assert any(r["attempts"] > 1 for r in good)  # loops/garbling re-asked ...
    assert {r["temperature"] for r in server.requests} >= {0.1, 0.5}  # ... at the ladder's temperatures
    assert any(r["finish_reason"] == "length" for r in good)
    assert all(r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 for r in good)
    cache = read_jsonl(f"{RESUME}/cache.jsonl")  # latencies are kept in the resume cache only
    # an item that never reached the endpoint (the missing image) may take no measurable time on a fast machine
    assert all(r["latency_s"] >= 0 for r in cache) and all(r["latency_s"] > 0 for r in cache if r["attempts"] > 0)
    # The rerun asks only for the failed item that reaches the server, and keeps the rest.
    assert set(rerun_asked) == {by_id["broken"]["sha256"]}
    assert [r["text"] for r in again] == [r["text"] for r in records]


def test_two_runs_of_the_same_study_write_the_same_captions_bytes(workdir):
    """No timing reaches captions.jsonl: DVC hashes it as the clean stage's input, so a latency there
    would make every fresh run's identical captions look like a changed input."""
    make_manifest(workdir, 12)
    sim = SimulatorParams(
        loop_rate=0.2,
        garbled_rate=0.2,
        cutoff_rate=0.2,
        http_error_rate=0.2,
        slow_rate=0.3,
        slow_s=0.05,
        retry_after_s=0.05,
    )
    written = []
    for _ in range(2):
        shutil.rmtree(RESUME, ignore_errors=True)
        with start_simulated_vlm(sim, seed=4) as server:
            run(params_for(server.base_url, retries=8))
        written.append((workdir / CAPTIONS).read_bytes())
    assert written[0] == written[1]
    assert b"latency" not in written[0]


def test_retry_after_is_honoured(workdir):
    make_manifest(workdir, 8)
    sim = SimulatorParams(**{**NO_FAILURES, "http_error_rate": 0.6, "retry_after_s": 0.4})
    with start_simulated_vlm(sim, seed=4) as server:
        records = run(params_for(server.base_url, backoff_s=0.0, retries=10, concurrency=8))
    assert all(r["error"] is None for r in records)
    gaps = {429: [], 500: []}
    by_image: dict[str, list[dict]] = {}
    for r in server.requests:
        by_image.setdefault(r["image_sha256"], []).append(r)
    for reqs in by_image.values():
        for before, after in zip(reqs, reqs[1:]):
            if before["status"] in gaps:
                gaps[before["status"]].append(after["time"] - before["time"])
    assert gaps[429] and min(gaps[429]) >= 0.38
    assert gaps[500] and max(gaps[500]) < 0.3  # no Retry-After: the (zero) backoff applies


def test_timeouts_are_retried_then_recorded(workdir):
    make_manifest(workdir, 6)
    sim = SimulatorParams(**{**NO_FAILURES, "slow_rate": 0.5, "slow_s": 1.5})
    with start_simulated_vlm(sim, seed=4) as server:
        records = run(params_for(server.base_url, timeout_s=0.3, retries=6, backoff_s=0, concurrency=6))
        assert all(r["error"] is None for r in records) and sum(r["retries"] for r in records) > 0
    shutil.rmtree(RESUME)  # another server at the same base_url setting: the cache cannot tell
    sim = SimulatorParams(**{**NO_FAILURES, "slow_rate": 1.0, "slow_s": 1.5})
    with start_simulated_vlm(sim, seed=4) as server:
        with pytest.raises(CaptionError):
            run(params_for(server.base_url, timeout_s=0.3, retries=1, backoff_s=0, concurrency=6))
    assert all(r["error"].startswith("timeout") for r in read_jsonl(CAPTIONS))


def test_kill_9_mid_run_then_rerun_asks_only_unfinished(workdir):
    rows = make_manifest(workdir, 16)
    sim = SimulatorParams(**{**NO_FAILURES, "latency_s": 0.25})
    with start_simulated_vlm(sim, seed=4) as server:
        params_file = workdir / "params.yaml"
        params_file.write_text(yaml.safe_dump({"caption": {"base_url": server.base_url, "concurrency": 2}}))
        code = (
            "import sys; from brandcap.config.params import load_params; from brandcap.stages.caption import run_caption; "
            f"run_caption(load_params('params.yaml'), 'data/raw/manifest.parquet', '{CAPTIONS}', '{RESUME}')"
        )
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=workdir, stderr=subprocess.DEVNULL)
        cache = workdir / RESUME / "cache.jsonl"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not cache.exists() or cache.read_text().count("\n") < 5):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert not (workdir / CAPTIONS).exists()

        # Tear the last record as a kill during the write would.
        lines = cache.read_text().splitlines(keepends=True)
        assert 5 <= len(lines) < 16
        cache.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
        finished = {json.loads(line)["sha256"] for line in lines[:-1]}
        torn = json.loads(lines[-1])["sha256"]

        before = len(server.requests)
        records = run(params_for(server.base_url, concurrency=4))
        rerun = asked(server, before)

    assert not finished & set(rerun)
    assert torn in rerun
    assert set(rerun) | finished == {r["sha256"] for r in rows}
    assert max(rerun.values()) == 1
    assert [r["product_id"] for r in records] == [r["product_id"] for r in rows]
    assert all(r["text"] and r["error"] is None for r in records)
    assert all(json.loads(line) for line in cache.read_text().splitlines())  # the torn line was cut, not merged


def test_changed_prompt_sampling_or_item_re_asks_exactly_the_affected(workdir):
    rows = make_manifest(workdir, 8)
    with start_simulated_vlm(SimulatorParams(**NO_FAILURES), seed=4) as server:

        def asks(**caption) -> Counter:
            before = len(server.requests)
            run(params_for(server.base_url, **caption))
            return asked(server, before)

        assert sum(asks().values()) == 8
        assert sum(asks().values()) == 0  # same params: nothing asked
        assert set(asks(prompt="Photo of {brand}: {title}. Describe it, naming {brand}.")) == {
            r["sha256"] for r in rows
        }
        assert sum(asks(top_p=0.5).values()) == 8
        assert sum(asks(extra_body={"repetition_penalty": 1.05}).values()) == 8
        assert sum(asks().values()) == 0  # back to the first params: all cached
        rows[3]["title"] = "Suede bag model 3"
        write_manifest(workdir, rows)
        assert asks() == Counter({rows[3]["sha256"]: 1})
        assert sum(asks(concurrency=1, timeout_s=5).values()) == 0  # not part of the answer


def test_api_key_is_sent_but_never_written(workdir, monkeypatch):
    secret = "sk-brandcap-TEST-7f3a9c1e55"
    monkeypatch.setenv("BRANDCAP_API_KEY", secret)
    make_manifest(workdir, 6)
    log_file = workdir / "logs/caption.log"
    log_file.parent.mkdir()
    handler = logging.FileHandler(log_file)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        sim = SimulatorParams(**{**NO_FAILURES, "http_error_rate": 0.5, "retry_after_s": 0})
        with start_simulated_vlm(sim, seed=4) as server:
            run(params_for(server.base_url))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    assert {r["authorization"] for r in server.requests} == {f"Bearer {secret}"}
    assert log_file.stat().st_size > 0
    for path in workdir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_builtin_simulator_when_base_url_is_empty(workdir):
    make_manifest(workdir, 6)
    records = run(params_for("", simulator={"http_error_rate": 0.3, "retry_after_s": 0}))
    assert all(r["text"] and r["error"] is None for r in records)
    assert not [t for t in threading.enumerate() if t.name == "simulated-vlm"]
    # The simulator's params define the simulated model, so changing them changes the keys.
    again = run(params_for("", simulator={"http_error_rate": 0.3, "retry_after_s": 0, "loop_rate": 0.5}))
    assert not {r["key"] for r in records} & {r["key"] for r in again}
    # The pre-flight runs against the simulator too: it lists whatever caption.model names.
    named = run(params_for("", model="Qwen/Qwen2.5-VL-72B-Instruct", simulator={"http_error_rate": 0}))
    assert all(r["text"] and r["error"] is None for r in named)


def test_too_many_failures_raise_after_writing(workdir):
    make_manifest(workdir, 4)
    sim = SimulatorParams(**{**NO_FAILURES, "http_error_rate": 1.0, "retry_after_s": 0})
    with start_simulated_vlm(sim, seed=4) as server:
        with pytest.raises(CaptionError, match="4 of 4 items"):
            run_caption(
                params_for(server.base_url, retries=1, backoff_s=0), "data/raw/manifest.parquet", CAPTIONS, RESUME
            )
    records = read_jsonl(CAPTIONS)
    assert len(records) == 4 and all(r["error"].split(":")[0] in ("http_429", "http_500") for r in records)


def test_manifest_without_required_columns_is_a_clear_error(workdir):
    (workdir / "data/raw").mkdir(parents=True)
    pd.DataFrame({"product_id": ["a"], "status": ["ok"]}).to_parquet(workdir / "data/raw/manifest.parquet")
    with pytest.raises(ValueError, match=r"manifest.parquet: missing column\(s\).*download stage"):
        run(params_for("http://127.0.0.1:9/v1"))


def test_corrupt_cache_lines_are_skipped_reported_and_re_asked(workdir, caplog):
    rows = make_manifest(workdir, 6)
    cache = workdir / RESUME / "cache.jsonl"
    with start_simulated_vlm(SimulatorParams(**NO_FAILURES), seed=4) as server:
        first = run(params_for(server.base_url))
        records = [json.loads(line) for line in cache.read_text().splitlines()]
        by_sha = {r["sha256"]: r for r in records}
        kept, emptied, key_only, torn = (by_sha[row["sha256"]] for row in rows[:4])  # rows[4:] lose their records
        torn_line = json.dumps({**torn, "text": "Un sac en cuir noir signé Gucci."}, ensure_ascii=False).encode()
        cache.write_bytes(
            json.dumps(kept).encode()
            + b"\n"
            + b"}{ garbage\n"
            + b"\xff\xfe\x00 not UTF-8\n"
            + b'["a", "JSON", "array"]\n'
            + json.dumps({**emptied, "text": ""}).encode()
            + b"\n"  # content null stored as '' by older versions
            + json.dumps({"key": key_only["key"]}).encode()
            + b"\n"
            + torn_line[: torn_line.index("é".encode()) + 1]  # torn inside a two-byte character
        )
        before = len(server.requests)
        with caplog.at_level(logging.INFO):
            again = run(params_for(server.base_url))
        rerun = asked(server, before)
    assert set(rerun) == {row["sha256"] for row in rows[1:]}  # everything but the one valid record
    assert [r["text"] for r in again] == [r["text"] for r in first]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(f"{RESUME}/cache.jsonl: skipped 5 invalid line(s)")
