"""train stage: fine-tune one experiment (freezing strategy) and keep checkpoints at train.save_epochs.

    python workflow/scripts/train.py --params params.yaml --experiment freeze_llm --base models/base --train data/processed/train.jsonl --checkpoints results/checkpoints/freeze_llm --train-log results/train/freeze_llm --resume .resume/train/freeze_llm --log logs/train/freeze_llm.log
"""

from brandcap.stage import run_stage, stage_args
from brandcap.train import run_train

if __name__ == "__main__":
    args = stage_args(
        __doc__, "base", "train", "checkpoints", "train-log", "resume",
        extra=lambda p: p.add_argument("--experiment", required=True, help="a key of train.experiments"),
    )
    run_stage(
        f"train[{args.experiment}]", args,
        lambda params: run_train(params, args.experiment, args.base, args.train, args.checkpoints, args.train_log, args.resume),
    )
