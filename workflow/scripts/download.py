"""download stage: fetch, validate and normalise every product image; record each failure's reason.

    python workflow/scripts/download.py --params params.yaml --catalog data/raw/catalog.parquet --images data/raw/images --manifest data/raw/manifest.parquet --resume .resume/download --log logs/download.log

Every failed image is also listed in logs/download.failures.csv (beside --log).
"""

from brandcap.running.stage import run_stage, stage_args
from brandcap.stages.download import run_download

if __name__ == "__main__":
    args = stage_args(__doc__, "catalog", "images", "manifest", "resume")
    # beside the log: Snakemake deletes a failed job's outputs (the manifest), never its log
    failure_report = args.log.with_suffix(".failures.csv") if args.log else None
    run_stage(
        "download",
        args,
        lambda params: run_download(params, args.catalog, args.images, args.manifest, args.resume, failure_report),
    )
