"""tables stage: everything the study produced, in one readable page, one DVC metrics file and plots.

    from brandcap.stages.tables import run_tables
    run_tables(params, Path("data/raw/catalog.parquet"), Path("data/raw/manifest.parquet"),
               Path("data/interim/captions.jsonl"), Path("data/processed/clean_report.json"),
               Path("results/train"), Path("results/checkpoints"), Path("results/eval"),
               Path("results/baselines"), Path("results/tables.md"), Path("results/metrics.json"),
               Path("results/plots"), review_dir=Path("results/review"))

Both `tables.md` and `metrics.json` begin with their provenance (`brandcap.running.provenance`): the
commit, the params hash and the data hash (the processed split files beside the clean report).

Reads `eval_dir/base/epoch-0/` (the base model, shared by all experiments: also the zero-shot
baseline), `eval_dir/base/prompted/` (the prompt-only baseline), `baselines_dir/{name}/` (majority
brand, image nearest neighbours), `eval_dir/{exp}/seed-{S}/epoch-{N}/` (their `metrics.json`, and the
`predictions.jsonl` of the systems compared), `train_dir/{exp}/seed-{S}/summary.json`, the step metrics in
`dvclive_dir/{exp}/seed-{S}/` (brandcap.model.training_log) and
`checkpoints_dir/{exp}/seed-{S}/epoch-{N}/brandcap_checkpoint.json` for the experiments, training
seeds (train.seeds) and epochs in params, plus the data stages' outputs for the funnel.

Seeds (`combine_seeds`): with one training seed every figure is that run's, with its 95% bootstrap
interval. With several, each experiment and epoch is read as the mean over seeds, and brand,
macro and validation accuracy carry their standard deviation over seeds (`0.812 ± 0.031`) instead
of an interval; the selection below runs on these means, and each seed's own figures stay in
`metrics.json` under `{exp}.seed-{S}`.

How the findings are read (`select`):
- Each experiment's **best epoch** is the saved epoch with the highest *validation* brand accuracy
  (the mean over seeds; ties: the earlier epoch); an experiment none of whose epochs beats the base model on validation
  has none: "no learning". The **overall best** is the experiment(s) whose best epoch has the
  highest validation accuracy; several equal ones are reported as a tie, never resolved by list
  order. Their *test* figures are reported, with their 95% bootstrap intervals.
- **Baselines** on the same test items and metric; the strongest is the one with the highest
  test brand accuracy (the hardest bar for a model). Each best epoch shows its margin over it
  with a 95% paired bootstrap interval (`brandcap.evaluation.metrics.paired_difference`, items matched by
  product_id); with several seeds, the mean ± sd over seeds of each seed's margin. Whether fine-tuning
  beats that baseline is said in words (`versus_baseline`): "above" only when the interval lies above
  zero (with several seeds, every seed's), "below" when it lies below, else "not above"; a best
  epoch that merely ties the majority answer is "not above", however it ranks on validation.
- **Forgetting**: the general (brand-free) set, asked its own question, gives the change in
  CIDEr from the base model, "no signal" when the base model's own CIDEr there is below
  `PROBE_SIGNAL_FLOOR`, and the brand hallucination rate.

Writes (all atomically):
- `tables.md`: a link to the review page (`brandcap.stages.review`, when `review_dir` is given),
  (1) data funnel, (2) baselines, (3) the best epoch of each experiment with its margin and
  forgetting figures, and the overall best, (4) metrics per experiment and epoch with the best
  epoch marked, brand and macro accuracy shown with their 95% bootstrap intervals
  (`0.812 [0.75, 0.87]`), (5) resources per experiment, (6) per-brand accuracy and n of the best;
- `metrics.json`: `{"provenance": {commit, params_sha256, data_sha256}, exp: {"epoch-N": {metric: value}}
  (with several seeds also "seed-S": {"epoch-N": ...} per seed),
  "baselines": {name: {metric: value}}, "selection": {...}}` with `"base": {"epoch-0": ...}`, scalar
  metrics only besides the provenance strings and the selection's names, an interval `[lo, hi]`
  as `{name}_low` and `{name}_high` (the DVC metrics file: `dvc exp show` lists it per
  experiment; `dvc exp show --drop provenance` hides the three provenance columns); `selection`
  holds `verdict` ("best", "tie" or "no learning"), `best` (the experiment names), the
  `strongest_baseline`, `versus_strongest_baseline` (the best checkpoint's reading; of a tie's, the
  best; "no best checkpoint" under no learning), and per experiment its best `epoch` (null for no
  learning) with its own `versus_strongest_baseline`, test, validation, margin and forgetting figures;
- `plots_dir/brand_accuracy.{png,csv}` (accuracy vs epoch, epoch 0 = the base model) and
  `plots_dir/train_loss.{png,csv}` (training loss vs step), the CSVs for `dvc plots show`.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from brandcap.config.params import Params, experiment_settings, mixing_experiments  # noqa: E402
from brandcap.evaluation.baselines import BASELINES as IMAGE_AND_MAJORITY_BASELINES  # noqa: E402
from brandcap.evaluation.metrics import paired_difference  # noqa: E402
from brandcap.evaluation.selection import (  # noqa: E402
    BASE,
    NO_LEARNING,
    PROBE_SIGNAL_FLOOR,
    PROMPTED,
    SEED_SPREAD_METRICS,
    best_epoch,
    epoch_key,
    is_number,
    load_evaluations,
    overall_best,
    probe_has_signal,
    run_dir,
    seed_key,
    top_validation_epoch,
    verdict,
)
from brandcap.files.atomic import atomic_path, read_json, read_jsonl, write_json, write_text  # noqa: E402
from brandcap.files.product_table import CHECKPOINT_META  # noqa: E402
from brandcap.model.training_log import read_step_metrics  # noqa: E402
from brandcap.running.provenance import data_files, provenance  # noqa: E402

log = logging.getLogger(__name__)

# Baselines in table order: name -> what it is.
BASELINE_TITLES = {
    "majority": "the most frequent training brand, always",
    "thumbnail_nn": "1-nearest training image, 8x8 RGB thumbnails",
    "colour_histogram_nn": "1-nearest training image, 64-bin colour histograms",
    "zero_shot": "the base model, asked the training instruction (epoch 0)",
    "prompted": "the base model, asked with the candidate brand list (prompt only)",
}
NO_SIGNAL = "no signal"
# The clean stage's last rule (clean_report.json "removed"): brands with too few captions, applied after
# the caption rules, so the funnel shows it as "brands dropped" after "after the caption rules".
BRAND_FILTER_RULE = "rare_brand"
# How a best checkpoint reads against the strongest baseline: its margin's 95% interval lies above
# zero, includes zero, or lies below zero (with several seeds: every seed's interval). In the order
# a tie's best reading is taken.
ABOVE, NOT_ABOVE, BELOW = "above", "not above", "below"
NO_BEST_CHECKPOINT = "no best checkpoint"
# (metrics.json key, column title) of the per-epoch table, in order; a key with a `{key}_ci`
# interval in metrics.json is shown with it.
RESULT_COLUMNS = [
    ("brand_accuracy", "brand acc. [95% CI]"),
    ("macro_brand_accuracy", "macro acc. [95% CI]"),
    ("hedged_rate", "hedged"),
    ("wrong_brand_rate", "wrong brand"),
    ("brand_accuracy_lenient", "lenient acc."),
    ("test_loss", "test loss"),
    ("bleu4", "BLEU-4"),
    ("meteor", "METEOR"),
    ("rouge_l", "ROUGE_L"),
    ("cider", "CIDEr"),
    ("forgetting_cider_change", "general CIDEr change"),
    ("general_brand_hallucination_rate", "hallucinated brand"),
]


# ----------------------------------------------------------------------------- reading
# ----------------------------------------------------------------------------- baselines
def _outcomes(path: Path, fix: str) -> dict[Any, tuple[str, str]]:
    """{product_id: (brand, outcome)} from a predictions.jsonl."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; {fix}")
    return {r["product_id"]: (r["brand"], r["outcome"]) for r in read_jsonl(path)}


