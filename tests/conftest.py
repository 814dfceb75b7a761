"""Fixtures shared by the test modules: the README's profile commands and throwaway project copies."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_in(repo: Path, command: str | list[str], check: bool = True) -> subprocess.CompletedProcess:
    """Run a command (a shell line as the README writes it, or an argv) with the venv's tools first on PATH."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", HF_HUB_OFFLINE="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    if (Path(repo) / "src/brandcap").is_dir():  # the copy's own package, not the editable install's
        env["PYTHONPATH"] = os.pathsep.join([str(Path(repo) / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    run = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, shell=isinstance(command, str))
    if check and run.returncode:
        shown = command if isinstance(command, str) else " ".join(map(str, command))
        raise AssertionError(f"{shown} failed ({run.returncode}):\n{run.stdout[-4000:]}\n{run.stderr[-6000:]}")
    return run


def copy_project(target: Path) -> Path:
    """A git repository holding the working tree's tracked and untracked-but-not-ignored files."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    for name in files:
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    run_in(target, ["git", "init", "-q"])
    run_in(target, ["git", "add", "-A"])
    run_in(target, ["git", "commit", "-qm", "copy"])
    return target


def readme_profile_commands() -> dict[str, dict[str, str]]:
    """The README's profile table: profile file -> {"snakemake": command, "dvc": command}."""
    text = (ROOT / "README.md").read_text()
    table = text.split("<!-- profiles -->")[1]
    rows = {}
    for line in table.splitlines():
        cells = re.findall(r"`([^`]+)`", line)
        if line.startswith("|") and len(cells) >= 3 and cells[-2].startswith("snakemake"):
            rows[cells[0]] = {"snakemake": cells[-2], "dvc": cells[-1]}
    return rows


@pytest.fixture(scope="session")
def profile_commands() -> dict[str, dict[str, str]]:
    return readme_profile_commands()


@pytest.fixture(scope="session")
def run():
    return run_in


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("brandcap"))


# ----------------------------------------------------------------------------- tiny training runs
# Shared by test_train.py and test_train_distributed.py (torch and transformers load lazily).
TINY_TRAIN_BRANDS = {"Gucci": (200, 30, 30), "Prada": (30, 200, 30), "Celine": (30, 30, 200), "Loewe": (200, 200, 30)}
TINY_TRAIN_SAMPLES = 8  # batch 4 -> 2 optimizer steps per epoch


def train_params(**train):
    """Params for the tiny training runs: 2 epochs of 2 optimizer steps, every strategy an experiment."""
    from brandcap.params import validate_params

    settings = {
        "epochs": 2,
        "save_epochs": [1, 2],
        "batch_size": 4,
        "per_device_batch_size": 2,
        "learning_rate": 5e-3,
        "warmup_ratio": 0.0,
        "logging_steps": 1,
        "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "experiments": {s: {"strategy": s} for s in ("freeze_llm", "freeze_vision", "projector_only", "lora", "full")},
    }
    return validate_params({"seed": 3, "train": {"seeds": [3, 5], **settings, **train}})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny base model dir and a train.jsonl whose image paths are relative to this directory."""
    import numpy as np
    from PIL import Image

    from brandcap.params import TinyModelParams
    from brandcap.sim.tiny_model import build_tiny_model

    tiny = TinyModelParams(vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=64, text_layers=2, text_heads=2, vocab_size=400)
    corpus = [f"A {c} {k} by {b}." for b in TINY_TRAIN_BRANDS for c in ("red", "blue") for k in ("bag", "shoe")] * 10
    root = tmp_path_factory.mktemp("train")
    model, processor = build_tiny_model(corpus, tiny, seed=0)
    model.save_pretrained(root / "base")
    processor.save_pretrained(root / "base")
    (root / "images").mkdir()
    records = []
    for i in range(TINY_TRAIN_SAMPLES):
        brand = list(TINY_TRAIN_BRANDS)[i % len(TINY_TRAIN_BRANDS)]
        Image.fromarray(np.full((48, 48, 3), TINY_TRAIN_BRANDS[brand], np.uint8)).save(root / "images" / f"p{i}.png")
        records.append({"product_id": f"p{i}", "image": f"images/p{i}.png", "brand": brand, "caption": f"A bag by {brand}."})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def run_tiny_training(workdir, experiment, params=None, callbacks=(), tag="", seed=3, general_train=None):
    """run_train in workdir, into workdir/run-<experiment><tag>/{checkpoints,train,resume}; those paths.
    `general_train`: the generic training set's JSONL (relative to workdir), for runs with train.general_mix."""
    from brandcap.stages.train import run_train

    out = workdir / f"run-{experiment}{tag}"
    paths = {
        "checkpoints_dir": out / "checkpoints",
        "log_dir": out / "train",
        "resume_dir": out / "resume",
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        run_train(params or train_params(), experiment, seed, workdir / "base", Path("train.jsonl"), callbacks=callbacks,
                  general_train_jsonl=general_train, **paths)
    return paths


def delta_weights(checkpoint_dir):
    """The trained weights a checkpoint stores (full delta or LoRA adapter)."""
    from safetensors.torch import load_file

    from brandcap.model.checkpoints import TRAINABLE_WEIGHTS

    name = TRAINABLE_WEIGHTS if (checkpoint_dir / TRAINABLE_WEIGHTS).exists() else "adapter_model.safetensors"
    return load_file(checkpoint_dir / name)


# ----------------------------------------------------------------------------- test groups
# Every test is in one group, by its module:  pytest -m unit | -m workflow | -m e2e
# (`-m "not slow"` still leaves out the minutes-long runs, whatever their group).
WORKFLOW_MODULES = {  # the orchestrators on a copy of the project: Snakemake, DVC, the README's commands
    "test_dag_agreement", "test_dvc_project", "test_paths", "test_profiles", "test_project_lock", "test_readme",
}
END_TO_END_MODULES = {"test_pipeline", "test_realshape_run"}  # the whole DAG, run for real


def group_of(module_name: str) -> str:
    if module_name in END_TO_END_MODULES:
        return "e2e"
    return "workflow" if module_name in WORKFLOW_MODULES else "unit"


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(group_of(item.module.__name__.rsplit(".", 1)[-1]))


def interrupt_after_epoch(epoch: int):
    """A Trainer callback that fails right after the Trainer saved its state at the end of `epoch` (a crash or a kill)."""
    from transformers import TrainerCallback

    class InterruptAfterEpoch(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.epoch >= epoch:
                raise KeyboardInterrupt(f"interrupted after epoch {epoch}")

    return InterruptAfterEpoch()


def count_vision_tower_runs():
    """A Trainer callback counting (in `.runs`) how often the vision tower runs during training steps."""
    from transformers import TrainerCallback

    class CountVisionTowerRuns(TrainerCallback):
        def __init__(self):
            self.runs, self.hook = 0, None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            tower = (model.get_base_model() if hasattr(model, "get_base_model") else model).model.vision_tower
            self.hook = tower.register_forward_hook(lambda *_: setattr(self, "runs", self.runs + 1))

        def on_train_end(self, args, state, control, **kwargs):
            self.hook.remove()

    return CountVisionTowerRuns()
