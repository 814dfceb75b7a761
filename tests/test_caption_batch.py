"""The caption stage's batch mode end to end: the real stage writes batch request files, the simulated VLM
plays `vllm run-batch` on them (brandcap.sim.run_batch: the same answer logic as its HTTP endpoint, with a
batch run's faults), and the real stage reads the results back.

.venv/bin/python -m pytest tests/test_caption_batch.py -q
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from brandcap.config.params import SimulatorParams
from brandcap.endpoint.batch_files import MAX_REQUESTS_PER_FILE, BatchFileError, RequestFiles
from brandcap.files.atomic import read_jsonl
from brandcap.sim.run_batch import run_batch
from brandcap.sim.simulated_vlm import SimulatedVLM, SimulatedVLMServer
from brandcap.stages.caption import BatchPending, run_caption
from tests.conftest import CAPTIONS, NO_FAILURES, RESUME, make_manifest, params_for

MANIFEST = "data/raw/manifest.parquet"
BATCH = Path(RESUME) / "batch"
FAULTY = dict(loop_rate=0.3, garbled_rate=0.2, case_change_rate=0.2, missing_brand_rate=0.1, cutoff_rate=0.2)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(params, resume: str = RESUME) -> list[dict]:
    run_caption(params, MANIFEST, CAPTIONS, resume)
    return read_jsonl(CAPTIONS)


def simulated(params) -> SimulatedVLM:
    """The simulated VLM the online stage would start for these params (same seed, prompt and model)."""
    cp = params.caption
    return SimulatedVLM(cp.simulator, params.seed, cp.prompt, cp.model)


def named_runs(message: str) -> list[tuple[str, str]]:
    """(requests, results) of every command a BatchPending message says to run."""
    return re.findall(r"run_batch -i (\S+) -o (\S+) ", message) + re.findall(
        r"vllm run-batch -i (\S+) -o (\S+) ", message
    )


def results_of(requests: Path) -> Path:
    return requests.with_name(requests.name.replace("requests-", "results-"))


def request_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_batches(params, vlm: SimulatedVLM, resume: str = RESUME, **faults) -> tuple[list[dict], list[str]]:
    """Rerun the stage and answer the request files it names until it writes the captions; the captions and
    the stage's messages."""
    messages = []
    for _ in range(30):
        try:
            return run(params, resume), messages
        except BatchPending as pending:
            messages.append(str(pending))
            assert not Path(CAPTIONS).exists()  # nothing partial
            for requests, results in named_runs(str(pending)):
                run_batch(requests, results, vlm, **faults)
    raise AssertionError(f"still pending after 30 rounds: {messages[-1]}")


def add_unusable_items(workdir: Path, n: int) -> None:
    """n good products, one image that is not an image (HTTP 400 from the VLM) and one that is gone."""
    (workdir / "data/raw/images").mkdir(parents=True)
    (workdir / "data/raw/images/broken.png").write_bytes(b"this is not a png")
    extra = [
        {"product_id": pid, "brand": "Gucci", "title": pid, "category": "Bags", "status": "ok", "image": image}
        for pid, image in (("broken", "data/raw/images/broken.png"), ("gone", "data/raw/images/gone.png"))
    ]
    make_manifest(workdir, n, [{**row, "sha256": "0" * 64} for row in extra])


def test_a_batch_run_writes_the_bytes_of_an_online_run(workdir):
    add_unusable_items(workdir, 24)
    online = params_for("", simulator={**FAULTY, "http_error_rate": 0})
    expected = run(online)
    expected_bytes = Path(CAPTIONS).read_bytes()
    shutil.rmtree(RESUME)
    Path(CAPTIONS).unlink()

    batch = params_for("", mode="batch", simulator={**FAULTY, "http_error_rate": 0})
    records, messages = run_batches(batch, simulated(batch))

    assert Path(CAPTIONS).read_bytes() == expected_bytes
    assert records == expected
    by_id = {r["product_id"]: r for r in records}
    assert by_id["broken"]["error"].startswith("http_400") and by_id["gone"]["error"].startswith("image_unreadable")
    assert any(r["attempts"] > 1 for r in records)  # the temperature ladder ran ...
    assert {line["body"]["temperature"] for line in request_lines(BATCH / "requests-002.jsonl")} <= {0.5, 0.8}
    assert len(messages) >= 2  # ... in a second request file
    first = messages[0]
    assert "python -m brandcap.sim.run_batch -i .resume/caption/batch/requests-001.jsonl" in first
    assert "-o .resume/caption/batch/results-001.jsonl --model simulated-vlm" in first