def baseline_dirs(eval_dir: Path, baselines_dir: Path) -> dict[str, Path]:
    """Where each baseline's metrics.json and predictions.jsonl live, in table order."""
    dirs = {name: Path(baselines_dir) / name for name in IMAGE_AND_MAJORITY_BASELINES}
    dirs["zero_shot"] = Path(eval_dir) / BASE / epoch_key(0)
    dirs["prompted"] = Path(eval_dir) / BASE / PROMPTED
    return dirs


def load_baselines(eval_dir: Path, baselines_dir: Path) -> dict[str, dict[str, Any]]:
    """{name: {"metrics": metrics.json, "outcomes": {product_id: (brand, outcome)}}} for every baseline."""
    out = {}
    for name, folder in baseline_dirs(eval_dir, baselines_dir).items():
        fix = (
            "run the evaluate_prompted stage"
            if name == "prompted"
            else "run the evaluate_base stage"
            if name == "zero_shot"
            else "run the baselines stage"
        )
        out[name] = {
            "metrics": read_json(folder / "metrics.json", fix),
            "outcomes": _outcomes(folder / "predictions.jsonl", fix),
        }
    return out


def strongest_baseline(baselines: dict[str, dict[str, Any]]) -> str:
    """The baseline with the highest test brand accuracy (equal ones: the first in table order)."""
    return max(
        baselines,
        key=lambda name: (baselines[name]["metrics"].get("brand_accuracy") or 0.0, -list(baselines).index(name)),
    )


def margin(
    model: dict[Any, tuple[str, str]], baseline: dict[Any, tuple[str, str]], source: Path
) -> dict[str, Any] | None:
    """Brand accuracy of a model minus a baseline's on the same test items (matched by product_id),
    with its 95% paired bootstrap interval."""
    if set(model) != set(baseline):
        raise ValueError(
            f"{source}: scored {len(model)} test items, the baseline {len(baseline)}, not the same ones; "
            "rerun the evaluate and baselines stages with the same data and eval.max_test_samples"
        )
    ids = list(model)
    return paired_difference([model[i][1] for i in ids], [baseline[i][1] for i in ids], [model[i][0] for i in ids])[
        "brand_accuracy"
    ]


def combine_margins(per_seed: dict[int, dict[str, Any] | None]) -> dict[str, Any] | None:
    """One seed's margin as it is; several: {"difference": mean, "difference_sd": sd over seeds, "ci": None,
    "per_seed": {seed: margin}}; None when a seed has none."""
    if len(per_seed) == 1:
        return next(iter(per_seed.values()))
    if any(m is None for m in per_seed.values()):
        return None
    differences = [m["difference"] for m in per_seed.values()]
    return {
        "difference": statistics.fmean(differences),
        "difference_sd": statistics.stdev(differences),
        "ci": None,
        "per_seed": per_seed,
    }


def seed_margins(
    eval_dir: Path, exp: str, seeds: list[int], epoch: int, baseline: dict[Any, tuple[str, str]]
) -> dict[int, dict[str, Any] | None]:
    """{seed: that seed's margin at `epoch` over the baseline's outcomes}."""
    margins = {}
    for seed in seeds:
        predictions = run_dir(eval_dir, exp, seed, epoch) / "predictions.jsonl"
        model = _outcomes(predictions, f"run the evaluate stage for {exp} seed {seed} epoch {epoch}")
        margins[seed] = margin(model, baseline, predictions)
    return margins


def versus_baseline(margin_of: dict[str, Any]) -> str:
    """ABOVE when the margin's 95% interval lies above zero, BELOW when below, else NOT_ABOVE; with
    several seeds (`combine_margins`) every seed's interval must lie on that side."""
    intervals = [m["ci"] for m in margin_of["per_seed"].values()] if margin_of.get("per_seed") else [margin_of["ci"]]
    if all(low > 0 for low, _ in intervals):
        return ABOVE
    if all(high < 0 for _, high in intervals):
        return BELOW
    return NOT_ABOVE


