"""baselines stage: the majority brand and image nearest neighbours, fitted on the training images, scored on the test set.

python workflow/scripts/baselines.py --params params.yaml --train data/processed/train.jsonl --test data/processed/test.jsonl --out results/baselines --log logs/baselines.log
"""

from brandcap.running.stage import run_stage, stage_args
from brandcap.stages.baselines import run_baselines

if __name__ == "__main__":
    args = stage_args(__doc__, "train", "test", "out")
    run_stage("baselines", args, lambda params: run_baselines(params, args.train, args.test, args.out))
