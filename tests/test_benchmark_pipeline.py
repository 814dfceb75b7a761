"""`benchmarks/pipeline.py` finds every job's start-up and body in the stage logs, train jobs included
(their stage names hold spaces)."""

import importlib.util
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "pipeline.py"


def _pipeline_module():
    spec = importlib.util.spec_from_file_location("benchmark_pipeline", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stage_log(path: Path, name: str, startup: float, body: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"12:00:00 INFO stage {name}: start (params params.yaml) after {startup} s of interpreter and import start-up\n"
        f"12:00:09 INFO stage {name}: done in {body} s\n"
    )


def test_stage_times_reads_train_and_evaluate_logs(tmp_path):
    _stage_log(tmp_path / "train" / "freeze_llm" / "seed-4.log", "train[freeze_llm, seed 4]", 9.5, 120.0)
    _stage_log(tmp_path / "evaluate" / "base" / "epoch-0.log", "evaluate[results/eval/base/epoch-0]", 7.4, 15.3)
    rows = _pipeline_module().stage_times(tmp_path)
    assert sorted(rows) == [("evaluate/base/epoch-0", 7.4, 15.3), ("train/freeze_llm/seed-4", 9.5, 120.0)]