class RecordingVLM(SimulatedVLM):
    """The simulated VLM, keeping every request body that reaches it."""

    def __init__(self, *args):
        super().__init__(*args)
        self.bodies: list[dict] = []

    def respond(self, body, entry, transport_key=None):
        self.bodies.append(body)
        return super().respond(body, entry, transport_key)


def test_requests_are_the_online_requests_and_answers_share_the_cache(workdir):
    make_manifest(workdir, 10)
    sim = SimulatorParams(**{**NO_FAILURES, "loop_rate": 0.3})
    with SimulatedVLMServer(RecordingVLM(sim, 4)) as server:
        online = params_for(server.base_url)
        expected = run(online)
        sent = sorted(json.dumps(body, sort_keys=True) for body in server.handler.bodies)
        Path(CAPTIONS).unlink()  # as an orchestrator removes a stage's outputs before running it

        batch = params_for(server.base_url, mode="batch")
        with pytest.raises(BatchPending) as pending:
            run(batch, resume=".resume/batch-run")
        requests = Path(".resume/batch-run/batch/requests-001.jsonl")
        lines = request_lines(requests)
        assert [line["custom_id"] for line in lines] == [r["key"] for r in expected]  # custom_id = the cache key
        assert {(line["method"], line["url"]) for line in lines} == {("POST", "/v1/chat/completions")}
        first_asks = [json.dumps(line["body"], sort_keys=True) for line in lines]
        assert set(first_asks) <= set(sent)  # the very bodies the online client sent, image inlined
        command = f"vllm run-batch -i {requests} -o {results_of(requests)} --model simulated-vlm"
        assert command in str(pending.value)

        records, _ = run_batches(batch, RecordingVLM(sim, 4), resume=".resume/batch-run")
        assert records == expected
        files = sorted(Path(".resume/batch-run/batch").glob("requests-*.jsonl"))
        asked = sorted(json.dumps(line["body"], sort_keys=True) for f in files for line in request_lines(f))
        assert asked == sent  # every request of the ladder, at the online temperatures

        asked_before = len(server.requests)
        assert run(online, resume=".resume/batch-run") == expected  # batch answers are cached under the online keys
        assert len(server.requests) == asked_before


def test_faults_are_retried_missing_results_named_and_work_kept(workdir):
    make_manifest(workdir, 30)
    params = params_for("", mode="batch", retries=8, simulator={**FAULTY, "http_error_rate": 0.3, "retry_after_s": 0})
    vlm = simulated(params)
    with pytest.raises(BatchPending, match=r"30 request\(s\) wait .*\(0 item\(s\) answered"):
        run(params)
    run_batch(BATCH / "requests-001.jsonl", BATCH / "results-001.jsonl", vlm, missing_rate=0.2, expired_rate=0.2)
    outcomes = Counter(
        json.dumps(r["response"] and r["response"]["status_code"]) for r in read_jsonl(BATCH / "results-001.jsonl")
    )
    assert outcomes["500"] + outcomes["429"] > 0 and outcomes["null"] > 0 and sum(outcomes.values()) < 30

    with pytest.raises(BatchPending) as pending:
        run(params)
    message = str(pending.value)
    assert "requests-002.jsonl -o .resume/caption/batch/results-002.jsonl" in message
    assert "requests-001.jsonl" not in message  # its lost lines are asked again in requests-002
    again = request_lines(BATCH / "requests-002.jsonl")
    lost = {line["custom_id"] for line in request_lines(BATCH / "requests-001.jsonl")} - {
        r["custom_id"] for r in read_jsonl(BATCH / "results-001.jsonl")
    }
    assert lost <= {line["custom_id"] for line in again}
    cached = read_jsonl(f"{RESUME}/cache.jsonl")
    assert cached and all(r["latency_s"] is None for r in cached)  # what is final is kept

    with pytest.raises(BatchPending) as same:  # nothing new: the same files are named, none written
        run(params)
    assert str(same.value) == message and not (BATCH / "requests-003.jsonl").exists()

    records, _ = run_batches(params, vlm, missing_rate=0.2, expired_rate=0.2)
    assert all(r["text"] and r["error"] is None for r in records)
    failed_lines = sum(
        1
        for f in BATCH.glob("results-*.jsonl")
        for r in read_jsonl(f)
        if (r["response"] or {}).get("status_code") != 200
    )
    assert sum(r["retries"] for r in records) == failed_lines > 0  # every 5xx/429/expired result was a transport retry
    assert any(r["attempts"] > 1 for r in records)


