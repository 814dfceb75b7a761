"""tables stage: the data funnel, baselines, the best epoch per experiment (chosen on validation), results per epoch, resources, per-brand accuracy, plots, a link to the review page.

python workflow/scripts/tables.py --params params.yaml --catalog data/raw/catalog.parquet --manifest data/raw/manifest.parquet --captions data/interim/captions.jsonl --clean-report data/processed/clean_report.json --train-dir results/train --dvclive-dir results/dvclive --checkpoints results/checkpoints --eval-dir results/eval --baselines results/baselines --linear-probe results/linear_probe --review results/review --tables results/tables.md --metrics results/metrics.json --plots results/plots --log logs/tables.log
"""

from brandcap.running.stage import run_stage, stage_args
from brandcap.stages.tables import run_tables

if __name__ == "__main__":
    args = stage_args(
        __doc__,
        "catalog",
        "manifest",
        "captions",
        "clean-report",
        "train-dir",
        "dvclive-dir",
        "checkpoints",
        "eval-dir",
        "baselines",
        "linear-probe",
        "review",
        "tables",
        "metrics",
        "plots",
    )
    run_stage(
        "tables",
        args,
        lambda params: run_tables(
            params,
            args.catalog,
            args.manifest,
            args.captions,
            args.clean_report,
            args.train_dir,
            args.dvclive_dir,
            args.checkpoints,
            args.eval_dir,
            args.baselines,
            args.tables,
            args.metrics,
            args.plots,
            args.review,
            args.linear_probe,
        ),
    )
