"""No test module imports another: what several share lives in tests/conftest.py, its one home.

.venv/bin/python -m pytest tests/test_test_layout.py -q
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_names(tree: ast.AST) -> set[str]:
    """Every module an AST imports, lazy imports included, with `from X import Y` also giving X.Y (Y may be a module)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""  # `from . import test_x` has none
            names.add(module)
            names |= {f"{module}.{alias.name}".lstrip(".") for alias in node.names}
    return names


def other_test_modules_imported(tests: Path = TESTS) -> dict[str, set[str]]:
    """test module -> the other test_* modules it imports (as `tests.test_x`, `test_x`, or relatively)."""
    found = {}
    for path in sorted(tests.glob("test_*.py")):
        leaves = {name.rsplit(".", 1)[-1] for name in imported_names(ast.parse(path.read_text(encoding="utf-8")))}
        others = {leaf for leaf in leaves if leaf.startswith("test_") and (tests / f"{leaf}.py").is_file()} - {
            path.stem
        }
        if others:
            found[path.stem] = others
    return found


def test_no_test_module_imports_another():
    found = other_test_modules_imported()
    assert not found, (
        f"test modules importing other test modules: {found}; move what they share into "
        "tests/conftest.py (a constant, helper or fixture) and import it from tests.conftest"
    )


def test_an_import_of_another_test_module_is_found(tmp_path):
    (tmp_path / "test_a.py").write_text("X = 1\n")
    (tmp_path / "test_b.py").write_text("from tests.test_a import X\n")
    (tmp_path / "test_c.py").write_text("def f():\n    from . import test_a\n")
    (tmp_path / "test_d.py").write_text(
        "import test_b\nfrom tests.conftest import ROOT\nimport test_helpers_elsewhere\n"
    )
    assert other_test_modules_imported(tmp_path) == {"test_b": {"test_a"}, "test_c": {"test_a"}, "test_d": {"test_b"}}
