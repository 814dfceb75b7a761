"""Fixtures and helpers shared by the test modules (their one home: no test module imports another): the README's
profile commands, throwaway project copies, tiny training runs, caption manifests and a fabricated review study."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_in(repo: Path, command: str | list[str], check: bool = True) -> subprocess.CompletedProcess:
    """Run a command (a shell line as the README writes it, or an argv) with the venv's tools first on PATH."""
    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        HF_HUB_OFFLINE="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    if (Path(repo) / "src/brandcap").is_dir():  # the copy's own package, not the editable install's
        env["PYTHONPATH"] = os.pathsep.join([str(Path(repo) / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    run = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, shell=isinstance(command, str))
    if check and run.returncode:
        shown = command if isinstance(command, str) else " ".join(map(str, command))
        raise AssertionError(f"{shown} failed ({run.returncode}):\n{run.stdout[-4000:]}\n{run.stderr[-6000:]}")
    return run


def copy_project(target: Path) -> Path:
    """A git repository holding the working tree's tracked and untracked-but-not-ignored files."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
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


# ----------------------------------------------------------------------------- the shared smoke build
# The smoke profile is built once per test session, whatever the number of pytest-xdist workers: the first worker
# to ask builds it under the session's shared temp root while the others wait on a file lock. Tests that only read
# it take `smoke_build`; tests that change it take `smoke_copy`, their own copy (timestamps kept, so Snakemake and
# DVC see the same up-to-date build).
SMOKE = "configs/smoke.yaml"


def session_root(tmp_path_factory) -> Path:
    """The temp folder all workers of this session share (the per-worker base temp's parent under xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def smoke_system_temp(tmp_path_factory) -> Path:
    """The system temp dir (TMPDIR) of the smoke build: nothing may land there."""
    return session_root(tmp_path_factory) / "smoke-system-temp"


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory, smoke_system_temp) -> Path:
    """The smoke profile built by the README's command in a copy of the project; read it, do not change it."""
    from filelock import FileLock

    root = session_root(tmp_path_factory)
    project, done, failed = root / "smoke-build", root / "smoke-build.done", root / "smoke-build.failed"
    with FileLock(str(root / "smoke-build.lock")):
        if failed.exists():
            raise AssertionError(f"the shared smoke build failed in another worker:\n{failed.read_text()}")
        if not done.exists():
            try:
                smoke_system_temp.mkdir()
                project.mkdir()
                copy_project(project)
                with pytest.MonkeyPatch.context() as patch:
                    patch.setenv("TMPDIR", str(smoke_system_temp))
                    # as in a user's shell: a test module that imported brandcap.running.stage in this process set it (and
                    # torch made it absolute), and the build would inherit that folder instead of its own
                    patch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
                    run_in(project, readme_profile_commands()[SMOKE]["snakemake"])
            except BaseException as err:
                failed.write_text(str(err))
                raise
            done.touch()
    return project


def nothing_to_do(repo: Path, run, *extra: str) -> bool:
    """Whether a Snakemake dry run of the default target in `repo` finds nothing to do."""
    out = run(repo, ["snakemake", "--cores", "1", "--dry-run", "results/tables.md", *extra])
    return "Nothing to be done" in out.stdout + out.stderr


@pytest.fixture(scope="module")
def smoke_copy(smoke_build, tmp_path_factory) -> Path:
    """A copy of the shared smoke build for a test module that changes it (files, links and timestamps kept)."""
    target = tmp_path_factory.mktemp("smoke-copy") / "project"
    shutil.copytree(smoke_build, target, symlinks=True)
    return target


# ----------------------------------------------------------------------------- tiny training runs
# Shared by test_train.py and test_train_distributed.py (torch and transformers load lazily).
TINY_TRAIN_BRANDS = {"Gucci": (200, 30, 30), "Prada": (30, 200, 30), "Celine": (30, 30, 200), "Loewe": (200, 200, 30)}
TINY_TRAIN_SAMPLES = 8  # batch 4 -> 2 optimizer steps per epoch


def train_params(**train):
    """Params for the tiny training runs: 2 epochs of 2 optimizer steps, every strategy an experiment."""
    from brandcap.config.params import validate_params

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

    from brandcap.config.params import TinyModelParams
    from brandcap.sim.tiny_model import build_tiny_model

    tiny = TinyModelParams(
        vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=64, text_layers=2, text_heads=2, vocab_size=400
    )
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
        records.append(
            {"product_id": f"p{i}", "image": f"images/p{i}.png", "brand": brand, "caption": f"A bag by {brand}."}
        )
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def run_tiny_training(workdir, experiment, params=None, callbacks=(), tag="", seed=3, general_train=None):
    """run_train in workdir, into workdir/run-<experiment><tag>/{checkpoints,train,dvclive,resume}; those paths.
    `general_train`: the generic training set's JSONL (relative to workdir), for runs with train.general_mix."""
    from brandcap.stages.train import run_train

    out = workdir / f"run-{experiment}{tag}"
    paths = {
        "checkpoints_dir": out / "checkpoints",
        "log_dir": out / "train",
        "dvclive_dir": out / "dvclive",
        "resume_dir": out / "resume",
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        run_train(
            params or train_params(),
            experiment,
            seed,
            workdir / "base",
            Path("train.jsonl"),
            callbacks=callbacks,
            general_train_jsonl=general_train,
            **paths,
        )
    return paths


def delta_weights(checkpoint_dir):
    """The trained weights a checkpoint stores (full delta or LoRA adapter)."""
    from safetensors.torch import load_file

    from brandcap.model.checkpoints import TRAINABLE_WEIGHTS

    name = TRAINABLE_WEIGHTS if (checkpoint_dir / TRAINABLE_WEIGHTS).exists() else "adapter_model.safetensors"
    return load_file(checkpoint_dir / name)


# ----------------------------------------------------------------------------- simulated VLM and caption runs
# Shared by test_simulated_vlm.py, test_caption.py and test_caption_endpoint.py.
NO_FAILURES = dict(
    loop_rate=0, garbled_rate=0, case_change_rate=0, missing_brand_rate=0, cutoff_rate=0, http_error_rate=0, slow_rate=0
)
MANIFEST_BRANDS = ["Gucci", "Saint Laurent", "Dolce & Gabbana", "Acne Studios"]
CAPTIONS = "data/interim/captions.jsonl"
RESUME = ".resume/caption"


def png_bytes(colour=(200, 30, 30), background=(245, 245, 245), size=64) -> bytes:
    """A product-like image: a coloured square on a plain background."""
    from PIL import Image

    img = Image.new("RGB", (size, size), background)
    img.paste(Image.new("RGB", (size // 2, size // 2), colour), (size // 4, size // 4))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def make_manifest(root: Path, n: int, extra_rows: list[dict] | None = None) -> list[dict]:
    """n ok products with distinct images under root/data/raw/images, plus `extra_rows`; returns the rows."""
    images = root / "data/raw/images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        png = png_bytes((15 * i % 256, 200 - 9 * i % 200, 60 + 7 * i % 190))
        path = f"data/raw/images/p{i:03d}.png"
        (root / path).write_bytes(png)
        rows.append(
            {
                "product_id": f"p{i:03d}",
                "brand": MANIFEST_BRANDS[i % len(MANIFEST_BRANDS)],
                "title": f"Leather bag model {i}",
                "category": "Bags",
                "imageurl": f"file:///shop/p{i:03d}.png",
                "status": "ok",
                "reason": None,
                "image": path,
                "sha256": hashlib.sha256(png).hexdigest(),
                "width": 64,
                "height": 64,
                "bytes": len(png),
            }
        )
    rows += extra_rows or []
    write_manifest(root, rows)
    return rows


def write_manifest(root: Path, rows: list[dict]) -> None:
    import pandas as pd

    (root / "data/raw").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(root / "data/raw/manifest.parquet", index=False)


def params_for(base_url: str, **caption) -> object:
    from brandcap.config.params import validate_params

    raw = {
        "caption": {
            "base_url": base_url,
            "concurrency": 4,
            "retries": 4,
            "backoff_s": 0.01,
            "timeout_s": 10,
            "retry_temperatures": [0.5, 0.8],
            **caption,
        }
    }
    return validate_params(raw)


# ----------------------------------------------------------------------------- fabricated review study
# Shared by test_review.py and test_review_browser.py.
DG, CHLOE, ODD = "Dolce & Gabbana", "Chloé", 'A<B "Co"'  # ODD: a name with every character HTML must escape
SCRIPT_CAPTION = "A Chloé <script>alert(1)</script> scarf & more."
# (product id, brand, reference, base answer, lora epoch-4 answer); the last id is no safe file name.
ITEMS = [
    ("t0", DG, "A black Dolce & Gabbana bag.", "A black bag.", "A black Dolce & Gabbana bag."),
    ("t1", DG, "A red Dolce&Gabbana shoe.", "A red Chloé shoe.", "Not Chloé but Dolce & Gabbana."),
    ("t2", CHLOE, SCRIPT_CAPTION, "A scarf.", "A Chloé or Dolce & Gabbana scarf."),
    ("t3", CHLOE, "A white Chloé top.", "A Chloé top.", "A Dolce & Gabbana top."),
    ("t4", ODD, 'A A<B "Co" belt.', "A belt.", 'An A<B "Co" belt.'),
    ('../Sac "Été"/5', ODD, 'A green A<B "Co" hat.', "A hat.", "A hat."),
]
# Outcomes of the fabricated answers, as brandcap.evaluation.metrics scores them.
BASE_COUNTS = {"correct": 1, "hedged": 0, "wrong": 1, "none": 4}
LORA_COUNTS = {"correct": 3, "hedged": 1, "wrong": 1, "none": 1}
CHANGED = 5  # every item but the last changes outcome from base to lora epoch 4


def write_run(folder: Path, answers: list[str], val_accuracy: float) -> dict:
    """predictions.jsonl and metrics.json of one evaluation, scored as the evaluate stage scores them."""
    from brandcap.evaluation.metrics import brand_metrics, brand_outcomes
    from brandcap.files.atomic import write_json, write_jsonl

    brands = [brand for _, brand, *_ in ITEMS]
    known = sorted({*brands, "Prada"})
    outcomes = brand_outcomes(answers, brands, known)
    write_jsonl(
        folder / "predictions.jsonl",
        [
            {"product_id": pid, "brand": brand, "reference": ref, "prediction": answer, "outcome": outcome}
            for (pid, brand, ref, *_), answer, outcome in zip(ITEMS, answers, outcomes)
        ],
    )
    metrics = {"n_test": len(ITEMS), **brand_metrics(answers, brands, known), "val_brand_accuracy": val_accuracy}
    write_json(folder / "metrics.json", metrics)
    return metrics


def make_study(root: Path, seeds: tuple[int, ...] = (4,)) -> dict:
    """Images, test/val splits and evaluations under root (image paths relative to root): lora's best epoch on
    validation is 4 (epoch 2 answers better on test, so a test-chosen page would differ); freeze_llm never
    beats the base model on validation (no learning)."""
    from PIL import Image

    from brandcap.config.params import validate_params
    from brandcap.files.atomic import write_jsonl

    (root / "images").mkdir(parents=True)
    test = []
    for i, (pid, brand, ref, *_) in enumerate(ITEMS):
        Image.new("RGB", (300, 200), (40 * i, 100, 200)).save(root / "images" / f"p{i}.png")
        test.append({"product_id": pid, "image": f"images/p{i}.png", "brand": brand, "caption": ref})
    write_jsonl(root / "test.jsonl", test)
    write_jsonl(
        root / "val.jsonl",
        [{"product_id": "v0", "image": "images/p0.png", "brand": "Prada", "caption": "A Prada bag."}],
    )
    evals = root / "eval"
    base_answers = [it[3] for it in ITEMS]
    write_run(evals / "base" / "epoch-0", base_answers, 0.1)
    for seed in seeds:
        runs = evals / "lora" / f"seed-{seed}"
        write_run(runs / "epoch-2", [it[2] for it in ITEMS], 0.3)  # the references: all correct on test
        write_run(runs / "epoch-4", [it[4] for it in ITEMS], 0.5)
        for epoch in (2, 4):
            write_run(evals / "freeze_llm" / f"seed-{seed}" / f"epoch-{epoch}", base_answers, 0.1)
    train = {
        "epochs": 4,
        "save_epochs": [2, 4],
        "seeds": list(seeds),
        "experiments": {"freeze_llm": {"strategy": "freeze_llm"}, "lora": {"strategy": "lora"}},
    }
    return {
        "root": root,
        "train": train,
        "params": validate_params({"train": train}),
        "out": root / "results" / "review",
    }


def review(study: dict) -> str:
    """The review stage on a study made by make_study (run from its root); the page's HTML."""
    from brandcap.stages.review import run_review

    run_review(study["params"], Path("test.jsonl"), Path("val.jsonl"), Path("eval"), Path("results/review"))
    return (study["out"] / "index.html").read_text(encoding="utf-8")


class Elements(HTMLParser):
    """Start tags with their attributes and the text inside each (for the few elements a test asks about)."""

    def __init__(self, html: str):
        super().__init__()
        self.found: list[tuple[str, dict, list[str]]] = []
        self._open: list[list[str]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        text: list[str] = []
        self.found.append((tag, dict(attrs), text))
        if tag not in ("img", "input", "br", "meta"):
            self._open.append(text)

    def handle_endtag(self, tag):
        if self._open and tag not in ("img", "input", "br", "meta"):
            self._open.pop()

    def handle_data(self, data):
        for text in self._open:
            text.append(data)

    def where(self, tag: str, **attrs) -> list[tuple[dict, str]]:
        return [
            (a, "".join(t).strip())
            for tg, a, t in self.found
            if tg == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def shown_counts(self) -> dict[str, int]:
        """The count cells of the visible counts table."""
        out, inside = {}, False
        for tag, attrs, text in self.found:
            if tag == "table" and "data-run-only" in attrs:
                inside = "hidden" not in attrs
            elif tag == "td" and inside and "data-count" in attrs:
                out[attrs["data-count"]] = int("".join(text).split()[0])
        return out


def expected_counts() -> dict[str, int]:
    return {
        **{f"base-{o}": n for o, n in BASE_COUNTS.items()},
        **{f"best-{o}": n for o, n in LORA_COUNTS.items()},
        "best-changed": CHANGED,
    }


# ----------------------------------------------------------------------------- test groups
# Every test is in one group, by its module:  pytest -m unit | -m workflow | -m e2e
# (`-m "not slow"` still leaves out the minutes-long runs, whatever their group).
WORKFLOW_MODULES = {  # the orchestrators on a copy of the project: Snakemake, DVC, the README's commands
    "test_dag_agreement",
    "test_dvc_project",
    "test_paths",
    "test_profiles",
    "test_project_lock",
    "test_readme",
}
# The whole DAG, run for real; longest first, and collected before every other module: `make test` runs the suite
# on pytest-xdist workers (one per core, at most 4), one module per worker at a time (--dist loadfile, so each
# module's pipeline is built once), and a long module started last would leave a core idle at the end.
# The shared smoke build's first user (test_pipeline) comes first, the modules that copy it after two that do not
# need it, so that no worker waits for it while another builds it.
END_TO_END_MODULES = [
    "test_pipeline",
    "test_realshape_run",
    "test_learning",
    "test_pipeline_dvc",
    "test_pipeline_rerun",
    "test_report",
]


def module_name_of(item) -> str:
    return item.module.__name__.rsplit(".", 1)[-1]


def group_of(module_name: str) -> str:
    if module_name in END_TO_END_MODULES:
        return "e2e"
    return "workflow" if module_name in WORKFLOW_MODULES else "unit"


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(group_of(module_name_of(item)))

    def start_order(item) -> int:
        module = module_name_of(item)
        return END_TO_END_MODULES.index(module) if module in END_TO_END_MODULES else len(END_TO_END_MODULES)

    items.sort(key=start_order)  # stable: the order within each module is kept


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


# A real data source has no generic set by default, so it cannot run the default matrix's mixed
# experiment; the real profiles (configs/seed004.yaml, realshape.yaml) train one experiment like this.
ONE_UNMIXED_EXPERIMENT = {"train": {"experiments": {"freeze_llm": {"strategy": "freeze_llm"}}}}
