"""evaluate stage: generate captions for the test, validation and general sets with one checkpoint (or the base model) and score them.

    python workflow/scripts/evaluate.py --params params.yaml --base models/base --checkpoint results/checkpoints/freeze_llm/seed-4/epoch-2 --test data/processed/test.jsonl --val data/processed/val.jsonl --general data/raw/general/general.jsonl --out results/eval/freeze_llm/seed-4/epoch-2 --resume .resume/eval/freeze_llm/seed-4/epoch-2 --log logs/evaluate/freeze_llm/seed-4/epoch-2.log

Without --checkpoint it evaluates the base model (epoch 0). With --prompted (and no --checkpoint)
it is the prompt-only baseline: the base model asked eval.prompted_instruction with the candidate
brands (results/eval/base/prompted, no --general).
"""

from pathlib import Path

from brandcap.launch import launch_stage
from brandcap.stage import run_stage, stage_args
from brandcap.stages.evaluate import run_evaluate


def evaluate_stage(args, params):
    launch_stage(1, distributed=False)  # on GPUs: this job's own GPU (brandcap.gpus), not always cuda:0
    run_evaluate(params, args.base, args.checkpoint, args.test, args.general, args.out, args.resume,
                 val_jsonl=args.val, prompted=args.prompted)


def _options(parser):
    parser.add_argument("--checkpoint", type=Path, default=None, help="a checkpoint dir; omit for the base model")
    parser.add_argument("--val", type=Path, default=None, help="the validation set (the best epoch is chosen on it); omit for none")
    parser.add_argument("--general", type=Path, default=None, help="the brand-free general set (forgetting probe); omit for none")
    parser.add_argument("--prompted", action="store_true", help="the prompt-only baseline: ask the base model with the candidate brands")


if __name__ == "__main__":
    args = stage_args(__doc__, "base", "test", "out", "resume", extra=_options)
    run_stage(f"evaluate[{args.out}]", args, lambda params: evaluate_stage(args, params))
