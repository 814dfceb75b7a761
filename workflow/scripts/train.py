"""train stage: fine-tune one experiment (freezing strategy) with one training seed and keep checkpoints at train.save_epochs.

    python workflow/scripts/train.py --params params.yaml --experiment freeze_llm --seed 4 --base models/base --train data/processed/train.jsonl --general-train data/raw/general_train/general_train.jsonl --checkpoints results/checkpoints/freeze_llm/seed-4 --train-log results/train/freeze_llm/seed-4 --dvclive results/dvclive/freeze_llm/seed-4 --resume .resume/train/freeze_llm/seed-4 --log logs/train/freeze_llm/seed-4.log

--general-train (the generic training set) is read only when the experiment's train.general_mix is above 0.

The same command on any number of devices: it runs on GPUs claimed for this job, and with
train.devices > 1 (or train.deepspeed) it relaunches itself through torchrun (brandcap.running.launch).
"""

from brandcap.config.params import check_training_seed, experiment_settings
from brandcap.running.launch import launch_stage
from brandcap.running.stage import run_stage, stage_args
from brandcap.stages.train import run_train


def train_stage(args, params):
    experiment_settings(params, args.experiment)  # an unknown experiment or seed fails before anything is launched
    check_training_seed(params, args.seed)
    launch_stage(params.train.devices, distributed=bool(params.train.deepspeed), resume_dir=args.resume)
    run_train(
        params,
        args.experiment,
        args.seed,
        args.base,
        args.train,
        args.checkpoints,
        args.train_log,
        args.dvclive,
        args.resume,
        general_train_jsonl=args.general_train,
    )


if __name__ == "__main__":
    args = stage_args(
        __doc__,
        "base",
        "train",
        "general-train",
        "checkpoints",
        "train-log",
        "dvclive",
        "resume",
        extra=lambda p: (
            p.add_argument("--experiment", required=True, help="a key of train.experiments"),
            p.add_argument("--seed", type=int, required=True, help="the training seed, one of train.seeds"),
        ),
    )
    run_stage(f"train[{args.experiment}, seed {args.seed}]", args, lambda params: train_stage(args, params))
