"""tables stage: everything the study produced, in one readable page, one DVC metrics file and plots.

    from brandcap.tables import run_tables
    run_tables(params, Path("data/raw/catalog.parquet"), Path("data/raw/manifest.parquet"),
               Path("data/interim/captions.jsonl"), Path("data/processed/clean_report.json"),
               Path("results/train"), Path("results/checkpoints"), Path("results/eval"),
               Path("results/tables.md"), Path("results/metrics.json"), Path("results/plots"))

Both `tables.md` and `metrics.json` begin with their provenance (`brandcap.provenance`): the
commit, the params hash and the data hash (the processed split files beside the clean report).

Reads `eval_dir/base/epoch-0/metrics.json` (the base model, shared by all experiments),
`eval_dir/{exp}/epoch-{N}/metrics.json`, `train_dir/{exp}/{log.jsonl,summary.json}` and
`checkpoints_dir/{exp}/epoch-{N}/brandcap_checkpoint.json` for the experiments and epochs in
params, plus the data stages' outputs for the funnel. Writes (all atomically):
- `tables.md`: (1) data funnel, (2) metrics per experiment and epoch with the best epoch marked,
  brand and macro accuracy shown with their 95% bootstrap intervals (`0.812 [0.75, 0.87]`),
  (3) resources per experiment, (4) per-brand accuracy and n of the best checkpoint;
- `metrics.json`: `{"provenance": {commit, params_sha256, data_sha256}, exp: {"epoch-N": {metric: value}}}`
  with `"base": {"epoch-0": ...}`, scalar metrics only besides the provenance strings, an interval
  `[lo, hi]` as `{name}_low` and `{name}_high` (the DVC metrics file: `dvc exp show` lists it per
  experiment; `dvc exp show --drop provenance` hides the three provenance columns);
- `plots_dir/brand_accuracy.{png,csv}` (accuracy vs epoch, epoch 0 = the base model) and
  `plots_dir/train_loss.{png,csv}` (training loss vs step), the CSVs for `dvc plots show`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from brandcap.atomic import atomic_path, read_jsonl, write_json, write_text  # noqa: E402
from brandcap.params import Params  # noqa: E402
from brandcap.provenance import data_files, provenance  # noqa: E402

log = logging.getLogger(__name__)

BASE = "base"
CHECKPOINT_META = "brandcap_checkpoint.json"  # written by brandcap.checkpoints
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
]


# ----------------------------------------------------------------------------- reading
def _read_json(path: Path, fix: str) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; {fix}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); {fix}") from None


def epoch_key(epoch: int) -> str:
    return f"epoch-{epoch}"


def load_evaluations(params: Params, eval_dir: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """{"base": {0: metrics}, exp: {N: metrics}} with `forgetting_cider_change` added."""
    eval_dir = Path(eval_dir)
    evaluations: dict[str, dict[int, dict[str, Any]]] = {}
    runs = [(BASE, 0)] + [(exp, e) for exp in params.train.experiments for e in params.train.save_epochs]
    for exp, epoch in runs:
        path = eval_dir / exp / epoch_key(epoch) / "metrics.json"
        evaluations.setdefault(exp, {})[epoch] = _read_json(path, f"run the evaluate stage for {exp} epoch {epoch}")
    base_general = evaluations[BASE][0].get("general_cider")
    for runs_of_exp in evaluations.values():
        for m in runs_of_exp.values():
            general = m.get("general_cider")
            m["forgetting_cider_change"] = None if general is None or base_general is None else general - base_general
    return evaluations


def best_epoch(runs: dict[int, dict[str, Any]]) -> int:
    """The saved epoch with the highest brand accuracy; ties go to the lower test loss, then the earlier epoch."""

    def rank(epoch: int):
        m = runs[epoch]
        loss = m.get("test_loss")
        return (-(m.get("brand_accuracy") or 0.0), loss if loss is not None else float("inf"), epoch)

    return min((e for e in runs if e != 0), key=rank)


def load_training(params: Params, train_dir: Path, checkpoints_dir: Path) -> dict[str, dict[str, Any]]:
    """{exp: {"summary": summary.json, "log": [log.jsonl records], "checkpoint_bytes": {epoch: bytes}}}."""
    out = {}
    for exp in params.train.experiments:
        summary = _read_json(Path(train_dir) / exp / "summary.json", f"run the train stage for {exp}")
        log_path = Path(train_dir) / exp / "log.jsonl"
        records = read_jsonl(log_path) if log_path.exists() else []
        sizes = {int(e): b for e, b in (summary.get("checkpoint_bytes") or {}).items()}
        for epoch in params.train.save_epochs:
            meta_path = Path(checkpoints_dir) / exp / epoch_key(epoch) / CHECKPOINT_META
            if epoch not in sizes and meta_path.exists():
                sizes[epoch] = _read_json(meta_path, f"rerun the train stage for {exp}").get("saved_bytes")
        out[exp] = {"summary": summary, "log": records, "checkpoint_bytes": sizes}
    return out


def data_funnel(catalog_path: Path, manifest_path: Path, captions_path: Path, clean_report_path: Path) -> list[tuple[str, str]]:
    """(step, count) rows from the catalog to the train/test split."""
    catalog_rows = pq.ParquetFile(catalog_path).metadata.num_rows
    manifest = pd.read_parquet(manifest_path)
    if "status" not in manifest.columns:
        raise ValueError(f"{manifest_path}: no 'status' column; rerun the download stage")
    ok = int((manifest["status"] == "ok").sum())
    failed = manifest[manifest["status"] != "ok"]
    reasons = Counter(failed["reason"].fillna("unknown")) if "reason" in failed.columns else Counter()
    captions = read_jsonl(captions_path)
    captioned = sum(1 for c in captions if c.get("text"))
    report = _read_json(Path(clean_report_path), "rerun the clean stage")

    def why(counter: Counter | dict) -> str:
        items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        return ", ".join(f"{k} {v}" for k, v in items if v)

    rows = [("catalog rows", f"{catalog_rows}")]
    rows.append(("images downloaded", f"{ok}" + (f" (failed {len(failed)}: {why(reasons)})" if len(failed) else "")))
    rows.append(("captioned", f"{captioned}" + (f" (no caption {len(captions) - captioned})" if len(captions) > captioned else "")))
    rows.append(("clean stage input", f"{report.get('input')}"))
    for rule, n in (report.get("removed") or {}).items():
        rows.append((f"removed: {rule}", f"-{n}" if n else "0"))
    rows.append(("after the caption rules", f"{report.get('after_rules')} (cut-off endings trimmed: {report.get('trimmed')}, brand respelled: {report.get('brand_case_fixed')})"))
    kept, dropped = report.get("brands_kept") or {}, report.get("brands_dropped") or {}
    rows.append(("brands kept", f"{len(kept)} brands, {sum(kept.values())} captions"))
    rows.append(("brands dropped (too few captions)", f"{len(dropped)} brands, {sum(dropped.values())} captions"))
    rows.append(("train / test", f"{report.get('train')} / {report.get('test')}"))
    return rows


# ----------------------------------------------------------------------------- formatting
def _num(value: Any, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _with_ci(metrics: dict[str, Any], key: str, signed: bool = False) -> str:
    """`0.812 [0.75, 0.87]` when metrics has an interval `{key}_ci`, else the number alone."""
    ci = metrics.get(f"{key}_ci")
    value = _num(metrics.get(key), signed=signed)
    return f"{value} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and metrics.get(key) is not None else value


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


def render_markdown(
    params: Params,
    funnel: list[tuple[str, str]],
    evaluations: dict[str, dict[int, dict[str, Any]]],
    training: dict[str, dict[str, Any]],
    brands_kept: dict[str, int],
    provenance_block: list[str],
) -> str:
    experiments = list(params.train.experiments)
    best = {exp: best_epoch(evaluations[exp]) for exp in experiments}
    base = evaluations[BASE][0]
    lines = [
        "# brandcap results",
        "",
        *provenance_block,
        "",
        "Can fine-tuning teach a vision-language model to name a product's brand from its photo, and which "
        "parts of the model should be frozen? One run per freezing strategy on identical data, seed and "
        "hyper-parameters. Caption metrics (BLEU, METEOR, ROUGE_L, CIDEr) are reported **next to** brand "
        "accuracy, never instead of it: they reward the training captions' style, not naming the right brand.",
        "",
        f"Profile: data `{params.data.source}` ({params.data.sample_size} rows sampled), base model "
        f"`{params.model.base}`, {params.train.epochs} epochs, checkpoints at epochs "
        f"{', '.join(map(str, params.train.save_epochs))}, effective batch {params.train.batch_size}, "
        f"learning rate {params.train.learning_rate:g}, seed {params.seed}. "
        f"Test samples: {base.get('n_test')}; general (brand-free) samples: {base.get('n_general')}.",
        "",
        "## 1. Data funnel",
        "",
        *_table(["step", "count"], [[step, count] for step, count in funnel]),
        "",
        "## 2. Results per experiment and epoch",
        "",
        "Epoch 0 is the base model before fine-tuning (shared by all experiments). **best** marks each "
        "experiment's epoch with the highest brand accuracy. Brand accuracy: the answer names the right "
        "brand and no other (a brand after 'not', 'no', 'never'... is not named); macro: the mean over "
        "brands. In brackets: 95% bootstrap interval over the test items, resampled within each brand. "
        "Hedged: the right brand named among others (not counted correct). Wrong brand: another known "
        "brand named and the right one absent. Lenient acc.: the right brand appears anywhere, the "
        "gameable figure of the reference study. General CIDEr change: CIDEr on the general brand-free "
        "set minus the base model's (negative = forgetting).",
        "",
    ]
    rows = []
    for exp in experiments:
        strategy = params.train.experiments[exp].strategy
        for epoch in [0, *params.train.save_epochs]:
            m = evaluations[BASE][0] if epoch == 0 else evaluations[exp][epoch]
            mark = " **best**" if epoch == best[exp] else ""
            cells = [_with_ci(m, key, signed=key == "forgetting_cider_change") for key, _ in RESULT_COLUMNS]
            rows.append([exp, strategy, f"{epoch}{mark}", *cells])
    lines += _table(["experiment", "strategy", "epoch", *(title for _, title in RESULT_COLUMNS)], rows, align_left=3)

    lines += ["", "## 3. Resources per experiment", ""]
    rows = []
    for exp in experiments:
        s = training[exp]["summary"]
        trainable, total = s.get("trainable_params"), s.get("total_params")
        share = f" ({100 * trainable / total:.1f}%)" if trainable is not None and total else ""
        sizes = training[exp]["checkpoint_bytes"]
        size = sizes.get(params.train.save_epochs[-1])
        full = s.get("full_model_bytes")
        size_share = f" ({100 * size / full:.0f}% of the full model)" if size is not None and full else ""
        rows.append([
            exp,
            s.get("strategy", params.train.experiments[exp].strategy),
            f"{_count(trainable)}{share}",
            _count(total),
            f"{_bytes(size)}{size_share}",
            _bytes(s.get("peak_memory_bytes")),
            _num(s.get("wall_time_s"), 1),
            _num(s.get("samples_per_second"), 1),
        ])
    lines += _table(
        ["experiment", "strategy", "trainable params", "total params", "checkpoint size", "peak memory", "wall time (s)", "train samples/s"],
        rows, align_left=2,
    )

    best_exp = max(experiments, key=lambda e: (evaluations[e][best[e]].get("brand_accuracy") or 0.0, -experiments.index(e)))
    best_metrics = evaluations[best_exp][best[best_exp]]
    lines += [
        "",
        "## 4. Per-brand accuracy of the best checkpoint",
        "",
        f"Best checkpoint: `{best_exp}` epoch {best[best_exp]} (brand accuracy {_with_ci(best_metrics, 'brand_accuracy')}, "
        f"macro {_with_ci(best_metrics, 'macro_brand_accuracy')}). Brands by number of cleaned captions: "
        "rare brands are where imbalance shows; n is the brand's test items, so a brand with a small n "
        "moves in steps of 1/n.",
        "",
    ]
    per_brand = best_metrics.get("per_brand_accuracy") or {}
    base_per_brand = base.get("per_brand_accuracy") or {}
    order = sorted(per_brand, key=lambda b: (-brands_kept.get(b, 0), b))
    rows = [
        [
            b, str(brands_kept.get(b, "n/a")), str(per_brand[b]["n"]), _num(base_per_brand.get(b, {}).get("accuracy")),
            _num(per_brand[b]["accuracy"]), _num(per_brand[b].get("hedged_rate")),
        ]
        for b in order
    ]
    lines += _table(["brand", "cleaned captions", "test items (n)", "base accuracy", "best accuracy", "best hedged"], rows)
    return "\n".join(lines) + "\n"


def provenance_lines(origin: dict[str, str], covered: list[Path]) -> list[str]:
    """The table `tables.md` begins with: where these numbers came from (also atop metrics.json)."""
    return _table(["made from", "value"], [
        ["commit", f"`{origin['commit']}`"],
        ["params sha256 (resolved parameters, canonical JSON)", f"`{origin['params_sha256']}`"],
        [f"data sha256 ({', '.join(p.as_posix() for p in covered)})", f"`{origin['data_sha256']}`"],
    ], align_left=2)


# ----------------------------------------------------------------------------- metrics and plots
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flat_scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """Numbers and nulls as they are, an interval `name_ci: [lo, hi]` (or null) as `name_ci_low`,
    `name_ci_high`; nested dicts such as per-brand accuracy left out."""
    flat = {}
    for k, v in metrics.items():
        if k.endswith("_ci") and (v is None or isinstance(v, list) and len(v) == 2):
            flat[f"{k}_low"], flat[f"{k}_high"] = v or (None, None)
        elif v is None or _is_number(v):
            flat[k] = v
    return flat


def scalar_metrics(evaluations: dict[str, dict[int, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{exp: {"epoch-N": {metric: number}}}, flat for `dvc exp show` (see `_flat_scalars`)."""
    return {exp: {epoch_key(epoch): _flat_scalars(m) for epoch, m in sorted(runs.items())} for exp, runs in evaluations.items()}


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
    "experiment", "epoch", "brand_accuracy", "macro_brand_accuracy",
    "brand_accuracy_ci_low", "brand_accuracy_ci_high", "hedged_rate", "brand_accuracy_lenient",
]


