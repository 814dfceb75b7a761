"""Every command the README and docs/ show still works as written: each shell line of a bash block and each
inline `command ...` that starts with one of the project's programs is checked against the real thing.

- `make X`: the Makefile has target X;
- `snakemake ...` and `dvc ...`: the tool's own argument parser accepts the line, the files it names (profile,
  --configfile, -s) exist, and every `-S key=value` names a real parameter;
- `brandcap ...`: run for real in a copy of the project (`serve-vlm`, a server, only has its options parsed);
- `python SCRIPT ...` / `python -m MODULE ...`: the script or module exists and defines every option used.

What a command does once it runs is tested where it runs: the README's profile commands in test_readme.py
and test_pipeline*.py, DVC's commands in test_pipeline_dvc.py and test_dvc_project.py, the report in
test_report.py. A command this file cannot check (another program, a placeholder, a quoted mistake) is in
`NOT_CHECKED` with the reason.

.venv/bin/python -m pytest tests/test_docs_commands.py -q
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAMS = ("make", "snakemake", "dvc", "brandcap", "python", "python3", ".venv/bin/python")
SHELL_FENCES = {"bash", "sh", "shell"}
PLACEHOLDERS = {"FILE": "configs/smoke.yaml"}

# command prefix -> why it is not checked here
NOT_CHECKED = {
    "snakemake --config key=value": "quoted as the form Snakemake refuses here (test_profiles.py checks the refusal)",
    "snakemake -s caption_batch.smk": "the rule file the same page writes out; test_caption_batch.py runs it",
    "git ": "git's own commands",
    "source ": "the shell's",
    "cd ": "the shell's",
    "vllm ": "the vLLM server, not installed here",
}


def shell_lines(text: str) -> list[str]:
    """The commands of a page: bash-block lines (continuations joined, comments and `&&` chains split) and
    inline code spans that start with one of PROGRAMS."""
    found, fence, pending = [], None, ""
    for line in text.splitlines():
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
            continue
        if fence in SHELL_FENCES:
            code = re.sub(r"(^|\s)#.*$", "", line).rstrip()
            pending += code[:-1] + " " if code.endswith("\\") else code
            if not code.endswith("\\"):
                found.append(pending.strip())
                pending = ""
        elif fence is None:
            found += [span for span in re.findall(r"`([^`]+)`", line) if span.split(" ")[0] in PROGRAMS and " " in span]
    commands = [part.strip() for line in found for part in line.split("&&")]
    return [c for c in commands if c and "…" not in c]  # "snakemake … --configfile your.yaml": a fragment


def documented() -> list[tuple[str, str]]:
    seen, out = set(), []
    for page in PAGES:
        for command in shell_lines(page.read_text(encoding="utf-8")):
            for placeholder, value in PLACEHOLDERS.items():
                command = re.sub(rf"\b{placeholder}\b", value, command)
            if command not in seen:
                seen.add(command)
                out.append((page.relative_to(ROOT).as_posix(), command))
    return out


COMMANDS = documented()


def argv_of(command: str) -> list[str]:
    argv = shlex.split(command)
    while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):  # OMP_NUM_THREADS=1 python ...
        argv = argv[1:]
    if ">" in argv:  # brandcap params > params.yaml
        argv = argv[: argv.index(">")]
    return argv


def options_of(argv: list[str]) -> list[str]:
    return [arg.split("=")[0] for arg in argv if arg.startswith("--")]


def parameter_exists(key: str) -> bool:
    node = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def check_make(argv: list[str]) -> None:
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M))
    assert argv[1] in targets, f"the Makefile has no target {argv[1]!r}"


def check_snakemake(argv: list[str]) -> None:
    from snakemake.cli import get_argument_parser

    args = get_argument_parser().parse_args(argv[1:])
    for path in [*(args.configfile or []), *([args.snakefile] if args.snakefile else [])]:
        assert (ROOT / path).exists(), f"{path} does not exist"
    if "--profile" in argv:
        profile = argv[argv.index("--profile") + 1]
        assert (ROOT / profile / "config.yaml").is_file(), f"no Snakemake profile {profile}"


def check_dvc(argv: list[str]) -> None:
    from dvc.cli.parser import get_main_parser

    mention = len(argv) == 2  # "`dvc add` it": a command named, not a line to run; its help must exist
    with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
        try:
            args = get_main_parser().parse_args(argv[1:] + (["--help"] if mention else []))
        except SystemExit as exit:
            if mention and exit.code == 0:
                return
            raise AssertionError(f"dvc refuses the arguments: {err.getvalue().strip()}") from None
    for setting in getattr(args, "set_param", None) or []:
        key = setting.split("=")[0]
        assert parameter_exists(key), f"-S {key}: params.yaml has no such parameter"


def script_options(path: Path) -> set[str]:
    """Every option a script's argparse parsers define: add_argument's string arguments, and for a stage's entry
    script the path options it hands `stage_args` with the ones every stage takes (brandcap.running.stage)."""
    options = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if getattr(node.func, "attr", "") == "add_argument":
            options |= set(strings)
        elif getattr(node.func, "id", "") == "stage_args":
            options |= {f"--{name}" for name in strings} | script_options(ROOT / "src/brandcap/running/stage.py")
    return options


def module_path(module: str) -> Path | None:
    if module == "pytest":
        return None
    path = ROOT / "src" / Path(*module.split("."))
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__main__.py"


def check_python(argv: list[str]) -> None:
    if argv[1] == "-m":
        if argv[2] == "pytest":  # `-m "not slow"`: the marker is declared
            markers = [line.split(":")[0].strip(' "') for line in (ROOT / "pyproject.toml").read_text().splitlines()]
            assert argv[4].split()[-1] in markers, f"pytest marker {argv[4]!r} is not declared in pyproject.toml"
            return
        script, used = module_path(argv[2]), options_of(argv[3:])
    else:
        script, used = ROOT / argv[1], options_of(argv[2:])
    assert script and script.is_file(), f"{script} does not exist"
    missing = set(used) - script_options(script)
    assert not missing, f"{script.relative_to(ROOT)} defines no option {sorted(missing)}"


def check_brandcap(argv: list[str], project: Path) -> None:
    from brandcap.cli import main

    if argv[1] == "serve-vlm":
        from brandcap.sim import simulated_vlm

        missing = set(options_of(argv)) - script_options(Path(simulated_vlm.__file__))
        assert not missing, f"brandcap serve-vlm has no option {sorted(missing)}"
        return
    # `code-deps` rewrites dvc.yaml from the installed package's imports: checked here in place, without writing
    args, where = (argv[1:] + ["--check"], ROOT) if argv[1] == "code-deps" else (argv[1:], project)
    out = io.StringIO()
    cwd = Path.cwd()
    os.chdir(where)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(args)
    finally:
        os.chdir(cwd)
    assert code == 0, f"exit {code}: {out.getvalue()}"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    from tests.conftest import copy_project

    return copy_project(tmp_path_factory.mktemp("docs-commands"))


def test_the_pages_show_commands():
    """The extraction itself: a sample of what the pages show is found (so an empty list cannot pass)."""
    commands = [command for _, command in COMMANDS]
    assert "make run" in commands and "make test" in commands
    assert any(c.startswith("dvc exp show --md") for c in commands)
    assert any(c.startswith("python benchmarks/") for c in commands)
    assert len(COMMANDS) > 60


@pytest.mark.parametrize(("page", "command"), COMMANDS, ids=[f"{p}: {c[:60]}" for p, c in COMMANDS])
def test_a_documented_command_works_as_written(page, command, project):
    if reason := next((why for prefix, why in NOT_CHECKED.items() if command.startswith(prefix)), None):
        pytest.skip(reason)
    argv = argv_of(command)
    program = argv[0]
    if program == "make":
        check_make(argv)
    elif program == "snakemake":
        check_snakemake(argv)
    elif program == "dvc":
        check_dvc(argv)
    elif program == "brandcap":
        check_brandcap(argv, project)
    elif program in ("python", "python3", ".venv/bin/python"):
        check_python(argv)
    else:
        raise AssertionError(f"{page}: {command!r}: no check for {program!r}; add one, or a reason to NOT_CHECKED")


def test_a_renamed_option_is_caught():
    """The checks fail on the kind of rot they exist for: an option a script does not define, a parameter
    that does not exist, a make target that is gone."""
    with pytest.raises(AssertionError, match="defines no option"):
        check_python(["python", "benchmarks/train.py", "--tiling-reprot"])
    with pytest.raises(AssertionError, match="no such parameter"):
        check_dvc(["dvc", "exp", "run", "-S", "train.learning_rat=0.002"])
    with pytest.raises(AssertionError, match="no target"):
        check_make(["make", "runn"])
    with pytest.raises(AssertionError, match="does not exist"):
        check_snakemake(["snakemake", "--cores", "1", "results/tables.md", "--configfile", "configs/smok.yaml"])