def select(params: Params, evaluations, baselines, eval_dir: Path) -> dict[str, Any]:
    """The findings: best epoch per experiment (validation, mean over seeds), overall best, strongest
    baseline and each best epoch's margin over it; see the module docstring."""
    base = evaluations[BASE][0]
    best = {exp: best_epoch(evaluations[exp], base) for exp in params.train.experiments}
    winners = overall_best(evaluations, best)
    strongest = strongest_baseline(baselines)
    per_experiment = {}
    for exp, epoch in best.items():
        entry: dict[str, Any] = {"epoch": epoch, "margin": None, "versus_strongest_baseline": NO_BEST_CHECKPOINT}
        if epoch is not None:
            margins = seed_margins(eval_dir, exp, list(params.train.seeds), epoch, baselines[strongest]["outcomes"])
            entry["margin"] = combine_margins(margins)
            entry["versus_strongest_baseline"] = versus_baseline(entry["margin"]) if entry["margin"] else NOT_ABOVE
        per_experiment[exp] = entry
    readings = [per_experiment[exp]["versus_strongest_baseline"] for exp in winners]
    versus = next((r for r in (ABOVE, NOT_ABOVE, BELOW) if r in readings), NO_BEST_CHECKPOINT)
    return {
        "verdict": verdict(winners),
        "best": winners,
        "strongest_baseline": strongest,
        "versus_strongest_baseline": versus,
        "within_rounding_of_best": within_rounding(evaluations, best, winners, params.tables.rounding_spread),
        "experiments": per_experiment,
    }


def within_rounding(evaluations, best: dict[str, int | None], winners: list[str], spread: float) -> list[str]:
    """The other experiments whose best epoch is within `tables.rounding_spread` of the best on validation:
    which of them is best can change with the floating-point rounding, so the tables say so."""
    if not winners or spread <= 0:
        return []
    top = evaluations[winners[0]][best[winners[0]]]["val_brand_accuracy"]
    return [
        exp
        for exp, epoch in best.items()
        if exp not in winners and epoch is not None and top - evaluations[exp][epoch]["val_brand_accuracy"] < spread
    ]


def load_training(
    params: Params, train_dir: Path, dvclive_dir: Path, checkpoints_dir: Path
) -> dict[str, dict[int, dict[str, Any]]]:
    """{exp: {seed: {"summary": summary.json, "log": [step records], "checkpoint_bytes": {epoch: bytes}}}}."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for exp in params.train.experiments:
        for seed in params.train.seeds:
            fix = f"run the train stage for {exp} seed {seed}"
            summary = read_json(run_dir(train_dir, exp, seed) / "summary.json", fix)
            records = read_step_metrics(run_dir(dvclive_dir, exp, seed))
            sizes = {int(e): b for e, b in (summary.get("checkpoint_bytes") or {}).items()}
            for epoch in params.train.save_epochs:
                meta_path = run_dir(checkpoints_dir, exp, seed, epoch) / CHECKPOINT_META
                if epoch not in sizes and meta_path.exists():
                    sizes[epoch] = read_json(meta_path, fix).get("saved_bytes")
            out.setdefault(exp, {})[seed] = {"summary": summary, "log": records, "checkpoint_bytes": sizes}
    return out


def _or_unknown(reason: str | None) -> str:
    return "unknown" if reason is None else reason


def data_funnel(
    catalog_path: Path, manifest_path: Path, captions_path: Path, clean_report_path: Path
) -> list[tuple[str, str]]:
    """(step, count) rows from the catalog to the train/test split."""
    catalog_rows = pq.ParquetFile(catalog_path).metadata.num_rows
    manifest = pq.read_table(manifest_path).to_pydict()  # pyarrow alone: pandas would add seconds of import
    if "status" not in manifest:
        raise ValueError(f"{manifest_path}: no 'status' column; rerun the download stage")
    ok = manifest["status"].count("ok")
    failed = [i for i, status in enumerate(manifest["status"]) if status != "ok"]
    reasons = Counter(_or_unknown(manifest["reason"][i]) for i in failed) if "reason" in manifest else Counter()
    captions = read_jsonl(captions_path)
    captioned = sum(1 for c in captions if c.get("text"))
    report = read_json(Path(clean_report_path), "rerun the clean stage")

    def why(counter: Counter | dict) -> str:
        items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        return ", ".join(f"{k} {v}" for k, v in items if v)

    rows = [("catalog rows", f"{catalog_rows}")]
    rows.append(("images downloaded", f"{ok}" + (f" (failed {len(failed)}: {why(reasons)})" if len(failed) else "")))
    rows.append(
        (
            "captioned",
            f"{captioned}" + (f" (no caption {len(captions) - captioned})" if len(captions) > captioned else ""),
        )
    )
    rows.append(("clean stage input", f"{report.get('input')}"))
    for rule, n in (report.get("removed") or {}).items():
        if rule != BRAND_FILTER_RULE:  # applied after the caption rules: the "brands dropped" row
            rows.append((f"removed: {rule}", f"-{n}" if n else "0"))
    after_caption_rules = report.get("after_caption_rules", report.get("after_rules"))  # older reports lack the first
    rows.append(
        (
            "after the caption rules",
            f"{after_caption_rules} (cut-off endings trimmed: {report.get('trimmed')}, brand respelled: {report.get('brand_case_fixed')})",
        )
    )
    kept, dropped = report.get("brands_kept") or {}, report.get("brands_dropped") or {}
    lost = report.get("brands_lost") or {}
    if lost:
        rows.append(
            (
                "brands that lost every caption to the caption rules",
                f"{len(lost)} brands: " + ", ".join(f"{b} ({x['rule']}, -{x['captions']})" for b, x in lost.items()),
            )
        )
    rows.append(("brands dropped (too few captions)", f"{len(dropped)} brands, -{sum(dropped.values())} captions"))
    rows.append(("brands kept", f"{len(kept)} brands, {sum(kept.values())} captions"))
    rows.append(("train / validation / test", f"{report.get('train')} / {report.get('val')} / {report.get('test')}"))
    return rows


# ----------------------------------------------------------------------------- formatting
def _num(value: Any, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _with_spread(metrics: dict[str, Any], key: str, signed: bool = False) -> str:
    """`0.812 ± 0.031` when metrics has a spread over seeds `{key}_sd`, `0.812 [0.75, 0.87]` when it has
    an interval `{key}_ci`, else the number alone."""
    ci, sd = metrics.get(f"{key}_ci"), metrics.get(f"{key}_sd")
    value = _num(metrics.get(key), signed=signed)
    if metrics.get(key) is None:
        return value
    if sd is not None:
        return f"{value} ± {sd:.3f}"
    return f"{value} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else value


def _spread_title(title: str, n_seeds: int) -> str:
    """A column title that says how its figures vary: the 95% bootstrap interval (one seed), or mean ± sd over seeds."""
    return title if n_seeds == 1 else f"{title.replace(' [95% CI]', '')} (mean ± sd, {n_seeds} seeds)"


def _bytes(n: Any) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1000
    return f"{n}"


def _count(n: Any) -> str:
    if n is None:
        return "n/a"
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k"
    return str(n)


def _table(header: list[str], rows: list[list[str]], align_left: int = 1) -> list[str]:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(":---" if i < align_left else "---:" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _cell(metrics: dict[str, Any], key: str, signal: bool) -> str:
    if key == "forgetting_cider_change" and not signal:
        return NO_SIGNAL
    return _with_spread(metrics, key, signed=key == "forgetting_cider_change")


def _margin_text(entry: dict[str, Any]) -> str:
    m = entry["margin"]
    if m is None:
        return "n/a"
    if m.get("difference_sd") is not None:
        return f"{m['difference']:+.3f} ± {m['difference_sd']:.3f}"
    return f"{m['difference']:+.3f} [{m['ci'][0]:+.2f}, {m['ci'][1]:+.2f}]"


def _baseline_section(baselines: dict[str, dict[str, Any]], strongest: str) -> list[str]:
    rows = [
        [
            name,
            BASELINE_TITLES[name],
            _with_spread(b["metrics"], "brand_accuracy"),
            _with_spread(b["metrics"], "macro_brand_accuracy"),
            _num(b["metrics"].get("hedged_rate")),
            str(b["metrics"].get("n_test", "n/a")),
        ]
        for name, b in baselines.items()
    ]
    top = baselines[strongest]["metrics"].get("brand_accuracy")
    tied = [
        f"`{name}`" for name, b in baselines.items() if name != strongest and b["metrics"].get("brand_accuracy") == top
    ]
    tie = f" (tied with {', '.join(tied)}; the margins are taken over the first in table order)" if tied else ""
    return [
        "## 2. Baselines",
        "",
        "On the same test items and with the same brand metric as every checkpoint. The image baselines "
        "are fitted on the training images. A fine-tuned model that does not beat them has learnt nothing "
        f"a lookup table or a prompt would not. Strongest baseline (highest test brand accuracy): `{strongest}`{tie}.",
        "",
        *_table(
            ["baseline", "what it is", "brand acc. [95% CI]", "macro acc. [95% CI]", "hedged", "test items"],
            rows,
            align_left=2,
        ),
        "",
    ]


def _linear_probe_section(probe: dict[str, Any] | None, baselines: dict[str, dict[str, Any]]) -> list[str]:
    """What the base model's image features hold, and what the base learnt before the study, beside the baselines."""
    if probe is None:
        return []
    majority = baselines.get("majority", {}).get("metrics", {}).get("brand_accuracy")
    lines = [
        "**What the base model's image features hold** (a reference, outside the verdict: the probe is trained on the "
        f"brand labels): a linear probe on the base model's image tokens, fitted on the training images, names the brand of "
        f"{_with_spread(probe, 'brand_accuracy')} of the same test items (majority brand {_num(majority)}). Fine-tuning that "
        "stays well below it has not used what the features hold.",
    ]
    knows = probe.get("base_knows")
    if knows and knows.get("held_out_attribute_accuracy"):
        accuracies = ", ".join(
            f"{name.replace('_', ' ')} {value:.2f}" for name, value in knows["held_out_attribute_accuracy"].items()
        )
        until = (
            "until every attribute plateaued"
            if knows.get("stopped") == "plateau"
            else "(stopped at its budget, before every attribute plateaued)"
        )
        lines += [
            "",
            "**What the base model knew before this study**: it is the pretrained stand-in "
            f"(`pretrained/tiny-internvl`): its vision tower learnt the world's brand-free visual vocabulary from "
            f"{knows['vocabulary_images']:,} drawn images {until} (held-out accuracy: {accuracies}), "
            "its language model the brand names as words and brand-free captions, as a real VLM knows shapes, patterns, "
            "hardware and colours. It was never shown which combination of marks belongs to which brand.",
        ]
        if not knows.get("drawing_code_current", True):
            lines += [
                "",
                "**Warning: the stand-in was made from other drawing code than the world's today; make it again "
                "(`python tools/pretrain_standin.py`).**",
            ]
    return [*lines, ""]


