"""The simulated VLM playing `vllm run-batch`: it answers a batch requests file into a results file.

    python -m brandcap.sim.run_batch -i requests.jsonl -o results.jsonl --model simulated-vlm --params params.yaml

or from Python: `run_batch(requests_path, results_path, SimulatedVLM(sim, seed, prompt, model))`.

Every request is answered by `SimulatedVLM.respond`, the answer logic the simulated HTTP endpoint uses, so
the same request gets the same caption either way (loops, garbling, cut-offs, a missing brand at the
rates of `caption.simulator`). Its transport faults are drawn per request (by custom_id), so a retry in a
later file can succeed: HTTP 429/500 at `http_error_rate`, written as vLLM writes an error (the status, the
error, no body). Two faults of a batch run are added here: `missing_rate` leaves a request's line out (a
run cut short; drawn per file too, so the request asked again in another file can come back),
`expired_rate` answers it as OpenAI does a request its batch never ran (`response: null`, `error:
{"code": "batch_expired"}`). A request for another model than `--model` gets HTTP 404,
as vLLM answers it. Lines are written in the order of the requests, as `vllm run-batch` writes them.
The command takes the options of `vllm run-batch` (-i, -o, --model) and ignores vLLM's engine options
(--tensor-parallel-size, ...), so it can stand in for `vllm` in a command line written for a GPU node.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from brandcap.config.profiles import resolve_params
from brandcap.endpoint.batch_files import BATCH_URL
from brandcap.files.atomic import atomic_path
from brandcap.sim.simulated_vlm import SimReply, SimulatedVLM, error_body


def _draw(seed: int, custom_id: str) -> float:
    digest = hashlib.sha256(json.dumps([seed, "batch", custom_id]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big")).random()


def answer_line(request: dict[str, Any], vlm: SimulatedVLM, expired_rate: float = 0.0) -> dict[str, Any]:
    """The result line for one request line."""
    custom_id = request.get("custom_id")
    body = request.get("body")
    result: dict[str, Any] = {"id": f"vllm-{uuid.uuid4().hex}", "custom_id": custom_id, "response": None, "error": None}
    if _draw(vlm.seed, f"expired:{custom_id}") < expired_rate:
        result["error"] = {
            "code": "batch_expired",
            "message": "This request could not be executed before the completion window expired.",
        }
        return result
    if request.get("url") != BATCH_URL:
        reply = SimReply(400, error_body(400, f"URL {request.get('url')} is not supported", "invalid_request_error"))
    elif not isinstance(body, dict) or body.get("model") != vlm.model_name:
        asked = body.get("model") if isinstance(body, dict) else None
        reply = SimReply(404, error_body(404, f"The model `{asked}` does not exist.", "NotFoundError"))
    else:
        reply = vlm.respond(body, {}, transport_key=str(custom_id))
    response = {"status_code": reply.status, "request_id": f"vllm-batch-{uuid.uuid4().hex}", "body": None}
    if reply.status == 200:
        response["body"] = reply.body
    else:
        result["error"] = reply.body
    result["response"] = response
    return result


def run_batch(
    requests_path: str | Path,
    results_path: str | Path,
    vlm: SimulatedVLM,
    missing_rate: float = 0.0,
    expired_rate: float = 0.0,
) -> Counter:
    """Answer every line of `requests_path` into `results_path`; returns the count of each outcome
    (the status code, 'missing' or 'expired')."""
    counts: Counter = Counter()
    with atomic_path(results_path) as tmp, open(requests_path, encoding="utf-8") as requests, open(tmp, "w") as out:
        for line in requests:
            if not line.strip():
                continue
            request = json.loads(line)
            if _draw(vlm.seed, f"missing:{Path(requests_path).name}:{request.get('custom_id')}") < missing_rate:
                counts["missing"] += 1
                continue
            result = answer_line(request, vlm, expired_rate)
            counts["expired" if result["response"] is None else result["response"]["status_code"]] += 1
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m brandcap.sim.run_batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("-i", "--input-file", required=True, type=Path, help="the requests file")
    parser.add_argument("-o", "--output-file", required=True, type=Path, help="the results file to write")
    parser.add_argument("--model", required=True, help="the model served (caption.model)")
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="parameter file (caption.simulator, prompt, seed)"
    )
    parser.add_argument("--overlay", type=Path, action="append", default=[], help="a profile laid over --params")
    parser.add_argument("--missing-rate", type=float, default=0.0, help="fraction of lines left out")
    parser.add_argument("--expired-rate", type=float, default=0.0, help="fraction answered as expired")
    args, engine_options = parser.parse_known_args(argv)  # vLLM's engine options mean nothing here
    if engine_options:
        print(f"ignoring vLLM engine options: {' '.join(engine_options)}", flush=True)
    params = resolve_params(args.params, args.overlay)
    vlm = SimulatedVLM(params.caption.simulator, params.seed, params.caption.prompt, args.model)
    counts = run_batch(args.input_file, args.output_file, vlm, args.missing_rate, args.expired_rate)
    print(f"{args.output_file}: {sum(counts.values())} requests: {dict(counts)}", flush=True)


if __name__ == "__main__":
    main()
