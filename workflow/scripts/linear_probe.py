"""linear_probe stage: a linear probe of the base model's image features, fitted on the training images, scored on the test set.

python workflow/scripts/linear_probe.py --params params.yaml --base models/base --train data/processed/train.jsonl --test data/processed/test.jsonl --out results/linear_probe --log logs/linear_probe.log
"""

from brandcap.running.stage import run_stage, stage_args
from brandcap.stages.linear_probe import run_linear_probe

if __name__ == "__main__":
    args = stage_args(__doc__, "base", "train", "test", "out")
    run_stage("linear_probe", args, lambda params: run_linear_probe(params, args.base, args.train, args.test, args.out))