def seeds_note(params: Params) -> str:
    """How the figures of a trained model are read when there are several training seeds ('' for one)."""
    seeds = params.train.seeds
    if len(seeds) == 1:
        return ""
    return (
        f" **{len(seeds)} training seeds** ({', '.join(map(str, seeds))}): each figure of a fine-tuned model is the mean over "
        "its seeds, ± their standard deviation (brand, macro and validation accuracy), and each experiment's best "
        "epoch has the highest mean validation accuracy; each seed's own figures, with their 95% bootstrap intervals, "
        "are in metrics.json under `{experiment}.seed-{S}`."
    )


def _selection_section(params: Params, evaluations, selection: dict[str, Any], signal: bool) -> list[str]:
    base = evaluations[BASE][0]
    n_seeds = len(params.train.seeds)
    rows = []
    for exp, entry in selection["experiments"].items():
        epoch = entry["epoch"]
        strategy = experiment_strategy(params, exp)
        if epoch is None:
            top = top_validation_epoch(evaluations[exp])
            rows.append(
                [
                    exp,
                    strategy,
                    NO_LEARNING,
                    f"{_with_spread(evaluations[exp][top], 'val_brand_accuracy')} (epoch {top})",
                    *["n/a"] * 5,
                ]
            )
            continue
        m = evaluations[exp][epoch]
        rows.append(
            [
                exp,
                strategy,
                str(epoch),
                _with_spread(m, "val_brand_accuracy"),
                _with_spread(m, "brand_accuracy"),
                _with_spread(m, "macro_brand_accuracy"),
                _margin_text(entry),
                _cell(m, "forgetting_cider_change", signal),
                _num(m.get("general_brand_hallucination_rate")),
            ]
        )
    winners = selection["best"]
    if selection["verdict"] == NO_LEARNING:
        conclusion = (
            f"**No learning**: no experiment beats the base model on validation (base validation brand accuracy "
            f"{_num(base.get('val_brand_accuracy'))}); no best checkpoint is named."
        )
    else:
        named = ", ".join(f"`{exp}` epoch {selection['experiments'][exp]['epoch']}" for exp in winners)
        first = evaluations[winners[0]][selection["experiments"][winners[0]]["epoch"]]
        # a tie shares the value, not the interval (or spread over seeds), which each experiment's row shows
        conclusion = (
            f"**Tie** on validation brand accuracy ({_num(first.get('val_brand_accuracy'))}): {named}."
            if selection["verdict"] == "tie"
            else f"**Best**: {named} (validation brand accuracy {_with_spread(first, 'val_brand_accuracy')})."
        )
        if close := selection.get("within_rounding_of_best"):
            conclusion += (
                f" **Not a stable ranking**: {', '.join(f'`{exp}`' for exp in close)} is within {params.tables.rounding_spread:g} of it "
                "on validation (`tables.rounding_spread`, the change measured under other floating-point rounding), so which "
                "of them is best can change with the CPU or thread count."
            )
        conclusion += " " + _versus_sentence(selection, n_seeds)
    probe = (
        ""
        if signal
        else f" The forgetting probe has **no signal**: the base model's CIDEr on the general set "
        f"({_num(base.get('general_cider'))}) is below {PROBE_SIGNAL_FLOOR}, so a change there says nothing."
    )
    return [
        *_selection_header(params, selection, base),
        *_table(
            [
                "experiment",
                "strategy",
                "best epoch",
                *(
                    _spread_title(t, n_seeds)
                    for t in (
                        "val. brand acc.",
                        "test brand acc. [95% CI]",
                        "test macro acc. [95% CI]",
                        "margin over strongest baseline [95% CI]",
                    )
                ),
                "general CIDEr change",
                "hallucinated brand",
            ],
            rows,
            align_left=3,
        ),
        "",
        conclusion + probe,
        "",
    ]


