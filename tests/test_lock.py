"""requirements.lock (what `make install` installs) agrees with pyproject.toml: every dependency, of the
project and of each extra, is locked at a release its requirement admits, with hashes (read offline: CI
fails when pyproject.toml changed and `make lock` was not run)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)(?P<marker>\s*;[^\\]*)?\s*\\$")


def locked(lock_text: str) -> dict[str, dict]:
    """name -> {versions, hashes} for each entry of a `uv pip compile --generate-hashes` file."""
    entries: dict[str, dict] = {}
    current = None
    for line in lock_text.splitlines():
        if match := ENTRY.match(line):
            current = entries.setdefault(canonicalize_name(match["name"]), {"versions": set(), "hashes": 0})
            current["versions"].add(match["version"])
        elif current is not None and line.strip().startswith("--hash=sha256:"):
            current["hashes"] += 1
    return entries


def requirements_of(pyproject: dict) -> list[Requirement]:
    project = pyproject["project"]
    extras = project.get("optional-dependencies", {})
    return [Requirement(r) for r in project["dependencies"] + [r for group in extras.values() for r in group]]


def disagreements(pyproject: dict, lock_text: str) -> list[str]:
    entries = locked(lock_text)
    problems = []
    for requirement in requirements_of(pyproject):
        entry = entries.get(canonicalize_name(requirement.name))
        if entry is None:
            problems.append(f"{requirement} is not in requirements.lock")
        elif not all(requirement.specifier.contains(v, prereleases=True) for v in entry["versions"]):
            problems.append(
                f"{requirement} but requirements.lock has {requirement.name}=={','.join(sorted(entry['versions']))}"
            )
    problems += [f"{name} is locked without a hash" for name, entry in entries.items() if entry["hashes"] == 0]
    return problems


def test_the_lock_agrees_with_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    problems = disagreements(pyproject, (ROOT / "requirements.lock").read_text())
    assert not problems, "requirements.lock is out of date, run `make lock`:\n" + "\n".join(problems)


def test_a_changed_pin_or_a_new_dependency_is_caught():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lock_text = (ROOT / "requirements.lock").read_text()
    pyproject["project"]["dependencies"] = [
        d.replace("torch==2.14.1", "torch==2.15.0") for d in pyproject["project"]["dependencies"]
    ]
    pyproject["project"]["optional-dependencies"]["test"].append("pytest-randomly==3.16.0")
    problems = disagreements(pyproject, lock_text)
    assert any(p.startswith("torch==2.15.0 but requirements.lock has torch==2.14.1") for p in problems), problems
    assert "pytest-randomly==3.16.0 is not in requirements.lock" in problems


def test_the_install_uses_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(VENV\)/\.installed: requirements\.lock", makefile, re.M)
    assert re.search(r"pip sync .*requirements\.lock$", makefile, re.M)
    assert "--no-deps -e ." in makefile  # the project itself, and nothing the lock does not pin
