"""Preflight: each missing precondition gives its own clear line, before any download."""

from __future__ import annotations

import pytest
from conftest import REPO, copy_workflow, run_demo

from ensflow.adapters import checkpoint_info
from ensflow.config import load
from ensflow.demo import world as demo
from ensflow.demo.model import save_demo_checkpoint
from ensflow.stages.preflight import PreflightError, run

CYCLE = "20251127_0000"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("pf")
    ckpt = save_demo_checkpoint(root / "demo.ckpt")
    base = {"checkpoint": str(ckpt), "opendata": {"root": f"file://{root}/od"},
            "bucket": f"file://{root}/bucket", "scratch": str(root / "scratch"),
            "members": "1-2", "cgan": {"members": "0-2"}}
    settings = load(REPO / "config/config.yaml", base)
    demo.make_mirror(settings, ckpt, root / "mirror.json")
    checkpoint_info.read.cache_clear()
    return root, base


def settings_for(world, **changes):
    _, base = world
    cfg = {**base, **changes}
    return load(REPO / "config/config.yaml", cfg)


def test_all_good(world, tmp_path):
    run(settings_for(world), "aifs", tmp_path / "ok.json")
    run(settings_for(world), "cgan", tmp_path / "ok2.json")
    assert "reachable and writable" in (tmp_path / "ok.json").read_text()


@pytest.mark.parametrize("change,stage,message", [
    ({"checkpoint": "/nowhere/aifs.ckpt"}, "aifs",
     "checkpoint: checkpoint /nowhere/aifs.ckpt: no such file"),
    ({"bucket": "file:///proc/ensflow-bucket"}, "aifs",
     "bucket: bucket file:///proc/ensflow-bucket is not writable"),
    ({"members": "1-6"}, "aifs", "open data: file://"),
    ({"window": 10_000_000}, "aifs", "scratch: scratch "),
    ({"forecast": {"device": "cuda"}}, "aifs", "gpu: forecast.device is cuda but 0 GPU(s) are visible"),
    ({"synthetic": False, "quest": {"climatology": "file:///nowhere"}}, "aifs",
     "climatology: climatology files not found: file:///nowhere/climatologies/2025/"
     "tas_20yrCLIM_WEEKLYMEAN_quintiles_20251215.nc"),
    ({"cycle": "20251125_0000"}, "aifs",
     "climatology: cycle 20251125_0000: issue 2025-11-25 00 UTC is a Tuesday"),
    ({"cgan": {"members": "0-7"}}, "cgan", "field(s) of member(s) 3, 4, 5, 6, 7)"),
])
def test_each_problem_has_its_own_line(world, tmp_path, change, stage, message):
    with pytest.raises(PreflightError) as err:
        run(settings_for(world, **change), stage, tmp_path / "x.json")
    assert message in str(err.value)
    assert not (tmp_path / "x.json").exists()


def test_missing_member_is_named(world, tmp_path):
    with pytest.raises(PreflightError, match=r"field\(s\) of member\(s\) 5, 6\)"):
        run(settings_for(world, members="1-6"), "aifs", tmp_path / "x.json")


def test_credentials_file_must_exist_and_is_not_printed(world, tmp_path, monkeypatch):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nowhere/sa.json")
    with pytest.raises(PreflightError) as err:
        run(settings_for(world, bucket="gs://some-bucket"), "aifs", tmp_path / "x.json")
    assert "credentials: GCS credentials file /nowhere/sa.json does not exist" in str(err.value)


def test_all_problems_are_listed_together(world, tmp_path):
    with pytest.raises(PreflightError) as err:
        run(settings_for(world, window=10_000_000, forecast={"device": "cuda"},
                         synthetic=False, quest={"climatology": "file:///nowhere"}),
            "aifs", tmp_path / "x.json")
    lines = str(err.value).splitlines()
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["scratch", "gpu", "climatology"]


def test_a_failing_preflight_stops_the_run_before_any_download(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    result = run_demo(work, "aifs", "--config", "window=10000000")
    assert result.returncode != 0
    assert "scratch" in (work / f"logs/{CYCLE}/preflight/aifs.log").read_text()
    assert not (work / f"logs/{CYCLE}/prepare_input").exists()
    assert not (work / "bucket").exists() or not list((work / "bucket").rglob("*.pkl"))


@pytest.mark.parametrize("content,why", [
    (b"", "empty file (0 bytes)"),
    (b"this is no checkpoint\n" * 10, "not a readable anemoi checkpoint (BadZipFile: "),
])
def test_an_unreadable_checkpoint_is_one_line_and_every_other_check_still_reports(
        world, tmp_path, content, why):
    bad = tmp_path / "aifs.ckpt"
    bad.write_bytes(content)
    with pytest.raises(PreflightError) as err:
        run(settings_for(world, checkpoint=str(bad), window=10_000_000), "aifs",
            tmp_path / "x.json")
    lines = str(err.value).splitlines()
    assert lines[1].strip().startswith(f"checkpoint: checkpoint {bad}: {why}")
    assert "Traceback" not in str(err.value)
    # The checks after it still ran: those that need the checkpoint say so.
    assert [line.strip() for line in lines[2:]] == ["open data: not checked (checkpoint failed)",
                                                    "scratch: not checked (checkpoint failed)"]


def test_climatology_files_are_opened_and_checked_before_the_run(world, tmp_path):
    """Files that exist but hold the wrong units fail the preflight, naming the file."""
    import datetime as dt

    import numpy as np

    from ensflow.adapters import quest_climatology
    from ensflow.science import quest

    root = tmp_path / "clim"
    issue = quest.issue_date(CYCLE)
    for var, _, valid in quest_climatology.needed(issue, ["tas", "mslp", "pr"]):
        thresholds = np.sort(np.random.default_rng(0).normal(
            {"tas": 280.0, "mslp": 101000.0, "pr": 10.0}[var], 1.0, (4, quest.NLAT, quest.NLON)),
            axis=0)
        if var == "pr":
            thresholds = np.abs(thresholds)
        units = {"tas": "K", "mslp": "Pa", "pr": "mm"}[var]
        path = root / quest_climatology.remote_path(var, valid)
        path.parent.mkdir(parents=True, exist_ok=True)
        quest_climatology.write_synthetic(path, var, valid, thresholds, units)
    ok = {"synthetic": False, "quest": {"climatology": f"file://{root}",
                                        "climatology_units": {"tas": "K", "mslp": "Pa", "pr": "mm"}}}
    run(settings_for(world, **ok), "aifs", tmp_path / "ok.json")
    assert "opened and checked" in (tmp_path / "ok.json").read_text()
    wrong = {**ok, "quest": {**ok["quest"], "climatology_units": {"tas": "degC", "mslp": "Pa",
                                                                   "pr": "mm"}}}
    with pytest.raises(PreflightError) as err:
        run(settings_for(world, **wrong), "aifs", tmp_path / "x.json")
    assert "climatology: " in str(err.value) and "tas_20yrCLIM_WEEKLYMEAN_quintiles_" in str(err.value)
    assert dt.date(2025, 12, 15).strftime("%Y%m%d") in str(err.value)
