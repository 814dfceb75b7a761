"""One fingerprint for every resumable stage: input contents (not mtimes), params, code."""

from __future__ import annotations

import logging
import os
import sys

from brandcap.files.digests import content_digest
from brandcap.running.resume_state import code_digest, finish_resume_dir, prepare_resume_dir, stage_fingerprint


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
    first = stage_fingerprint("brandcap.files.atomic", {"test": data}, {"eval": {"batch_size": 8}})
    assert prepare_resume_dir(resume, first) is False
    (resume / "test.partial.jsonl").write_text("{}\n")
    assert (
        prepare_resume_dir(
            resume, stage_fingerprint("brandcap.files.atomic", {"test": data}, {"eval": {"batch_size": 8}})
        )
        is True
    )
    assert (resume / "test.partial.jsonl").exists()

    with caplog.at_level(logging.INFO):
        assert (
            prepare_resume_dir(
                resume, stage_fingerprint("brandcap.files.atomic", {"test": data}, {"eval": {"batch_size": 16}})
            )
            is False
        )
    assert not (resume / "test.partial.jsonl").exists()
    assert "params changed" in caplog.text

    (resume / "test.partial.jsonl").write_text("{}\n")
    data.write_text('{"x": 1}\n')
    with caplog.at_level(logging.INFO):
        assert (
            prepare_resume_dir(
                resume, stage_fingerprint("brandcap.files.atomic", {"test": data}, {"eval": {"batch_size": 16}})
            )
            is False
        )
    assert "input test changed" in caplog.text and not (resume / "test.partial.jsonl").exists()


def test_the_code_digest_covers_every_module_the_stage_imports(tmp_path, monkeypatch):
    """A change in a module imported indirectly (stage -> helper -> leaf) changes the digest; the
    digest does not depend on what else the computing process has imported."""
    package = tmp_path / "pkg" / "brandcap"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "stage_x.py").write_text("from brandcap import helper_x\n")
    (package / "helper_x.py").write_text("def f():\n    from brandcap.leaf_x import VALUE\n    return VALUE\n")
    (package / "leaf_x.py").write_text("VALUE = 1\n")
    (package / "unrelated_x.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    for name in [n for n in sys.modules if n == "brandcap" or n.startswith("brandcap.")]:
        monkeypatch.delitem(sys.modules, name)
    before = code_digest("brandcap.stage_x")
    (package / "unrelated_x.py").write_text("X = 2\n")
    assert code_digest("brandcap.stage_x") == before
    (package / "leaf_x.py").write_text("VALUE = 2\n")
    assert code_digest("brandcap.stage_x") != before


def test_real_stages_cover_their_modules():
    assert code_digest("brandcap.stages.evaluate") != code_digest("brandcap.stages.train")
    assert code_digest("brandcap.stages.evaluate") == code_digest("brandcap.stages.evaluate")


def test_a_state_without_fingerprint_is_discarded_and_finish_removes_it(tmp_path):
    resume = tmp_path / "r"
    resume.mkdir()
    (resume / "old.partial.jsonl").write_text("{}\n")
    assert prepare_resume_dir(resume, stage_fingerprint("brandcap.files.atomic", {}, {})) is False
    assert not (resume / "old.partial.jsonl").exists()
    finish_resume_dir(resume)
    assert not resume.exists()
