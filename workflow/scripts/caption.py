"""caption stage: a brand-aware caption of every image from an OpenAI-compatible VLM (or the built-in simulator).

python workflow/scripts/caption.py --params params.yaml --manifest data/raw/manifest.parquet --captions data/interim/captions.jsonl --resume .resume/caption --log logs/caption.log
"""

from brandcap.running.stage import run_stage, stage_args
from brandcap.stages.caption import run_caption

if __name__ == "__main__":
    args = stage_args(__doc__, "manifest", "captions", "resume")
    run_stage(
        "caption",
        args,
        lambda params: run_caption(params, args.manifest, args.captions, args.resume, [args.params, *args.overlay]),
    )
