"""review stage: a static page (results/review/index.html) with each test item's photo, reference, the base model's and the best checkpoint's answers.

python workflow/scripts/review.py --params params.yaml --test data/processed/test.jsonl --val data/processed/val.jsonl --eval-dir results/eval --out results/review --log logs/review.log
"""

from brandcap.running.stage import run_stage, stage_args
from brandcap.stages.review import run_review

if __name__ == "__main__":
    args = stage_args(__doc__, "test", "val", "eval-dir", "out")
    run_stage("review", args, lambda params: run_review(params, args.test, args.val, args.eval_dir, args.out))
