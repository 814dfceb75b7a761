"""One fingerprint for every resumable stage: input contents (not mtimes), params, code."""

from __future__ import annotations

import logging
import os
import sys
import types

from brandcap.resume_state import content_digest, finish_resume_dir, prepare_resume_dir, stage_fingerprint


def test_content_digest_ignores_mtimes_and_snakemake_stamps(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"a")
    before = content_digest(folder)
    os.utime(folder / "a.png", (1, 1))  # dvc checkout gives fresh, arbitrary times
    (folder / ".snakemake_timestamp").write_text("")
    assert content_digest(folder) == before
    (folder / "a.png").write_bytes(b"b")
    assert content_digest(folder) != before
    assert content_digest(tmp_path / "absent") == ""


def test_state_is_kept_only_under_the_same_fingerprint(tmp_path, caplog):
    data = tmp_path / "test.jsonl"
    data.write_text("{}\n")
    resume = tmp_path / ".resume/eval"
    first = stage_fingerprint({"test": data}, {"eval": {"batch_size": 8}})
    assert prepare_resume_dir(resume, first) is False
    (resume / "test.partial.jsonl").write_text("{}\n")
    assert prepare_resume_dir(resume, stage_fingerprint({"test": data}, {"eval": {"batch_size": 8}})) is True
    assert (resume / "test.partial.jsonl").exists()

    with caplog.at_level(logging.INFO):
        assert prepare_resume_dir(resume, stage_fingerprint({"test": data}, {"eval": {"batch_size": 16}})) is False
    assert not (resume / "test.partial.jsonl").exists()
    assert "params changed" in caplog.text

    (resume / "test.partial.jsonl").write_text("{}\n")
    data.write_text('{"x": 1}\n')
    with caplog.at_level(logging.INFO):
        assert prepare_resume_dir(resume, stage_fingerprint({"test": data}, {"eval": {"batch_size": 16}})) is False
    assert "input test changed" in caplog.text and not (resume / "test.partial.jsonl").exists()


def test_a_change_in_the_code_the_stage_runs_changes_the_fingerprint(tmp_path):
    before = stage_fingerprint({}, {})
    module = tmp_path / "brandcap_fake_stage.py"
    module.write_text("X = 1\n")
    fake = types.ModuleType("brandcap.fake_stage")
    fake.__file__ = str(module)
    sys.modules["brandcap.fake_stage"] = fake
    try:
        loaded = stage_fingerprint({}, {})
        module.write_text("X = 2\n")
        edited = stage_fingerprint({}, {})
    finally:
        del sys.modules["brandcap.fake_stage"]
    assert before["code"] != loaded["code"] != edited["code"]


def test_a_state_without_fingerprint_is_discarded_and_finish_removes_it(tmp_path):
    resume = tmp_path / "r"
    resume.mkdir()
    (resume / "old.partial.jsonl").write_text("{}\n")
    assert prepare_resume_dir(resume, stage_fingerprint({}, {})) is False
    assert not (resume / "old.partial.jsonl").exists()
    finish_resume_dir(resume)
    assert not resume.exists()
