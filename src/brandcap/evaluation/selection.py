"""Which checkpoint is best: the evaluations of a study read back, combined over seeds, chosen on validation.

    from brandcap.evaluation.selection import load_evaluations, best_epoch, overall_best
    evaluations, per_seed = load_evaluations(params, Path("results/eval"))
    best = {exp: best_epoch(evaluations[exp], evaluations[BASE][0]) for exp in params.train.experiments}
    winners = overall_best(evaluations, best)

The one home of the selection rule, shared by the tables, review and export stages: an experiment's
best epoch has the highest validation brand accuracy (ties: the earlier; with several training seeds,
the mean over seeds), and counts only when it beats the base model on validation ("no learning"
otherwise); the overall best are the experiments whose best epoch has the highest validation brand
accuracy (several = a tie). The test set never chooses. Folders: `eval_dir/base/epoch-0` (the base
model), `eval_dir/{exp}/seed-{S}/epoch-{N}` (`run_dir`), as rules/*.smk and dvc.yaml name them.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from brandcap.config.params import Params
from brandcap.files.atomic import read_json

BASE = "base"
PROMPTED = "prompted"  # eval_dir/base/prompted: the prompt-only baseline
# Below this base-model CIDEr on the general set, a CIDEr change there means nothing: "no signal".
PROBE_SIGNAL_FLOOR = 0.05
NO_LEARNING = "no learning"
# With several training seeds, these carry `{key}_sd`, their standard deviation over seeds.
SEED_SPREAD_METRICS = ("brand_accuracy", "macro_brand_accuracy", "val_brand_accuracy")


def epoch_key(epoch: int) -> str:
    return f"epoch-{epoch}"


def seed_key(seed: int) -> str:
    return f"seed-{seed}"


def run_dir(root: Path, exp: str, seed: int, epoch: int | None = None) -> Path:
    """Where the train and evaluate stages put one experiment's run with one training seed (and epoch):
    `root/{exp}/seed-{S}[/epoch-{N}]`, as rules/*.smk and dvc.yaml name them."""
    folder = Path(root) / exp / seed_key(seed)
    return folder if epoch is None else folder / epoch_key(epoch)


def _read_evaluation(folder: Path, fix: str) -> dict[str, Any]:
    path = folder / "metrics.json"
    metrics = read_json(path, fix)
    if "val_brand_accuracy" not in metrics:
        raise ValueError(
            f"{path}: no validation metrics (val_brand_accuracy); rerun the clean stage (val.jsonl) and the evaluate stage"
        )
    return metrics


def load_evaluations(
    params: Params, eval_dir: Path
) -> tuple[dict[str, dict[int, dict[str, Any]]], dict[str, dict[int, dict[int, dict[str, Any]]]]]:
    """(evaluations, per_seed): evaluations = {"base": {0: metrics}, exp: {N: metrics combined over seeds
    (`combine_seeds`)}}, per_seed = {exp: {seed: {N: metrics}}}; every run with `forgetting_cider_change`
    added (null when the probe has no signal, see `probe_has_signal`)."""
    eval_dir = Path(eval_dir)
    base = _read_evaluation(eval_dir / BASE / epoch_key(0), "run the evaluate_base stage")
    per_seed = {
        exp: {
            seed: {
                epoch: _read_evaluation(
                    run_dir(eval_dir, exp, seed, epoch), f"run the evaluate stage for {exp} seed {seed} epoch {epoch}"
                )
                for epoch in params.train.save_epochs
            }
            for seed in params.train.seeds
        }
        for exp in params.train.experiments
    }
    signal = probe_has_signal(base)
    for m in [base] + [m for seeds in per_seed.values() for runs in seeds.values() for m in runs.values()]:
        general = m.get("general_cider")
        m["forgetting_cider_change"] = general - base["general_cider"] if signal and general is not None else None
    evaluations = {BASE: {0: base}}
    for exp, seeds in per_seed.items():
        evaluations[exp] = {
            epoch: combine_seeds([runs[epoch] for runs in seeds.values()]) for epoch in params.train.save_epochs
        }
    return evaluations, per_seed


def _mean_over_seeds(values: list[Any]) -> Any:
    """A value every seed shares as it is; numbers: their mean; mappings (per-brand accuracy): key by key; else None."""
    if all(isinstance(v, dict) for v in values):
        return {k: _mean_over_seeds([v.get(k) for v in values]) for k in values[0]}
    if all(v == values[0] for v in values):
        return values[0]
    if all(is_number(v) for v in values):
        return statistics.fmean(values)
    return None


def combine_seeds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One experiment and epoch over its training seeds: one seed's metrics as they are; several: the mean
    of every figure (per brand too), `{key}_sd` (sample standard deviation over seeds) for
    SEED_SPREAD_METRICS, `n_seeds`, and no bootstrap intervals (each seed's stay in its own metrics)."""
    if len(runs) == 1:
        return runs[0]
    combined = {k: _mean_over_seeds([r.get(k) for r in runs]) for k in runs[0] if not k.endswith("_ci")}
    for key in SEED_SPREAD_METRICS:
        values = [r.get(key) for r in runs]
        combined[f"{key}_sd"] = statistics.stdev(values) if all(is_number(v) for v in values) else None
    combined["n_seeds"] = len(runs)
    return combined


def probe_has_signal(base: dict[str, Any]) -> bool:
    """Whether the base model scores clearly above 0 on the general set (else a change there says nothing)."""
    return (base.get("general_cider") or 0.0) >= PROBE_SIGNAL_FLOOR


def top_validation_epoch(runs: dict[int, dict[str, Any]]) -> int:
    """The saved epoch (not 0, the base model) with the highest validation brand accuracy; ties: the earlier."""
    return min((e for e in runs if e != 0), key=lambda e: (-(runs[e].get("val_brand_accuracy") or 0.0), e))


def best_epoch(runs: dict[int, dict[str, Any]], base: dict[str, Any]) -> int | None:
    """`top_validation_epoch`, or None when it does not beat the base model on validation (no learning)."""
    best = top_validation_epoch(runs)
    return best if (runs[best].get("val_brand_accuracy") or 0.0) > (base.get("val_brand_accuracy") or 0.0) else None


def overall_best(evaluations: dict[str, dict[int, dict[str, Any]]], best: dict[str, int | None]) -> list[str]:
    """The experiments whose best epoch has the highest validation brand accuracy (several = a tie);
    empty when no experiment learnt."""
    scores = {exp: evaluations[exp][e]["val_brand_accuracy"] for exp, e in best.items() if e is not None}
    if not scores:
        return []
    top = max(scores.values())
    return [exp for exp, v in scores.items() if v == top]


def verdict(best_experiments: list[str]) -> str:
    return NO_LEARNING if not best_experiments else "tie" if len(best_experiments) > 1 else "best"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
