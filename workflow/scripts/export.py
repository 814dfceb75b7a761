"""export stage: the validation-selected best checkpoint (or --checkpoint) as a standalone Hugging Face model directory with a model card.

    python workflow/scripts/export.py --params params.yaml --base models/base --checkpoints results/checkpoints --eval-dir results/eval --processed data/processed --out results/export/best --log logs/export.log
    python workflow/scripts/export.py --params params.yaml --base models/base --checkpoint results/checkpoints/lora/seed-4/epoch-10 --eval-dir results/eval --processed data/processed --out results/export/lora-seed-4-epoch-10

Serve the result with `vllm serve results/export/best --served-model-name brandcap-best` (its
README.md gives the processor arguments) and evaluate it with eval.backend: endpoint.
"""

from pathlib import Path

from brandcap.running.stage import run_stage, stage_args
from brandcap.stages.export import run_export


def _options(parser):
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="export this checkpoint dir instead of the validation-selected best",
    )
    parser.add_argument(
        "--checkpoints", type=Path, default=None, help="results/checkpoints (to export the validation-selected best)"
    )
    parser.add_argument(
        "--eval-dir",
        type=Path,
        default=None,
        help="results/eval: the selection, and the checkpoint's metrics for the model card",
    )


if __name__ == "__main__":
    args = stage_args(__doc__, "base", "processed", "out", extra=_options)
    run_stage(
        f"export[{args.out}]",
        args,
        lambda params: run_export(
            params,
            args.base,
            args.processed,
            args.out,
            checkpoint_dir=args.checkpoint,
            checkpoints_dir=args.checkpoints,
            eval_dir=args.eval_dir,
        ),
    )
