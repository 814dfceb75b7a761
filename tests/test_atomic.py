"""Atomic writes leave either the old file or the new one, never a partial file."""

import pytest

from brandcap.atomic import atomic_path, read_jsonl, write_jsonl, write_text


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_read_jsonl_ignores_a_torn_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    write_jsonl(path, [{"a": 1}, {"a": 2}])
    with open(path, "a") as f:
        f.write('{"a": 3, "b"')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
