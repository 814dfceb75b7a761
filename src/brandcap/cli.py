"""The `brandcap` console command.

    brandcap params [FILE]          print a documented parameter file (defaults, or FILE validated)
    brandcap validate FILE...       validate parameter files; exit 2 with the reasons if one is bad
    brandcap serve-vlm --port 8000  run the simulated OpenAI-compatible VLM endpoint
"""

from __future__ import annotations

import sys

from brandcap.params import Params, ParamsError, load_params
from brandcap.params_file import render_params


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command == "params":
            params = load_params(rest[0]) if rest else Params()
            sys.stdout.write(render_params(params))
            return 0
        if command == "validate":
            for path in rest:
                load_params(path)
                print(f"{path}: ok")
            return 0
    except ParamsError as err:
        print(err, file=sys.stderr)
        return 2
    if command == "serve-vlm":
        from brandcap.simulated_vlm import serve_vlm_main

        return serve_vlm_main(rest) or 0
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
