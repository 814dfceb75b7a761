"""Atomic writes leave either the old file or the new one, never a partial file."""

import errno
import os
import stat
from pathlib import Path

import pytest

from brandcap.files.atomic import (
    atomic_path,
    clear_owned_folder_of_temporaries,
    mirror_directory,
    place_link_or_copy,
    read_jsonl,
    staged_directory,
    write_bytes,
    write_jsonl,
    write_text,
)


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_read_jsonl_reads_a_last_line_without_newline_and_names_a_bad_line(tmp_path):
    path = tmp_path / "r.jsonl"
    write_jsonl(path, [{"a": 1}, {"a": 2}])
    with open(path, "a") as f:
        f.write('{"a": 3}')  # a user's file may end without a newline: its last record counts
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}, {"a": 3}]
    path.write_text('{"a": 1}\n\n{"a": 2, "b"\n{"a": 4}\n')
    with pytest.raises(ValueError, match=r"r.jsonl: line 3 is not a JSON record .*fix the line or rerun"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"r.jsonl: line 2 is not a JSON object"):
        read_jsonl(path)


def test_disk_full_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "data" / "images" / "p1.png"
    write_bytes(target, b"old")

    def disk_full(self, data):  # what a full file system does to the writer
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OSError) as err:
        write_bytes(target, b"new")
    assert err.value.errno == errno.ENOSPC
    assert f"{target}: cannot write it, the disk is full" in str(err.value)
    assert "df -h" in str(err.value)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["p1.png"]


def test_other_os_errors_pass_unchanged(tmp_path):
    with pytest.raises(PermissionError):
        with atomic_path(tmp_path / "out.txt"):
            raise PermissionError(errno.EACCES, "denied")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_are_readable_as_the_umask_allows(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        for name, write in [
            ("a.txt", lambda p: write_text(p, "x")),
            ("b.jsonl", lambda p: write_jsonl(p, [{"a": 1}])),
            ("c.png", lambda p: write_bytes(p, b"x")),
        ]:
            write(tmp_path / name)
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    finally:
        os.umask(old)


def test_staged_directory_swaps_in_whole_or_not_at_all(tmp_path):
    out = tmp_path / "models" / "base"
    (tmp_path / "models" / ".base.dead0000.tmp").mkdir(parents=True)  # left by a killed writer
    with staged_directory(out) as stage:
        (stage / "a.txt").write_text("one")
    assert (out / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError), staged_directory(out) as stage:
        (stage / "a.txt").write_text("half")
        raise RuntimeError("killed")
    assert (out / "a.txt").read_text() == "one"  # the failed write left the old directory
    with staged_directory(out) as stage:
        (stage / "b.txt").write_text("two")
    assert [p.name for p in out.iterdir()] == ["b.txt"]  # replaced, not merged
    assert sorted(p.name for p in out.parent.iterdir()) == ["base"]  # no temporaries left
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~_umask()


def test_an_owned_folder_loses_its_temporaries_files_and_folders_alike_and_nothing_else(tmp_path):
    images = tmp_path / "images"
    (images / ".p1.png.dead0000.tmp").mkdir(parents=True)  # a killed writer's folder
    (images / ".p1.png.dead0000.tmp" / "half").write_bytes(b"x")
    (images / ".p2.png.beef0000.tmp").write_bytes(b"half")  # and file
    (images / "p3.png").write_bytes(b"kept")
    (images / ".hidden").write_bytes(b"kept")
    clear_owned_folder_of_temporaries(images)
    assert sorted(p.name for p in images.iterdir()) == [".hidden", "p3.png"]
    clear_owned_folder_of_temporaries(tmp_path / "absent")  # a folder not made yet is nothing to clear


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_mirror_and_place_link_the_bytes(tmp_path):
    source = tmp_path / "store" / "epoch-1"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "w.bin").write_bytes(b"weights")
    mirror_directory(source, tmp_path / "out" / "epoch-1")
    copied = tmp_path / "out" / "epoch-1" / "sub" / "w.bin"
    assert copied.read_bytes() == b"weights" and copied.stat().st_ino == (source / "sub" / "w.bin").stat().st_ino
    target = tmp_path / "images" / "p.png"
    target.parent.mkdir()
    target.write_bytes(b"old")
    place_link_or_copy(source / "sub" / "w.bin", target)
    assert target.read_bytes() == b"weights" and sorted(p.name for p in target.parent.iterdir()) == ["p.png"]