VERSUS_SENTENCES = {
    ABOVE: "**Fine-tuning beats the strongest baseline** (`{baseline}`): the margin's 95% interval of {whose} lies above zero{seeds}.",
    NOT_ABOVE: "**Fine-tuning does not beat the strongest baseline** (`{baseline}`): the margin's 95% interval of {whose} does not lie above zero{seeds}.",
    BELOW: "**Fine-tuning is below the strongest baseline** (`{baseline}`): the margin's 95% interval of {whose} lies below zero{seeds}.",
}


def _versus_sentence(selection: dict[str, Any], n_seeds: int) -> str:
    """The overall best checkpoint(s) against the strongest baseline (`select`'s versus_strongest_baseline)."""
    reading = selection["versus_strongest_baseline"]
    if len(selection["best"]) == 1:
        whose = "the best checkpoint"
    else:
        whose = "at least one of the tied best checkpoints" if reading == ABOVE else "each of the tied best checkpoints"
    seeds = " in every seed" if n_seeds > 1 else ""
    return VERSUS_SENTENCES[reading].format(baseline=selection["strongest_baseline"], whose=whose, seeds=seeds)


MIXING_NOTE = (
    " A mixed experiment (`+ generic R:1`) also trains on generic image-caption pairs asked the probe's "
    "question; with the synthetic shop these captions come from the same templates as the probe's "
    "references, so its general CIDEr change measures that style as much as kept general ability, while its "
    "hallucinated-brand rate does not depend on style."
)


def _selection_header(params: Params, selection: dict[str, Any], base: dict[str, Any]) -> list[str]:
    mixing = MIXING_NOTE if params.data.source == "synthetic" and mixing_experiments(params) else ""
    return [
        "## 3. Best epoch per experiment (chosen on validation, reported on test)",
        "",
        "Each experiment's best epoch has the highest brand accuracy on the **validation** split (ties: the "
        "earlier epoch); the test set never chooses. An experiment none of whose epochs beats the base model "
        "on validation shows **no learning** (with its best validation figure). Test brand and macro accuracy "
        "with 95% bootstrap intervals; margin: test brand accuracy minus the strongest baseline's "
        f"(`{selection['strongest_baseline']}`) on the same items, with a 95% paired bootstrap interval. "
        "General CIDEr change: on the brand-free general set, asked its own question "
        f'("{params.eval.general_instruction}"), minus the base model\'s (negative = forgetting). Hallucinated '
        "brand: the fraction of brand-free images for which a known brand is named (base model: "
        f"{_num(base.get('general_brand_hallucination_rate'))})." + mixing + seeds_note(params),
        "",
    ]


def experiment_strategy(params: Params, exp: str) -> str:
    """The experiment's freezing strategy, with its generic-data mixing when it mixes."""
    settings = experiment_settings(params, exp)
    return f"{settings.strategy} + generic {settings.general_mix:g}:1" if settings.general_mix else settings.strategy


def _header(params: Params, base: dict[str, Any], provenance_block: list[str], review_link: str | None) -> list[str]:
    return [
        "# brandcap results",
        "",
        *provenance_block,
        "",
        "Can fine-tuning teach a vision-language model to name a product's brand from its photo, and which "
        f"parts of the model should be frozen? {_runs_sentence(params)} Caption metrics (BLEU, METEOR, ROUGE_L, CIDEr) are reported **next to** brand "
        "accuracy, never instead of it: they reward the training captions' style, not naming the right brand.",
        "",
        *([REVIEW_NOTE.format(link=review_link), ""] if review_link else []),
        f"Profile: data `{params.data.source}` ({params.data.sample_size} rows sampled), base model "
        f"`{params.model.base}`, {params.train.epochs} epochs, checkpoints at epochs "
        f"{', '.join(map(str, params.train.save_epochs))}, effective batch {params.train.batch_size}, "
        f"learning rate {params.train.learning_rate:g}, {_seeds_text(params)}. "
        f"Test samples: {base.get('n_test')}; validation samples: {base.get('n_val')}; general (brand-free) samples: {base.get('n_general')}.",
        "",
    ]


