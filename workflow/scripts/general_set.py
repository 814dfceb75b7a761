"""general_set stage: the brand-free held-out set of the forgetting probe.

python workflow/scripts/general_set.py --params params.yaml --out data/raw/general --log logs/general_set.log
"""

from brandcap.running.stage import run_stage, stage_args
from brandcap.stages.general_set import run_general_set

if __name__ == "__main__":
    args = stage_args(__doc__, "out")
    run_stage("general_set", args, lambda params: run_general_set(params, args.out))
