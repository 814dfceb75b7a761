"""base_model stage: the pretrained model (a tiny InternVL built and pretrained here, or an HF checkpoint).

python workflow/scripts/base_model.py --params params.yaml --catalog data/raw/catalog.parquet --out models/base --log logs/base_model.log
"""

from brandcap.running.stage import run_stage, stage_args
from brandcap.stages.base_model import run_base_model

if __name__ == "__main__":
    args = stage_args(__doc__, "catalog", "out")
    run_stage("base_model", args, lambda params: run_base_model(params, args.catalog, args.out))
