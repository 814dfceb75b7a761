"""The one reader and appender of append-only JSONL files (resume caches, partial predictions, logs).

.venv/bin/python -m pytest tests/test_append_only.py -q
"""

from __future__ import annotations

import json
import logging

from pydantic import BaseModel, Field

from brandcap.files.append_only import open_append_only, read_append_only


class Step(BaseModel):
    step: int = Field(ge=0)
    loss: float


def line(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def test_a_torn_last_line_is_unfinished_work_not_an_error(tmp_path, caplog):
    path = tmp_path / "log.jsonl"
    torn = line({"step": 3, "note": "café"})[:-4]  # cut inside the two bytes of "é"
    assert torn.endswith(b"\xc3")
    path.write_bytes(line({"step": 1, "loss": 1.0}) + line({"step": 2, "loss": 0.5}) + torn)
    with caplog.at_level(logging.INFO):
        assert read_append_only(path, Step) == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"{path}: line 3 is unfinished" in caplog.text


def test_invalid_lines_are_skipped_counted_and_reported_once(tmp_path, caplog):
    path = tmp_path / "cache.jsonl"
    path.write_bytes(
        line({"step": 1, "loss": 1.0})
        + b"garbage that is not JSON\n"
        + b"\xff\xfe not UTF-8 \x80\n"
        + line([1, 2, 3])  # JSON, but not an object
        + b"\n"  # blank lines are not records and not errors
        + line({"step": 2})  # an object that is not a valid record
        + line({"step": 3, "loss": 0.25})
    )
    with caplog.at_level(logging.INFO):
        assert [r["step"] for r in read_append_only(path, Step)] == [1, 3]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith(f"{path}: skipped 4 invalid line(s) (first: line 2: ")
    # Without a record model, any JSON object is a record.
    assert [r["step"] for r in read_append_only(path)] == [1, 2, 3]


def test_appending_after_a_torn_line_never_merges_records(tmp_path):
    path = tmp_path / "resume" / "cache.jsonl"
    with open_append_only(path) as sink:  # creates the folder and the file
        sink.write(json.dumps({"step": 1, "loss": 1.0}) + "\n")
    path.write_bytes(path.read_bytes() + b'{"step": 2, "lo')
    with open_append_only(path) as sink:
        sink.write(json.dumps({"step": 2, "loss": 0.5}) + "\n")
    assert read_append_only(path, Step) == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]
    assert path.read_bytes().count(b"\n") == 2


def test_evaluate_partials_and_the_train_log_use_this_reader(tmp_path):
    from types import SimpleNamespace

    from brandcap.stages.evaluate import _resumed_records
    from brandcap.stages.train import JsonlLogCallback

    partial = tmp_path / "test.partial.jsonl"
    done = {"key": "p1", "image": "a.png", "reference": "ref", "prediction": "pred"}
    partial.write_bytes(line(done) + b"\xff garbage\n" + line(["p2"]) + b'{"key": "p3", "ima')
    assert _resumed_records(partial, [{"product_id": "p1", "image": "a.png", "caption": "ref"}], "product_id") == {
        "p1": done
    }

    resume_log = tmp_path / "resume" / "log.jsonl"
    resume_log.parent.mkdir()
    resume_log.write_bytes(
        line({"step": 1, "loss": 1.0}) + b"not json\n" + line({"step": 2, "loss": 0.5}) + b'{"step": 3'
    )
    callback = JsonlLogCallback(resume_log, n_samples=10)
    callback.on_train_begin(None, SimpleNamespace(is_world_process_zero=True, global_step=2, epoch=1.0), None)
    assert [r["step"] for r in callback.records] == [1, 2]
