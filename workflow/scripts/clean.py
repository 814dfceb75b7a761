"""clean stage: drop abnormal captions, fix cut-offs and brand case, filter rare brands, split train/validation/test.

python workflow/scripts/clean.py --params params.yaml --captions data/interim/captions.jsonl --out data/processed --log logs/clean.log
"""

from brandcap.running.stage import run_stage, stage_args
from brandcap.stages.clean import run_clean

if __name__ == "__main__":
    args = stage_args(__doc__, "captions", "out")
    run_stage("clean", args, lambda params: run_clean(params, args.captions, args.out))
