"""catalog stage: read the product table (synthetic shop, HF dataset or local parquet/CSV) and sample it.

python workflow/scripts/catalog.py --params params.yaml --catalog data/raw/catalog.parquet --shop data/raw/shop --log logs/catalog.log
"""

from brandcap.running.stage import run_stage, stage_args
from brandcap.stages.catalog import run_catalog

if __name__ == "__main__":
    args = stage_args(__doc__, "catalog", "shop")
    run_stage("catalog", args, lambda params: run_catalog(params, args.catalog, args.shop))