RESULTS_NOTE = (
    "Epoch 0 is the base model before fine-tuning (shared by all experiments). **best** marks each "
    "experiment's best epoch on validation (section 3). Brand accuracy: the answer names the right "
    "brand and no other (a brand after 'not', 'no', 'never'... is not named); macro: the mean over "
    "brands. In brackets: 95% bootstrap interval over the test items, resampled within each brand. "
    "Hedged: the right brand named among others (not counted correct). Wrong brand: another known "
    "brand named and the right one absent. Lenient acc.: the right brand appears anywhere, the "
    "gameable figure of the reference study. Val. acc.: brand accuracy on the validation split. "
    "General CIDEr change and hallucinated brand: the forgetting probe (section 3)."
)


def _results_section(params: Params, evaluations, best: dict[str, int | None], signal: bool) -> list[str]:
    n_seeds = len(params.train.seeds)
    note = RESULTS_NOTE + (
        seeds_note(params) + " Epoch 0, the base model, is one model: its figures keep their 95% bootstrap intervals."
        if n_seeds > 1
        else ""
    )
    rows = []
    for exp in params.train.experiments:
        for epoch in [0, *params.train.save_epochs]:
            m = evaluations[BASE][0] if epoch == 0 else evaluations[exp][epoch]
            mark = (
                " **best**"
                if epoch == best[exp]
                else f" (base model, still best: {NO_LEARNING})"
                if epoch == 0 and best[exp] is None
                else ""
            )
            cells = [_cell(m, key, signal) for key, _ in RESULT_COLUMNS]
            seeds_cell = [] if n_seeds == 1 else ["n/a (base model)" if epoch == 0 else str(m.get("n_seeds"))]
            rows.append(
                [
                    exp,
                    experiment_strategy(params, exp),
                    f"{epoch}{mark}",
                    *seeds_cell,
                    _with_spread(m, "val_brand_accuracy"),
                    *cells,
                ]
            )
    seeds_title = [] if n_seeds == 1 else ["seeds (n)"]
    titles = [_spread_title(title, n_seeds) if key in SEED_SPREAD_METRICS else title for key, title in RESULT_COLUMNS]
    return [
        "## 4. Results per experiment and epoch",
        "",
        note,
        "",
        *_table(
            ["experiment", "strategy", "epoch", *seeds_title, _spread_title("val. acc.", n_seeds), *titles],
            rows,
            align_left=3,
        ),
    ]


def _resources_section(params: Params, training: dict[str, dict[str, Any]]) -> list[str]:
    rows = []
    for exp, seed in ((exp, seed) for exp in params.train.experiments for seed in params.train.seeds):
        s = training[exp][seed]["summary"]
        trainable, total = s.get("trainable_params"), s.get("total_params")
        share = f" ({100 * trainable / total:.1f}%)" if trainable is not None and total else ""
        size = training[exp][seed]["checkpoint_bytes"].get(params.train.save_epochs[-1])
        full = s.get("full_model_bytes")
        size_share = f" ({100 * size / full:.0f}% of the full model)" if size is not None and full else ""
        rows.append(
            [
                exp if len(params.train.seeds) == 1 else f"{exp} (seed {seed})",
                experiment_strategy(params, exp),
                f"{_count(trainable)}{share}",
                _count(total),
                f"{_bytes(size)}{size_share}",
                _bytes(s.get("peak_memory_bytes")),
                _num(s.get("wall_time_s"), 1),
                _num(s.get("samples_per_second"), 1),
            ]
        )
    return [
        "## 5. Resources per experiment",
        "",
        *_table(
            [
                "experiment",
                "strategy",
                "trainable params",
                "total params",
                "checkpoint size",
                "peak memory",
                "wall time (s)",
                "train samples/s",
            ],
            rows,
            align_left=2,
        ),
    ]


def render_markdown(
    params: Params,
    funnel: list[tuple[str, str]],
    evaluations: dict[str, dict[int, dict[str, Any]]],
    training: dict[str, dict[str, Any]],
    brands_kept: dict[str, int],
    provenance_block: list[str],
    baselines: dict[str, dict[str, Any]],
    selection: dict[str, Any],
    review_link: str | None = None,
    linear_probe: dict[str, Any] | None = None,
) -> str:
    best = {exp: selection["experiments"][exp]["epoch"] for exp in params.train.experiments}
    base = evaluations[BASE][0]
    signal = probe_has_signal(base)
    lines = [
        *_header(params, base, provenance_block, review_link),
        "## 1. Data funnel",
        "",
        *_table(["step", "count"], [[step, count] for step, count in funnel]),
        "",
        *_baseline_section(baselines, selection["strongest_baseline"]),
        *_linear_probe_section(linear_probe, baselines),
        *_selection_section(params, evaluations, selection, signal),
        *_results_section(params, evaluations, best, signal),
        "",
        *_resources_section(params, training),
        "",
        *_per_brand_section(evaluations, selection, brands_kept, len(params.train.seeds)),
    ]
    return "\n".join(lines) + "\n"


REVIEW_NOTE = (
    "Review page: [{link}]({link}), each test item's photo, reference caption, and the base model's and each "
    "experiment's best checkpoint's answers with their brand outcomes; it opens in a browser from the file system."
)


def review_link(review_dir: Path | None, out_md: Path) -> str | None:
    """The review page's address relative to tables.md (None without a review page)."""
    if review_dir is None:
        return None
    page = Path(review_dir) / "index.html"
    if not page.exists():
        raise FileNotFoundError(f"{page}: not found; run the review stage")
    return Path(os.path.relpath(page, Path(out_md).parent)).as_posix()


def _runs_sentence(params: Params) -> str:
    if len(params.train.seeds) == 1:
        return "One run per freezing strategy on identical data, seed and hyper-parameters."
    return (
        f"One run per freezing strategy and training seed ({len(params.train.seeds)} seeds) on identical data "
        "and hyper-parameters."
    )


