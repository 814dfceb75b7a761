"""The DVC side of the project: metrics and plots live in git, not the DVC cache, and the default
remote (the folder brandcap-dvc-remote beside the repository) lets a fresh clone `dvc pull` what
was pushed, with no set-up.

    .venv/bin/python -m pytest tests/test_dvc_project.py -q
"""

from __future__ import annotations

from pathlib import Path

from dvc.dvcfile import load_file
from dvc.repo import Repo

from tests.conftest import ROOT, copy_project


def test_metrics_and_plots_are_not_cached():
    """`cache: false` keeps the study's metrics and plots as plain files that git (and `dvc exp`) record and diff. The
    training runs' DVCLive files are the exception: each profile has its own runs, so they are kept in DVC's cache with
    the runs they belong to (in git, another profile's run would leave the committed default run's tree changed)."""
    with Repo(str(ROOT)) as repo:
        plot_sources = [next(iter(p)) for p in load_file(repo, "dvc.yaml").plots]  # as resolved (paths from vars)
        outs = [out for stage in repo.index.stages for out in stage.outs]
    per_run = [out for out in outs if out.def_path.startswith("results/dvclive/")]
    assert per_run and all(out.use_cache for out in per_run)
    outs = [out for out in outs if out not in per_run]
    declared = [out for out in outs if out.metric or out.plot]
    holding_a_plot = [
        out for out in outs if any(src == out.def_path or src.startswith(out.def_path + "/") for src in plot_sources)
    ]
    assert declared and holding_a_plot
    for out in declared + holding_a_plot:
        assert not out.use_cache, f"dvc.yaml: {out.def_path} needs `cache: false`"


def test_default_remote_is_the_folder_beside_the_repository():
    with Repo(str(ROOT)) as repo:
        default = repo.config["core"].get("remote")
        assert default, ".dvc/config: no default remote (core.remote)"
        url = repo.config["remote"][default]["url"]
    assert Path(url) == ROOT.parent / "brandcap-dvc-remote"


def test_a_fresh_clone_pulls_what_was_pushed(tmp_path, run, monkeypatch):
    system_temp = tmp_path / "system-temp"  # where DVC's usage reports would be left (core.analytics is off)
    system_temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_temp))
    project = tmp_path / "brandcap"
    project.mkdir()
    copy_project(project)
    run(project, "brandcap profile configs/smoke.yaml && dvc repro --quiet catalog")
    run(project, "git add -A && git commit -qm 'catalog of the smoke profile'")
    run(project, "dvc push --quiet")
    remote = tmp_path / "brandcap-dvc-remote"
    assert any(p.is_file() for p in remote.rglob("*")), "dvc push wrote nothing to ../brandcap-dvc-remote"

    clone = tmp_path / "clone"
    run(tmp_path, ["git", "clone", "-q", str(project), str(clone)])
    assert not (clone / "data/raw/catalog.parquet").exists() and not (clone / ".dvc/cache").exists()
    run(clone, "dvc pull --quiet catalog")
    assert (clone / "data/raw/catalog.parquet").read_bytes() == (project / "data/raw/catalog.parquet").read_bytes()
    shop = sorted(p.relative_to(project).as_posix() for p in (project / "data/raw/shop").rglob("*") if p.is_file())
    assert shop and shop == sorted(
        p.relative_to(clone).as_posix() for p in (clone / "data/raw/shop").rglob("*") if p.is_file()
    )
    assert list(system_temp.iterdir()) == []
