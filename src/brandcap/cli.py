"""The `brandcap` console command.

brandcap params [FILE]          print a documented parameter file (defaults, or FILE validated)
brandcap validate FILE...       validate parameter files; exit 2 with the reasons if one is bad
brandcap profile OVERLAY...     write params.yaml = the defaults with the profile(s) laid over them
                                (for DVC: `brandcap profile configs/smoke.yaml && dvc repro`)
brandcap serve-vlm --port 8000  run the simulated OpenAI-compatible VLM endpoint
brandcap code-deps [--check]    rewrite dvc.yaml's code deps of every stage from the imports
                                (--check: exit 1 naming the stages whose list is not current)
"""

from __future__ import annotations

import sys
from pathlib import Path

from brandcap.config.params import Params, ParamsError, load_params
from brandcap.config.params_file import render_params
from brandcap.config.profiles import write_profile


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command == "params":
            if rest:
                sys.stdout.write(render_params(load_params(rest[0]), f"{rest[0]} validated, every default filled in"))
            else:
                sys.stdout.write(render_params(Params()))
            return 0
        if command == "profile":
            if not rest:
                print("brandcap profile: name a profile file, e.g. configs/smoke.yaml", file=sys.stderr)
                return 2
            write_profile(rest, "params.yaml")
            print(f"params.yaml: the defaults overlaid by {', '.join(rest)}")
            return 0
        if command == "validate":
            return validate(rest)
    except ParamsError as err:
        print(err, file=sys.stderr)
        return 2
    if command == "code-deps":
        return code_deps(check="--check" in rest)
    if command == "serve-vlm":
        from brandcap.sim.simulated_vlm import serve_vlm_main

        try:
            return serve_vlm_main(rest) or 0
        except OSError as err:  # the port is taken, or the host is not this machine's
            print(
                f"brandcap serve-vlm: cannot listen ({err.strerror}); pick a free port with --port N", file=sys.stderr
            )
            return 2
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


def validate(paths: list[str]) -> int:
    """Check every file named, each on its own (a bad one does not hide the next); 2 when any is bad."""
    if not paths:
        print("brandcap validate: name a parameter file, e.g. params.yaml or configs/smoke.yaml", file=sys.stderr)
        return 2
    bad = 0
    for path in paths:
        try:
            load_params(path)
            print(f"{path}: ok")
        except ParamsError as err:
            print(err, file=sys.stderr)
            bad += 1
    return 2 if bad else 0


def code_deps(check: bool, dvc_yaml: Path = Path("dvc.yaml"), root: Path | None = None) -> int:
    from brandcap.running.stage_code import current_dvc_yaml, stale_stages

    stale = stale_stages(dvc_yaml, root)
    if check:
        if stale:
            print(
                f"{dvc_yaml}: the code deps of {', '.join(stale)} are not current; run `brandcap code-deps`",
                file=sys.stderr,
            )
            return 1
        print(f"{dvc_yaml}: every stage's code deps are current")
        return 0
    dvc_yaml.write_text(current_dvc_yaml(dvc_yaml, root), encoding="utf-8")
    print(f"{dvc_yaml}: code deps rewritten ({', '.join(stale) or 'no stage'} changed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
