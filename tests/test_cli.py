"""The `brandcap` command: `validate` checks every file it is given and names each bad one.

.venv/bin/python -m pytest tests/test_cli.py -q
"""

from __future__ import annotations

from brandcap.cli import main


def test_validate_checks_every_file_and_names_each_bad_one(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("seed: 3\n")
    typo = tmp_path / "typo.yaml"
    typo.write_text("train: {epochz: 3}\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    assert main(["validate", str(typo), str(good), str(broken)]) == 2
    out, err = capsys.readouterr()
    assert f"{good}: ok" in out  # checked, though a bad file came first
    assert str(typo) in err and "epochz" in err
    assert str(broken) in err
    assert main(["validate", str(good)]) == 0


def test_validate_without_a_file_says_what_to_name(capsys):
    assert main(["validate"]) == 2
    assert "name a parameter file" in capsys.readouterr().err