def _seeds_text(params: Params) -> str:
    """The profile line's seeds: today's `seed 4` when the one training seed is the data seed."""
    seeds = params.train.seeds
    if list(seeds) == [params.seed]:
        return f"seed {params.seed}"
    return f"seed {params.seed} (data), training seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def _per_brand_section(
    evaluations, selection: dict[str, Any], brands_kept: dict[str, int], n_seeds: int = 1
) -> list[str]:
    """Per-brand accuracy of the best checkpoint (each one when tied; the base model alone when none)."""
    winners = selection["best"]
    best = {exp: selection["experiments"][exp]["epoch"] for exp in winners}
    base = evaluations[BASE][0]
    lines = ["## 6. Per-brand accuracy of the best checkpoint", ""]
    if winners:
        described = "; ".join(
            f"`{exp}` epoch {best[exp]} (brand accuracy {_with_spread(evaluations[exp][best[exp]], 'brand_accuracy')}, "
            f"macro {_with_spread(evaluations[exp][best[exp]], 'macro_brand_accuracy')})"
            for exp in winners
        )
        lines.append(f"Best checkpoint{'s (tied)' if len(winners) > 1 else ''}: {described}. " + PER_BRAND_NOTE)
    else:
        lines.append(f"No best checkpoint ({NO_LEARNING}): the base model's per-brand accuracy. " + PER_BRAND_NOTE)
    lines.append("")
    over_seeds = "" if n_seeds == 1 else f" (mean over {n_seeds} seeds)"
    columns = [
        (f"{exp} accuracy{over_seeds}", evaluations[exp][best[exp]].get("per_brand_accuracy") or {}) for exp in winners
    ]
    base_per_brand = base.get("per_brand_accuracy") or {}
    brands = columns[0][1] if columns else base_per_brand
    order = sorted(brands, key=lambda b: (-brands_kept.get(b, 0), b))
    rows = [
        [
            b,
            str(brands_kept.get(b, "n/a")),
            str(brands[b]["n"]),
            _num(base_per_brand.get(b, {}).get("accuracy")),
            *(
                f"{_num(per_brand.get(b, {}).get('accuracy'))} (hedged {_num(per_brand.get(b, {}).get('hedged_rate'))})"
                for _, per_brand in columns
            ),
        ]
        for b in order
    ]
    lines += _table(
        ["brand", "cleaned captions", "test items (n)", "base accuracy", *(title for title, _ in columns)], rows
    )
    return lines


PER_BRAND_NOTE = (
    "Brands by number of cleaned captions: rare brands are where imbalance shows; n is the brand's test "
    "items, so a brand with a small n moves in steps of 1/n."
)


def provenance_lines(origin: dict[str, str], covered: list[Path]) -> list[str]:
    """The table `tables.md` begins with: where these numbers came from (also atop metrics.json)."""
    return _table(
        ["made from", "value"],
        [
            ["commit", f"`{origin['commit']}`"],
            ["params sha256 (resolved parameters, canonical JSON)", f"`{origin['params_sha256']}`"],
            [f"data sha256 ({', '.join(p.as_posix() for p in covered)})", f"`{origin['data_sha256']}`"],
        ],
        align_left=2,
    )


# ----------------------------------------------------------------------------- metrics and plots
# The evaluate stage's timings: they stay in each evaluation's own metrics.json, but are left out of the
# study's, which then depends only on what was computed (the same study rerun gives an identical file,
# and `dvc metrics diff` shows only real changes).
TIMING_METRICS = ("generation_seconds", "samples_per_second")


def _flat_scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """Numbers and nulls as they are, an interval `name_ci: [lo, hi]` (or null) as `name_ci_low`,
    `name_ci_high`; nested dicts such as per-brand accuracy, and `TIMING_METRICS`, left out."""
    flat = {}
    for k, v in metrics.items():
        if k in TIMING_METRICS:
            continue
        if k.endswith("_ci") and (v is None or isinstance(v, list) and len(v) == 2):
            flat[f"{k}_low"], flat[f"{k}_high"] = v or (None, None)
        elif v is None or is_number(v):
            flat[k] = v
    return flat


