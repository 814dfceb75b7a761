"""A training run's step metrics in DVCLive's files: `{dir}/plots/metrics/training/{name}.tsv` (step, value) and
`{dir}/metrics.json` (the last value of each, the run's summary and the last step), so `dvc plots show` / `dvc plots
diff` draw them with DVC's own templates and `dvc exp show` lists them (dvc.yaml declares both as the train stage's
plots and metrics).

    write_training_log(records, {"wall_time_s": 131.2, ...}, Path("results/dvclive/lora/seed-4"))
    read_step_metrics(Path("results/dvclive/lora/seed-4"))  # the records back: [{step, epoch, loss, ...}]

The files are written with DVCLive's own writers (`dvclive.plots.Metric`, `dvclive.serialize.dump_json`), at the end
of the run, from the records the train stage keeps in its resume folder (`log.jsonl` there): a resumed run's log is
complete and has no step twice. `dvclive.Live` itself is not used in a stage: outside a DVC repository but inside git
it initialises one (`dvc init`), under `dvc exp run` it `git add`s the untracked files under its folder, it posts to
DVC Studio where a token is configured, and it writes step by step into a folder that orchestrators delete before a
rerun, so a resumed run would lose the steps before the interruption.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from brandcap.files import atomic

STEP_METRICS = ("epoch", "loss", "learning_rate", "grad_norm", "samples_per_second")
# DVCLive's name of each metric is training/<name> (transformers' DVCLiveCallback says train/<name>, which in `dvc exp
# show` would clash with the params of the same names, train.learning_rate among them)
PREFIX = "training"
SUMMARY_FILE = "metrics.json"
PLOTS_DIR = "plots"


def metric_file(dvclive_dir: Path, name: str) -> Path:
    return Path(dvclive_dir) / PLOTS_DIR / "metrics" / PREFIX / f"{name}.tsv"


def write_training_log(records: Sequence[dict[str, Any]], summary: dict[str, float], dvclive_dir: Path) -> None:
    """Write `records` (one per logging step) and `summary` (run-level values) as DVCLive's files, atomically."""
    from dvclive.plots import Metric
    from dvclive.serialize import dump_json

    with atomic.staged_directory(dvclive_dir) as stage:
        latest: dict[str, Any] = {}
        metrics = {name: Metric(f"{PREFIX}/{name}", str(stage / PLOTS_DIR)) for name in STEP_METRICS}
        for record in records:
            for name, metric in metrics.items():
                if record.get(name) is not None:
                    metric.step = record["step"]
                    metric.dump(record[name])
                    latest[name] = record[name]
        last_step = records[-1]["step"] if records else 0
        dump_json({PREFIX: {**latest, **summary}, "step": last_step}, stage / SUMMARY_FILE)


def read_step_metrics(dvclive_dir: Path) -> list[dict[str, Any]]:
    """The records `write_training_log` wrote, by step: [{"step", "epoch", "loss", ...}] (absent values left out)."""
    by_step: dict[int, dict[str, Any]] = {}
    for name in STEP_METRICS:
        path = metric_file(dvclive_dir, name)
        if not path.exists():
            continue
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                step = int(row["step"])
                by_step.setdefault(step, {"step": step})[name] = json.loads(row[name])
    return [by_step[step] for step in sorted(by_step)]
