"""general_train_set stage: the generic image-caption pairs that train.general_mix mixes into training, disjoint from the forgetting probe.

python workflow/scripts/general_train_set.py --params params.yaml --probe data/raw/general/general.jsonl --out data/raw/general_train --log logs/general_train_set.log
"""

from brandcap.running.stage import run_stage, stage_args
from brandcap.stages.general_train_set import run_general_train_set

if __name__ == "__main__":
    args = stage_args(__doc__, "probe", "out")
    run_stage("general_train_set", args, lambda params: run_general_train_set(params, args.probe, args.out))
