"""The one hashing module: each digest is the encoding its callers depend on, written out here by hand, so a
change that would silently rename every cache entry, fingerprint or provenance hash fails a test first."""

from __future__ import annotations

import hashlib

from brandcap.files.digests import (
    bytes_sha256,
    canonical_json_sha256,
    content_digest,
    file_sha256,
    named_files_sha256,
    named_texts_sha256,
    sorted_json_sha256,
    text_sha256,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


OBJ = {"prompt": "Décris ce sac", "b": [1, 2], "a": None}


def test_the_two_json_encodings():
    """Canonical (params, fingerprints): no spaces. The caption cache's keys: json.dumps' default separators."""
    assert canonical_json_sha256(OBJ) == sha('{"a":null,"b":[1,2],"prompt":"Décris ce sac"}'.encode())
    assert sorted_json_sha256(OBJ) == sha('{"a": null, "b": [1, 2], "prompt": "Décris ce sac"}'.encode())


def test_bytes_text_and_file(tmp_path):
    (tmp_path / "p.png").write_bytes(b"\x89PNG" * 300_000)  # over one read chunk
    assert file_sha256(tmp_path / "p.png") == sha(b"\x89PNG" * 300_000) == bytes_sha256(b"\x89PNG" * 300_000)
    assert text_sha256("A.P.C.") == sha(b"A.P.C.")
    # product codes read from real tables can hold a lone surrogate; their file stems still get a digest
    assert text_sha256("P\udc80") == sha("P\udc80".encode("utf-8", "surrogatepass"))


def test_named_files_and_texts(tmp_path):
    (tmp_path / "train.jsonl").write_bytes(b"{}\n")
    (tmp_path / "test.jsonl").write_bytes(b"")
    assert named_files_sha256([tmp_path / "train.jsonl", tmp_path / "test.jsonl"]) == sha(
        b"train.jsonl\x003\x00{}\ntest.jsonl\x000\x00"
    )
    assert named_texts_sha256([("brandcap.a", b"x = 1\n"), ("brandcap.b", b"")]) == sha(
        b"brandcap.a\x00x = 1\nbrandcap.b\x00"
    )


def test_a_folder_digest_is_its_names_and_bytes_not_snakemakes_stamp(tmp_path):
    folder = tmp_path / "run"
    (folder / "epoch-1").mkdir(parents=True)
    (folder / "epoch-1" / "w.bin").write_bytes(b"w")
    (folder / "a.json").write_bytes(b"{}")
    expected = sha(b"a.json\x00{}epoch-1/w.bin\x00w")
    assert content_digest(folder) == expected
    (folder / ".snakemake_timestamp").write_bytes(b"")
    assert content_digest(folder) == expected
    (folder / "a.json").write_bytes(b"{ }")
    assert content_digest(folder) != expected
    assert content_digest(tmp_path / "absent") == ""
    assert content_digest(folder / "a.json") == sha(b"a.json\x00{ }")
    assert content_digest([folder / "a.json", tmp_path / "absent"]) == sha(
        f"{folder / 'a.json'}\x00{sha(b'a.json' + bytes(1) + b'{ }')}\n{tmp_path / 'absent'}\x00".encode()
    )
