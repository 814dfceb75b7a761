"""evaluate stage: generate captions for the test, validation and general sets with every checkpoint of a training run (or the base model) and score them.

    python workflow/scripts/evaluate.py --params params.yaml --base models/base --checkpoints results/checkpoints/freeze_llm/seed-4 --test data/processed/test.jsonl --val data/processed/val.jsonl --general data/raw/general/general.jsonl --out results/eval/freeze_llm/seed-4 --resume .resume/eval/freeze_llm/seed-4 --log logs/evaluate/freeze_llm/seed-4.log

With --checkpoints it scores the run's epoch-N checkpoint of every epoch in train.save_epochs, in
order, in this one process, into --out/epoch-N. Without it evaluates the base model (epoch 0)
into --out. With --prompted (and no --checkpoints) it is the prompt-only baseline: the base model
asked eval.prompted_instruction with the candidate brands (results/eval/base/prompted, no --general).
"""

from pathlib import Path

from brandcap.running.launch import launch_stage
from brandcap.running.stage import run_stage, stage_args
from brandcap.stages.evaluate import run_evaluate


def evaluate_stage(args, params):
    launch_stage(
        1, distributed=False, resume_dir=args.resume
    )  # on GPUs: this job's own GPU (brandcap.running.gpus), not always cuda:0
    run_evaluate(
        params,
        args.base,
        args.checkpoints,
        args.test,
        args.general,
        args.out,
        args.resume,
        val_jsonl=args.val,
        prompted=args.prompted,
    )


def _options(parser):
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=None,
        help="a training run's checkpoints folder (results/checkpoints/EXP/seed-S), each epoch-N of train.save_epochs "
        "scored into --out/epoch-N; omit for the base model",
    )
    parser.add_argument(
        "--val", type=Path, default=None, help="the validation set (the best epoch is chosen on it); omit for none"
    )
    parser.add_argument(
        "--general", type=Path, default=None, help="the brand-free general set (forgetting probe); omit for none"
    )
    parser.add_argument(
        "--prompted", action="store_true", help="the prompt-only baseline: ask the base model with the candidate brands"
    )


if __name__ == "__main__":
    args = stage_args(__doc__, "base", "test", "out", "resume", extra=_options)
    run_stage(f"evaluate[{args.out}]", args, lambda params: evaluate_stage(args, params))
