"""Make the pretrained stand-in the default study starts from (run once; its output is committed).

    .venv/bin/python tools/pretrain_standin.py                                   # pretrained/tiny-internvl, ~20 CPU-minutes
    .venv/bin/python tools/pretrain_standin.py --out /tmp/standin --quick        # the recipe on a few hundred images

The recipe (brandcap.sim.standin): the tiny InternVL's vision tower learns the synthetic world's
brand-free visual vocabulary until its held-out attribute accuracies plateau, then its language model
learns brand names as words and brand-free captions. Progress goes to the terminal and to --log.
After a change to the drawing code (src/brandcap/sim/drawing.py, colours.py) or to the stand-in's
architecture, run it again and commit the folder: tests/test_standin.py fails until then.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

from brandcap.running.stage import pin_cpu_threads, setup_logging
from brandcap.sim.standin import STANDIN_DIR, make_standin

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out", type=Path, default=STANDIN_DIR, help="folder to write (replaced when the recipe succeeds)"
    )
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--quick", action="store_true", help="a few hundred images and a few steps: checks the recipe runs"
    )
    parser.add_argument("--log", type=Path, default=Path("logs/standin.log"))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the training thread; a DataLoader worker draws the images beside it
    setup_logging(args.log)
    pin_cpu_threads()
    logging.getLogger(__name__).info("making the stand-in in %s", args.out)
    make_standin(args.out, seed=args.seed, quick=args.quick, command=shlex.join(["python", *sys.argv]))
