"""Imports run one way. The core's floors, lowest first: files/ (on disk), config/ (parameters), then text/
(brand names), running/ (running a stage) and endpoint/ (the chat endpoint's client), each using only the
floors below it; the rest of the core (top-level modules: the command line, the general sets) uses any floor.
Above the core: model/ uses the core, evaluation/ the core and model/ (the chat template it asks with), sim/
(the simulated world) only the core, and stages use everything; no module imports a stage; nothing outside
sim/ imports sim/ except where the default profile selects it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "brandcap"

# part -> the parts it may import (the core is its floors and the top-level modules of brandcap)
FLOORS = {
    "files": {"files"},
    "config": {"files", "config"},
    "text": {"files", "config", "text"},
    "running": {"files", "config", "running"},
    "endpoint": {"files", "config", "endpoint"},
}
CORE = set(FLOORS) | {"core"}
MAY_IMPORT = {
    **FLOORS,
    "core": CORE,
    "model": CORE | {"model"},
    "evaluation": CORE | {"model", "evaluation"},
    "sim": CORE | {"sim"},
    "stages": CORE | {"model", "evaluation", "stages"},
}

# (importer, imported): why this one crossing is allowed
ALLOWED = {
    ("brandcap.stages.catalog", "brandcap.sim.shop"): "data.source synthetic: the default profile's product table",
    (
        "brandcap.stages.catalog",
        "brandcap.sim.realshape",
    ): "data.source realshape: the synthetic shop dressed in real shapes",
    (
        "brandcap.stages.general_set",
        "brandcap.sim.shop",
    ): "data.source synthetic: the general set's brand-free shop images",
    (
        "brandcap.stages.general_train_set",
        "brandcap.sim.shop",
    ): "data.source synthetic: the generic training set's own seed stream of brand-free shop images",
    (
        "brandcap.general_sets",
        "brandcap.sim.shop",
    ): "data.source synthetic: brand-free shop images for the general sets",
    (
        "brandcap.stages.base_model",
        "brandcap.sim.standin",
    ): "model.base is the shipped stand-in: its recipe's drawing-code hash is checked",
    (
        "brandcap.stages.caption",
        "brandcap.sim.simulated_vlm",
    ): "caption.base_url empty: the built-in simulated VLM endpoint",
    ("brandcap.stages.base_model", "brandcap.sim.tiny_model"): "model.source tiny: the tiny InternVL built locally",
    ("brandcap.stages.base_model", "brandcap.sim.pretrain"): "model.source tiny: its brief pretraining",
    ("brandcap.cli", "brandcap.sim.simulated_vlm"): "`brandcap serve-vlm` serves the simulated VLM by hand",
    (
        "brandcap.sim.tiny_model",
        "brandcap.model.chat",
    ): "the tiny model's processor gets the image tiling every model gets",
    (
        "brandcap.sim.pretrain",
        "brandcap.model.chat",
    ): "pretraining renders prompts through the chat template training and evaluation use",
    (
        "brandcap.sim.pretrain",
        "brandcap.model.training_data",
    ): "pretraining lays out prompt and answer (labels) as fine-tuning does",
    (
        "brandcap.sim.pretrain",
        "brandcap.model.step_progress",
    ): "pretraining runs on the Trainer, showing its steps as fine-tuning does",
}


def module_name(path: Path, src: Path) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in MAY_IMPORT.keys() - {"core"} else "core"


def _is_module(name: str, src: Path) -> bool:
    path = src.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def brandcap_imports(path: Path, src: Path) -> set[str]:
    """The brandcap modules a source file imports, lazy imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("brandcap.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "brandcap":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"  # `from brandcap.sim import shop`
                found.add(submodule if _is_module(submodule, src) else node.module)
    return found - {"brandcap"}


def all_imports(src: Path = SRC) -> set[tuple[str, str]]:
    """(importer, imported) for every brandcap import under src/brandcap."""
    return {
        (module_name(path, src), imported)
        for path in sorted((src / "brandcap").rglob("*.py"))
        for imported in brandcap_imports(path, src)
    }


def forbidden(edges: set[tuple[str, str]]) -> list[str]:
    return sorted(
        f"{a} imports {b} ({part_of(a)} may import {sorted(MAY_IMPORT[part_of(a)])} only; "
        f"a place where the default profile selects the simulated world goes in ALLOWED, with its reason)"
        for a, b in edges
        if part_of(b) not in MAY_IMPORT[part_of(a)] and (a, b) not in ALLOWED
    )


def test_imports_run_one_way():
    wrong = forbidden(all_imports())
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_a_stage_module():
    """A stage module is a leaf: what two stages share lives in a module named for what it is, so a stage's
    recorded code dependencies (dvc.yaml) are exactly the code that shapes its output."""
    wrong = sorted(
        f"{a} imports {b}"
        for a, b in all_imports()
        if b.startswith("brandcap.stages.") and b != "brandcap.stages" and a != b
    )
    assert not wrong, "move what they share out of the stage module: " + "; ".join(wrong)


def test_allow_list_names_real_imports():
    stale = set(ALLOWED) - all_imports()
    assert not stale, f"allowed imports that no longer happen (remove them from ALLOWED): {sorted(stale)}"


def test_check_reports_a_forbidden_import(tmp_path):
    """The check itself: a sim module importing a stage (lazily, in a function) is reported, and so is a floor
    importing a floor above it."""
    for name, text in {
        "files/atomic.py": "from brandcap.config.params import Params\n",
        "config/params.py": "from brandcap.files import atomic\n",
        "stages/__init__.py": "",
        "stages/clean.py": "",
        "sim/__init__.py": "",
        "sim/shop.py": "def f():\n    from brandcap.stages.clean import run_clean\n",
        "model/chat.py": "from brandcap import sim\nfrom brandcap.sim import shop\n",
    }.items():
        (tmp_path / "brandcap" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "brandcap" / name).write_text(text)
    wrong = forbidden(all_imports(tmp_path))
    assert [w.split(" (")[0] for w in wrong] == [
        "brandcap.files.atomic imports brandcap.config.params",
        "brandcap.model.chat imports brandcap.sim",
        "brandcap.model.chat imports brandcap.sim.shop",
        "brandcap.sim.shop imports brandcap.stages.clean",
    ]
