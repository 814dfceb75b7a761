"""Provenance of the tables: the params hash, the data hash and the commit with its dirty mark."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from brandcap.config.params import validate_params
from brandcap.files.atomic import write_json, write_jsonl
from brandcap.running.provenance import data_files, data_sha256, params_sha256, source_commit


def test_params_hash_follows_every_resolved_value_and_ignores_key_order():
    one = validate_params({"seed": 3, "clean": {"min_brand_samples": 5, "test_fraction": 0.2}})
    same = validate_params({"clean": {"test_fraction": 0.2, "min_brand_samples": 5}, "seed": 3})
    assert params_sha256(one) == params_sha256(same)
    assert len(params_sha256(one)) == 64
    assert params_sha256(one) != params_sha256(
        validate_params({"seed": 3, "clean": {"min_brand_samples": 5, "test_fraction": 0.25}})
    )
    # a default spelled out is the same resolved parameter set
    assert params_sha256(validate_params({})) == params_sha256(validate_params({"seed": validate_params({}).seed}))


@pytest.fixture
def processed(tmp_path):
    folder = tmp_path / "processed"
    records = [
        {
            "product_id": f"p{i}",
            "image": f"images/p{i}.png",
            "sha256": f"{i:064x}",
            "brand": "Gucci",
            "caption": "A bag.",
        }
        for i in range(4)
    ]
    write_jsonl(folder / "train.jsonl", records[:3])
    write_jsonl(folder / "test.jsonl", records[3:])
    write_json(folder / "clean_report.json", {"train": 3, "test": 1})
    (folder / "clean_examples.md").write_text("# examples\n")
    return folder, records


def test_data_hash_covers_the_split_and_the_report_only(processed):
    folder, records = processed
    before = data_sha256(folder)
    assert [p.name for p in data_files(folder)] == ["train.jsonl", "test.jsonl", "clean_report.json"]
    (folder / "clean_examples.md").write_text("# other examples\n")  # a human's page, not data
    assert data_sha256(folder) == before
    # the same records split differently
    write_jsonl(folder / "train.jsonl", records[:2])
    write_jsonl(folder / "test.jsonl", records[2:])
    moved = data_sha256(folder)
    assert moved != before
    write_json(folder / "clean_report.json", {"train": 2, "test": 2})
    assert data_sha256(folder) != moved
    reported = data_sha256(folder)
    write_jsonl(folder / "val.jsonl", records[:1])
    assert data_sha256(folder) != reported and [p.name for p in data_files(folder)][1] == "val.jsonl"


def test_data_hash_without_a_split_names_the_stage(processed):
    folder, _ = processed
    (folder / "test.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"test.jsonl: not found; run the clean stage first"):
        data_sha256(folder)


def git(repo, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True, capture_output=True
    )


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / "results").mkdir(parents=True)
    for name in ("params.yaml", "dvc.lock", "results/metrics.json", "results/tables.md"):
        (root / name).write_text("v1\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()
    return root, head


def test_commit_is_head_and_dirty_only_for_edited_sources(repo):
    root, head = repo
    written = ["results/metrics.json", "results/tables.md", "results/plots"]
    assert source_commit(root, written) == head
    (root / "untracked.txt").write_text("new\n")  # not tracked: not part of the commit either way
    assert source_commit(root, written) == head
    # what the pipeline itself rewrites: dvc.lock (staged, as DVC's autostage does) and this stage's outputs
    (root / "dvc.lock").write_text("v2\n")
    git(root, "add", "dvc.lock")
    (root / "results/metrics.json").write_text("v2\n")
    assert source_commit(root, written) == head
    (root / "params.yaml").write_text("v2\n")
    assert source_commit(root, written) == head + "+dirty"
    git(root, "add", "params.yaml")  # staged but not committed
    assert source_commit(root, written) == head + "+dirty"


def test_commit_is_unknown_outside_git_never_an_error(tmp_path, monkeypatch):
    assert source_commit(tmp_path) == "unknown"  # pytest's tmp folders are outside any repository
    git(tmp_path, "init", "-q")
    assert source_commit(tmp_path) == "unknown"  # a repository without a commit
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    assert shutil.which("git") is None
    assert source_commit(tmp_path) == "unknown"