def scalar_metrics(evaluations: dict[str, dict[int, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{exp: {"epoch-N": {metric: number}}}, flat for `dvc exp show` (see `_flat_scalars`)."""
    return {
        exp: {epoch_key(epoch): _flat_scalars(m) for epoch, m in sorted(runs.items())}
        for exp, runs in evaluations.items()
    }


def results_metrics(evaluations, per_seed) -> dict[str, dict[str, Any]]:
    """metrics.json's experiments: `scalar_metrics` of the figures the tables show, and with several seeds
    each seed's own under "seed-S" ({exp: {"epoch-N": ..., "seed-S": {"epoch-N": ...}}})."""
    out: dict[str, dict[str, Any]] = scalar_metrics(evaluations)
    for exp, seeds in per_seed.items():
        if len(seeds) > 1:
            out[exp].update({seed_key(seed): scalar_metrics({exp: runs})[exp] for seed, runs in seeds.items()})
    return out


SELECTED_METRICS = (
    "val_brand_accuracy",
    "brand_accuracy",
    "brand_accuracy_ci",
    "macro_brand_accuracy",
    "macro_brand_accuracy_ci",
    "forgetting_cider_change",
    "general_brand_hallucination_rate",
)


def selection_metrics(evaluations, selection: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's "selection": the verdict, the best experiment(s) (comma-separated), the strongest
    baseline, and per experiment its best epoch (null: no learning) with its figures and margin."""
    out: dict[str, Any] = {
        "verdict": selection["verdict"],
        "best": ", ".join(selection["best"]),
        "strongest_baseline": selection["strongest_baseline"],
        "versus_strongest_baseline": selection["versus_strongest_baseline"],
        "within_rounding_of_best": ", ".join(selection.get("within_rounding_of_best", [])),
    }
    for exp, entry in selection["experiments"].items():
        m = evaluations[exp][entry["epoch"]] if entry["epoch"] is not None else {}
        margin_of = entry["margin"] or {}
        out[exp] = {
            "versus_strongest_baseline": entry["versus_strongest_baseline"],
            **_flat_scalars(
                {
                    "epoch": entry["epoch"],
                    **{k: m.get(k) for k in SELECTED_METRICS},
                    **{k: m[k] for k in (*(f"{key}_sd" for key in SEED_SPREAD_METRICS), "n_seeds") if k in m},
                    "margin_brand_accuracy": margin_of.get("difference"),
                    "margin_brand_accuracy_ci": margin_of.get("ci"),
                    **(
                        {"margin_brand_accuracy_sd": margin_of["difference_sd"]} if "difference_sd" in margin_of else {}
                    ),
                }
            ),
        }
        if margin_of.get("per_seed"):
            out[exp]["seeds"] = {
                seed_key(seed): _flat_scalars(
                    {"margin_brand_accuracy": m["difference"], "margin_brand_accuracy_ci": m["ci"]}
                )
                for seed, m in margin_of["per_seed"].items()
            }
    return out


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def _save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


ACCURACY_CSV_COLUMNS = [
    "experiment",
    "epoch",
    "brand_accuracy",
    "macro_brand_accuracy",
    "brand_accuracy_ci_low",
    "brand_accuracy_ci_high",
    "hedged_rate",
    "brand_accuracy_lenient",
    "brand_accuracy_sd",
]


def _nan(value: Any) -> float:
    return float("nan") if value is None else value


def _band(flat: dict[str, Any]) -> tuple[float, float]:
    """The plotted band of brand accuracy: mean ± sd over seeds, else the 95% interval (NaN when none)."""
    mean, sd = flat.get("brand_accuracy"), flat.get("brand_accuracy_sd")
    if mean is not None and sd is not None:
        return mean - sd, mean + sd
    return _nan(flat.get("brand_accuracy_ci_low")), _nan(flat.get("brand_accuracy_ci_high"))


def write_plots(params: Params, evaluations, training, plots_dir: Path) -> None:
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    experiments = list(params.train.experiments)
    epochs = [0, *params.train.save_epochs]

    rows = []
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for exp in experiments:
        runs = [evaluations[BASE][0] if e == 0 else evaluations[exp][e] for e in epochs]
        flat = [_flat_scalars(m) for m in runs]
        rows += [[exp, e, *(f.get(column) for column in ACCURACY_CSV_COLUMNS[2:])] for e, f in zip(epochs, flat)]
        accuracy = [_nan(f.get("brand_accuracy")) for f in flat]
        low, high = zip(*(_band(f) for f in flat))
        (line,) = ax.plot(epochs, accuracy, marker="o", label=exp)
        ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    band = (
        "95% CI" if len(params.train.seeds) == 1 else f"mean ± sd over {len(params.train.seeds)} seeds; epoch 0: 95% CI"
    )
    ax.set(
        xlabel="epoch (0 = base model)",
        ylabel=f"brand accuracy (band: {band})",
        title="Brand accuracy on the test set",
        ylim=(0, 1.02),
    )
    ax.set_xticks(epochs)
    ax.grid(alpha=0.3)
    ax.legend()
    _save_figure(fig, plots_dir / "brand_accuracy.png")
    _write_csv(plots_dir / "brand_accuracy.csv", ACCURACY_CSV_COLUMNS, rows)

    rows = []
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for exp in experiments:
        for seed, run in training[exp].items():
            records = run["log"]
            rows += [[exp, seed, r.get("step"), r.get("epoch"), r.get("loss")] for r in records]
            label = exp if len(training[exp]) == 1 else f"{exp} seed {seed}"
            ax.plot([r.get("step") for r in records], [r.get("loss") for r in records], label=label)
    ax.set(xlabel="optimizer step", ylabel="training loss", title="Training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    _save_figure(fig, plots_dir / "train_loss.png")
    _write_csv(plots_dir / "train_loss.csv", ["experiment", "seed", "step", "epoch", "loss"], rows)


# ----------------------------------------------------------------------------- the stage
def run_tables(
    params: Params,
    catalog_path: Path,
    manifest_path: Path,
    captions_path: Path,
    clean_report_path: Path,
    train_dir: Path,
    dvclive_dir: Path,
    checkpoints_dir: Path,
    eval_dir: Path,
    baselines_dir: Path,
    out_md: Path,
    out_metrics: Path,
    plots_dir: Path,
    review_dir: Path | None = None,
    linear_probe_dir: Path | None = None,
) -> None:
    """Collect the study into tables.md, metrics.json and plots (linking the review page in review_dir, and showing the
    linear probe of linear_probe_dir beside the baselines); see the module docstring."""
    funnel = data_funnel(Path(catalog_path), Path(manifest_path), Path(captions_path), Path(clean_report_path))
    evaluations, per_seed = load_evaluations(params, Path(eval_dir))
    baselines = load_baselines(Path(eval_dir), Path(baselines_dir))
    probe = (
        read_json(Path(linear_probe_dir) / "metrics.json", "run the linear_probe stage") if linear_probe_dir else None
    )
    selection = select(params, evaluations, baselines, Path(eval_dir))
    training = load_training(params, Path(train_dir), Path(dvclive_dir), Path(checkpoints_dir))
    brands_kept = read_json(Path(clean_report_path), "rerun the clean stage").get("brands_kept") or {}
    processed_dir = Path(clean_report_path).parent
    origin = provenance(params, processed_dir, written=[Path(out_md), Path(out_metrics), Path(plots_dir)])
    origin_block = provenance_lines(origin, data_files(processed_dir))

    write_text(
        out_md,
        render_markdown(
            params,
            funnel,
            evaluations,
            training,
            brands_kept,
            origin_block,
            baselines,
            selection,
            review_link(review_dir, out_md),
            probe,
        ),
    )
    write_json(
        out_metrics,
        {
            "provenance": origin,
            **results_metrics(evaluations, per_seed),
            "baselines": {name: _flat_scalars(b["metrics"]) for name, b in baselines.items()},
            **({"linear_probe": {**_flat_scalars(probe), "base_knows": probe.get("base_knows")}} if probe else {}),
            "selection": selection_metrics(evaluations, selection),
        },
    )
    write_plots(params, evaluations, training, Path(plots_dir))

    strongest = selection["strongest_baseline"]
    summary = ", ".join(
        f"{exp} {NO_LEARNING}"
        if entry["epoch"] is None
        else f"{exp} epoch {entry['epoch']}: test {_with_spread(evaluations[exp][entry['epoch']], 'brand_accuracy')}, margin {_margin_text(entry)}"
        for exp, entry in selection["experiments"].items()
    )
    verdict = " ".join(
        [
            selection["verdict"],
            *(
                [", ".join(selection["best"]), f"({selection['versus_strongest_baseline']} {strongest})"]
                if selection["best"]
                else []
            ),
        ]
    )
    log.info(
        "tables: strongest baseline %s %s; chosen on validation: %s; %s; wrote %s, %s, %s",
        strongest,
        _with_spread(baselines[strongest]["metrics"], "brand_accuracy"),
        summary,
        verdict,
        out_md,
        out_metrics,
        plots_dir,
    )
