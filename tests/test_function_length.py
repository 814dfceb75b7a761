"""No function in src/ runs over MAX_LINES lines of statements: long ones are split by what they do, so each reads
top to bottom. A function's length is the number of lines on which one of its statements starts, so the count does
not change when `ruff format` wraps a long call over several lines (at the old 200 columns the longest function
had 57 lines, 48 of them starting a statement)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 50

# "path:function": why it is still long (each entry is a debt; remove it when the function is split)
ALLOWED: dict[str, str] = {}


def function_lengths(src: Path = SRC) -> dict[str, int]:
    """'path:name' -> lines that start a statement (the signature and decorators excluded) of every function and
    method under src."""
    lengths = {}
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                starts = {n.lineno for n in ast.walk(node) if isinstance(n, ast.stmt)} - {node.lineno}
                lengths[f"{path.relative_to(src).as_posix()}:{node.name}"] = len(starts)
    return lengths


def test_no_function_runs_over_the_limit():
    long = {name: n for name, n in function_lengths().items() if n > MAX_LINES and name not in ALLOWED}
    assert not long, (
        f"functions over {MAX_LINES} lines: {long}; split them by what they do "
        "(or, as a last resort, add them to ALLOWED with a reason)"
    )


def test_allow_list_names_only_long_functions():
    lengths = function_lengths()
    stale = [name for name in ALLOWED if lengths.get(name, 0) <= MAX_LINES]
    assert not stale, f"{stale} are no longer over {MAX_LINES} lines (or gone); remove them from ALLOWED"


def test_a_long_function_is_found(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES + 1))
    wrapped = "    y = max(\n        1,\n        2,\n    )\n"  # one statement over four lines
    (tmp_path / "m.py").write_text(f"def long():\n{body}\n{wrapped}")
    assert function_lengths(tmp_path) == {"m.py:long": MAX_LINES + 2}