def _nan(value: Any) -> float:
    return float("nan") if value is None else value


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
        accuracy, low, high = ([_nan(f.get(k)) for f in flat] for k in ("brand_accuracy", "brand_accuracy_ci_low", "brand_accuracy_ci_high"))
        (line,) = ax.plot(epochs, accuracy, marker="o", label=exp)
        ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set(xlabel="epoch (0 = base model)", ylabel="brand accuracy (band: 95% CI)", title="Brand accuracy on the test set", ylim=(0, 1.02))
    ax.set_xticks(epochs)
    ax.grid(alpha=0.3)
    ax.legend()
    _save_figure(fig, plots_dir / "brand_accuracy.png")
    _write_csv(plots_dir / "brand_accuracy.csv", ACCURACY_CSV_COLUMNS, rows)

    rows = []
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for exp in experiments:
        records = training[exp]["log"]
        rows += [[exp, r.get("step"), r.get("epoch"), r.get("loss")] for r in records]
        ax.plot([r.get("step") for r in records], [r.get("loss") for r in records], label=exp)
    ax.set(xlabel="optimizer step", ylabel="training loss", title="Training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    _save_figure(fig, plots_dir / "train_loss.png")
    _write_csv(plots_dir / "train_loss.csv", ["experiment", "step", "epoch", "loss"], rows)


# ----------------------------------------------------------------------------- the stage
def run_tables(
    params: Params,
    catalog_path: Path,
    manifest_path: Path,
    captions_path: Path,
    clean_report_path: Path,
    train_dir: Path,
    checkpoints_dir: Path,
    eval_dir: Path,
    out_md: Path,
    out_metrics: Path,
    plots_dir: Path,
) -> None:
    """Collect the study into tables.md, metrics.json and plots; see the module docstring."""
    funnel = data_funnel(Path(catalog_path), Path(manifest_path), Path(captions_path), Path(clean_report_path))
    evaluations = load_evaluations(params, Path(eval_dir))
    training = load_training(params, Path(train_dir), Path(checkpoints_dir))
    brands_kept = _read_json(Path(clean_report_path), "rerun the clean stage").get("brands_kept") or {}
    processed_dir = Path(clean_report_path).parent
    origin = provenance(params, processed_dir, written=[Path(out_md), Path(out_metrics), Path(plots_dir)])
    origin_block = provenance_lines(origin, data_files(processed_dir))

    write_text(out_md, render_markdown(params, funnel, evaluations, training, brands_kept, origin_block))
    write_json(out_metrics, {"provenance": origin, **scalar_metrics(evaluations)})
    write_plots(params, evaluations, training, Path(plots_dir))

    base_acc = _with_ci(evaluations[BASE][0], "brand_accuracy")
    best = {exp: best_epoch(evaluations[exp]) for exp in params.train.experiments}
    summary = ", ".join(f"{exp} {_with_ci(evaluations[exp][e], 'brand_accuracy')} (epoch {e})" for exp, e in best.items())
    log.info("tables: base brand accuracy %s; best per experiment: %s; wrote %s, %s, %s", base_acc, summary, out_md, out_metrics, plots_dir)