def test_request_files_stay_under_the_size_limit(workdir):
    make_manifest(workdir, 9)
    with pytest.raises(BatchPending):
        run(params_for("", mode="batch"), resume=".resume/probe")
    one_request = max(
        len(line) for line in Path(".resume/probe/batch/requests-001.jsonl").read_bytes().splitlines(True)
    )
    limit = 3 * one_request + 10
    with pytest.raises(BatchPending) as pending:
        run(params_for("", mode="batch", batch_max_bytes=limit))
    files = sorted(BATCH.glob("requests-*.jsonl"))
    assert len(files) >= 3 and all(f.stat().st_size <= limit for f in files)
    assert sum(len(request_lines(f)) for f in files) == 9
    assert all(f"-i {f} -o {results_of(f)}" in str(pending.value) for f in files)

    shutil.rmtree(RESUME)
    with pytest.raises(
        BatchFileError, match=r"data/raw/images/p000.png: its request is .* bytes, above caption.batch_max_bytes"
    ):
        run(params_for("", mode="batch", batch_max_bytes=one_request // 2))
    assert not list(BATCH.glob("*requests-*"))  # no partial file


def test_a_file_holds_at_most_the_request_count_limit(tmp_path):
    made = []
    numbers = iter(range(1, 100))
    with RequestFiles(
        lambda: tmp_path / f"r{next(numbers)}.jsonl", 10**9, lambda p, ids: made.append((p.name, ids)), "x", 2
    ) as files:
        for i in range(5):
            files.add(f"id{i}", f'{{"n": {i}}}\n', what=f"item {i}")
    assert made == [("r1.jsonl", ["id0", "id1"]), ("r2.jsonl", ["id2", "id3"]), ("r3.jsonl", ["id4"])]
    assert MAX_REQUESTS_PER_FILE == 50_000  # OpenAI's Batch API limit


def answered_once(params) -> Path:
    """Write the first request file and answer it; returns its results file."""
    with pytest.raises(BatchPending):
        run(params)
    results = BATCH / "results-001.jsonl"
    run_batch(BATCH / "requests-001.jsonl", results, simulated(params))
    return results


@pytest.mark.parametrize(
    "content, expected",
    [
        ("captions", r"captions.jsonl: line 1: neither 'response' nor 'error'"),
        ("requests", r"requests-001.jsonl: line 1: a request, not a result: this is a requests file"),
        ("garbage", r"garbage.jsonl: line 2: not JSON"),
        ("other-prompt", r"other.jsonl: line 1: custom_id '[0-9a-f]{16}.*' is not among the requests of this run"),
        (
            "other-model",
            r"results-001.jsonl: line 3: answered by the model 'another-vlm', but caption.model is 'simulated-vlm'",
        ),
        ("missing", r"caption.batch_results: nowhere.jsonl does not exist"),
    ],
)
def test_bad_results_are_refused_naming_file_line_and_fix(workdir, content, expected):
    make_manifest(workdir, 4)
    params = params_for("", mode="batch", simulator=NO_FAILURES)
    results = answered_once(params)
    listed = {
        "captions": "captions.jsonl",
        "requests": str(BATCH / "requests-001.jsonl"),
        "garbage": "garbage.jsonl",
        "other-prompt": "other.jsonl",
        "other-model": None,
        "missing": "nowhere.jsonl",
    }[content]
    Path("captions.jsonl").write_text(json.dumps({"product_id": "p000", "text": "A bag."}) + "\n")
    Path("garbage.jsonl").write_text(results.read_text().splitlines()[0] + "\n\x1f\x8b not json\n")
    if content == "other-prompt":
        other = params_for("", mode="batch", simulator=NO_FAILURES, prompt="Describe the {brand} product.")
        with pytest.raises(BatchPending):
            run(other, resume=".resume/other")
        run_batch(".resume/other/batch/requests-001.jsonl", "other.jsonl", simulated(other))
    if content == "other-model":
        lines = [json.loads(line) for line in results.read_text().splitlines()]
        lines[2]["response"]["body"]["model"] = "another-vlm"
        results.write_text("".join(json.dumps(line) + "\n" for line in lines))
    bad = params_for("", mode="batch", simulator=NO_FAILURES, batch_results=[listed] if listed else [])
    with pytest.raises(BatchFileError, match=expected) as refused:
        run(bad)
    assert "caption.batch_results" in str(refused.value) or "caption.model" in str(refused.value)
    assert not Path(CAPTIONS).exists()


def openai_result(vllm_line: dict) -> dict:
    """A vLLM result line as OpenAI's Batch API writes it: errors with an error body, not an error field."""
    response = vllm_line["response"]
    if response and response["status_code"] != 200:
        return {**vllm_line, "response": {**response, "body": vllm_line["error"]}, "error": None}
    return vllm_line


def test_openai_output_and_error_files_and_failure_reasons(workdir):
    make_manifest(workdir, 12)
    params = params_for("", mode="batch", retries=8, simulator={**NO_FAILURES, "http_error_rate": 0.3})
    vlm = simulated(params)
    with pytest.raises(BatchPending):
        run(params)
    run_batch(BATCH / "requests-001.jsonl", "raw.jsonl", vlm, expired_rate=0.2)
    lines = [openai_result(r) for r in read_jsonl("raw.jsonl")]
    ok = [r for r in lines if r["response"] and r["response"]["status_code"] == 200]
    # a few answers no caption can come from, each as the online client would have met it
    ok[0]["response"]["body"]["choices"][0]["message"]["content"] = None
    ok[1]["response"]["body"]["choices"][0]["message"]["content"] = "word " * 5000
    ok[2]["response"]["body"] = {"error": {"message": "model overloaded"}}
    Path("downloads").mkdir()
    Path("downloads/output.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ok))
    failed = [r for r in lines if r not in ok]
    assert {r["response"] is None for r in failed} == {True, False}  # expired and HTTP errors
    Path("downloads/errors.jsonl").write_text("".join(json.dumps(r) + "\n" for r in failed))

    listed = params_for(
        "",
        mode="batch",
        retries=8,
        simulator={**NO_FAILURES, "http_error_rate": 0.3},
        batch_results=["downloads/output.jsonl", "downloads/errors.jsonl"],
    )
    with pytest.raises(BatchPending) as pending:
        run(listed)
    assert "requests-001.jsonl" not in str(pending.value)  # every request of it is answered
    records, _ = run_batches(listed, vlm)
    reasons = Counter((r["error"] or "captioned").split(":")[0] for r in records)
    assert reasons == Counter({"captioned": 10, "empty_answer": 1, "oversize": 1})
    by_key = {r["key"]: r for r in records}
    assert by_key[ok[0]["custom_id"]]["error"].startswith("empty_answer: message content is None")
    assert by_key[ok[1]["custom_id"]]["error"].startswith("oversize: ")
    assert by_key[ok[2]["custom_id"]]["error"] is None  # not_a_completion is retried, like online
    assert by_key[ok[2]["custom_id"]]["retries"] >= 1


def test_a_torn_last_line_is_asked_again(workdir):
    make_manifest(workdir, 6)
    params = params_for("", mode="batch", simulator=NO_FAILURES)
    results = answered_once(params)
    text = results.read_text()
    results.write_text(text[: len(text) - 40])  # a run killed while writing its last line
    with pytest.raises(BatchPending) as pending:
        run(params)
    assert "requests-002.jsonl" in str(pending.value) and len(request_lines(BATCH / "requests-002.jsonl")) == 1
    records, _ = run_batches(params, simulated(params))
    assert all(r["text"] for r in records)


def test_the_simulated_run_batch_command(workdir):
    make_manifest(workdir, 5)
    Path("params.yaml").write_text(yaml.safe_dump({"caption": {"mode": "batch"}}))
    params = params_for("", mode="batch")
    with pytest.raises(BatchPending) as pending:
        run(params)
    command = next(line.strip() for line in str(pending.value).splitlines() if "brandcap.sim.run_batch" in line)
    done = subprocess.run([sys.executable, *command.split()[1:]], capture_output=True, text=True, check=True)
    assert "results-001.jsonl: 5 requests" in done.stdout
    assert len(read_jsonl(BATCH / "results-001.jsonl")) == 5


def test_the_stage_script_stops_with_status_5_and_names_its_overlay(workdir):
    """Run as the orchestrators run it, a waiting stage exits 5 with its message and no traceback, and the
    simulated runner's command carries the stage's own overlay (its seed and simulator settings)."""
    make_manifest(workdir, 4)
    Path("params.yaml").write_text(yaml.safe_dump({"seed": 4}))
    Path("batch.yaml").write_text(yaml.safe_dump({"caption": {"mode": "batch"}}))
    script = Path(__file__).resolve().parents[1] / "workflow/scripts/caption.py"
    stage = [sys.executable, str(script), "--params", "params.yaml", "--overlay", "batch.yaml"]
    stage += ["--manifest", MANIFEST, "--captions", CAPTIONS, "--resume", RESUME]
    waits = subprocess.run(stage, capture_output=True, text=True)
    assert waits.returncode == 5, waits.stderr
    assert "Traceback" not in waits.stderr and "request(s) wait for answers" in waits.stderr
    for _ in range(10):  # the simulator's faults are asked again in new request files
        command = next(line.strip() for line in waits.stderr.splitlines() if "brandcap.sim.run_batch" in line)
        assert command.endswith("--params params.yaml --overlay batch.yaml"), command
        subprocess.run([sys.executable, *command.split()[1:]], capture_output=True, text=True, check=True)
        waits = subprocess.run(stage, capture_output=True, text=True)
        if waits.returncode != 5:
            break
    assert waits.returncode == 0, waits.stderr
    assert len(read_jsonl(CAPTIONS)) == 4


def documented_rule() -> str:
    """The caption_batch rule of docs/real-runs.md, as a reader copies it."""
    text = (Path(__file__).resolve().parents[1] / "docs/real-runs.md").read_text()
    section = text[text.index("## Batch captioning") :]
    return re.search(r"```python\n(configfile:.*?)```", section, re.DOTALL)[1]


def test_the_documented_snakemake_rule_answers_the_named_files(workdir):
    """The docs' caption_batch.smk run by Snakemake, with the simulated VLM standing in for `vllm` on PATH."""
    make_manifest(workdir, 6)
    params = params_for("", mode="batch")
    Path("params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    Path("caption_batch.smk").write_text(documented_rule())
    shim = workdir / "bin/vllm"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nshift\nexec {sys.executable} -m brandcap.sim.run_batch "$@"\n')  # drops 'run-batch'
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim.parent}:{os.environ['PATH']}"}
    for _ in range(10):
        try:
            records = run(params)
            break
        except BatchPending as pending:
            targets = [results for _, results in named_runs(str(pending))]
            snakemake = [sys.executable, "-m", "snakemake", "-s", "caption_batch.smk", "--cores", "1", *targets]
            done = subprocess.run(snakemake, env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr[-2000:]
            assert "--tensor-parallel-size 4" in Path("logs/caption_batch/001.log").read_text()
    assert len(records) == 6 and all(r["text"] for r in records)
