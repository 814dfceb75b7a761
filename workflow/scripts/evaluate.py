"""evaluate stage: generate captions for the test and general sets with one checkpoint (or the base model) and score them.

    python workflow/scripts/evaluate.py --params params.yaml --base models/base --checkpoint results/checkpoints/freeze_llm/epoch-2 --test data/processed/test.jsonl --general data/raw/general/general.jsonl --out results/eval/freeze_llm/epoch-2 --resume .resume/eval/freeze_llm/epoch-2 --log logs/evaluate/freeze_llm/epoch-2.log

Without --checkpoint it evaluates the base model (epoch 0).
"""

from pathlib import Path

from brandcap.evaluate import run_evaluate
from brandcap.stage import run_stage, stage_args

if __name__ == "__main__":
    args = stage_args(
        __doc__, "base", "test", "general", "out", "resume",
        extra=lambda p: p.add_argument("--checkpoint", type=Path, default=None, help="a checkpoint dir; omit for the base model"),
    )
    run_stage(
        f"evaluate[{args.out}]", args,
        lambda params: run_evaluate(params, args.base, args.checkpoint, args.test, args.general, args.out, args.resume),
    )
