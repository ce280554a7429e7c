"""`ensflow watch`: a cycle starts only once ECMWF has published every index it reads, and
a deadline with data still missing ends with a report naming what is missing. The mirror
is ECMWF's layout (GRIB objects and `.index` files written by ecmwf-opendata's indexer);
the test publishes the indices one by one, as ECMWF's dissemination does step by step."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import BIN, REPO, copy_workflow, run_env

from ensflow.adapters.opendata import OpenDataLayout
from ensflow.config import load
from ensflow.demo import data as demo_data
from ensflow.layout import index_of
from ensflow.ops import watch
from ensflow.science import cgan_plan

CYCLE = "20251127_0000"
MEMBERS = "0-2"


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """The cGAN objects of one cycle with their indices, not yet published."""
    root = tmp_path_factory.mktemp("staged")
    plan = cgan_plan.plan_from(load(REPO / "config/config.yaml",
                                    {"cycle": CYCLE, "cgan": {"members": MEMBERS}}))
    objects: dict = {}
    for var in plan.variables:
        for step in plan.fetch_steps(var):
            for m in plan.members:
                demo_data.add(objects, plan.base, step, plan.product(m), var.field)
    paths = demo_data.write_mirror(OpenDataLayout(f"file://{root}"), objects, 1.0)
    return root, sorted(paths)


def source_dir(tmp_path: Path, mirror: Path, **watch_cfg) -> Path:
    """A workflow checkout as an operator has it, with a config file for the watch."""
    src = copy_workflow(tmp_path / "src")
    cfg = {"synthetic": False, "opendata": {"root": f"file://{mirror}"},
           "cgan": {"members": MEMBERS, "store": "file://stores/cgan.icechunk"},
           "watch": {"lookback_hours": 6, **watch_cfg,
                     "stages": {"quest": {"enabled": False}, "cgan": {"deadline_hours": 6}}}}
    (src / "watch.yaml").write_text(yaml.safe_dump(cfg))
    return src


def publish_objects(staged_root: Path, paths: list[Path], mirror: Path) -> list[Path]:
    """Copy the GRIB objects into the mirror; return their indices, still unpublished."""
    for p in paths:
        dest = mirror / p.relative_to(staged_root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, dest)
    return [p.with_suffix(".index") for p in paths]


def publish(index: Path, staged_root: Path, mirror: Path, text: str | None = None) -> None:
    """Publish one index atomically, as an object store does."""
    dest = mirror / index.relative_to(staged_root)
    tmp = dest.with_name(dest.name + ".part")
    tmp.write_text(index.read_text() if text is None else text)
    tmp.replace(dest)


def ensflow(src: Path, *args: str, **kw) -> subprocess.Popen | subprocess.CompletedProcess:
    argv = [str(BIN / "ensflow"), *args, "-C", str(src), "--configfile", "watch.yaml",
            "--stage", "cgan", "--profile", "profiles/demo"]
    if kw.pop("background", False):
        return subprocess.Popen(argv, cwd=src, env=run_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return subprocess.run(argv, cwd=src, env=run_env(), capture_output=True, text=True, timeout=300)


def state_of(src: Path, cycle: str = CYCLE) -> dict:
    path = src / "runs" / "cgan" / cycle / "watch.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_the_cycle_starts_when_its_last_index_appears(tmp_path, staged):
    staged_root, paths = staged
    mirror = tmp_path / "mirror"
    src = source_dir(tmp_path, mirror)
    indices = publish_objects(staged_root, paths, mirror)
    proc = ensflow(src, "watch", "--poll-seconds", "0.3", "--now", "2025-11-27T03:00",
                   "--stop-after", "240", background=True)
    try:
        seen_waiting = []
        for i, index in enumerate(indices):
            deadline = time.monotonic() + 30
            while state_of(src).get("missing_count") != len(indices) - i:
                assert time.monotonic() < deadline, (state_of(src), proc.poll())
                time.sleep(0.1)
            state = state_of(src)
            assert state["state"] == "waiting" and state["attempts"] == []
            # what it waits for is named: the very index not yet published
            assert any(str(index_of(str(mirror / index.relative_to(staged_root)))
                           .removeprefix("file://")) in line or index.name in line
                       for line in state["missing"])
            seen_waiting.append(state["missing_count"])
            time.sleep(0.7)  # two more looks: still nothing may start
            assert state_of(src)["attempts"] == []
            publish(index, staged_root, mirror)
        published_last = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
        deadline = time.monotonic() + 200
        while state_of(src).get("state") != "finished":
            assert time.monotonic() < deadline and state_of(src).get("state") != "failed", \
                (state_of(src), (src / "runs/cgan" / CYCLE / "attempt-1.log").read_text()[-3000:]
                 if (src / "runs/cgan" / CYCLE / "attempt-1.log").exists() else proc.poll())
            time.sleep(0.3)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    assert seen_waiting == list(range(len(indices), 0, -1))
    state = state_of(src)
    (attempt,) = state["attempts"]
    started = dt.datetime.strptime(attempt["started"], "%Y-%m-%dT%H:%M:%SZ")
    assert started >= published_last and attempt["rc"] == 0
    run_dir = src / "runs" / "cgan" / CYCLE
    assert (run_dir / f"results/{CYCLE}/cgan/IFS_20251127_00Z_cgan.nc").exists()
    assert (src / "stores" / "cgan.icechunk").is_dir()  # shared, beside the watch's config
    assert f"cgan {CYCLE}: started attempt 1" in out and "finished" in out


def test_a_deadline_with_data_missing_reports_what_is_missing(tmp_path, staged):
    staged_root, paths = staged
    mirror = tmp_path / "mirror"
    src = source_dir(tmp_path, mirror)
    indices = publish_objects(staged_root, paths, mirror)
    for index in indices[2:]:
        publish(index, staged_root, mirror)
    # the second object's index is out, but without member 2
    lines = indices[1].read_text().splitlines()
    publish(indices[1], staged_root, mirror,
            "\n".join(x for x in lines if json.loads(x).get("number") != "2") + "\n")

    before = ensflow(src, "watch", "--once", "--now", "2025-11-27T05:00")
    assert before.returncode == 0, before.stderr
    assert state_of(src)["state"] == "waiting" and state_of(src)["missing_count"] == 2

    after = ensflow(src, "watch", "--once", "--now", "2025-11-27T06:30")
    assert after.returncode == 1
    state = state_of(src)
    assert state["state"] == "missed" and state["attempts"] == []
    report = json.loads((src / "runs/cgan" / CYCLE / "missing.json").read_text())
    first = str(mirror / indices[0].relative_to(staged_root))
    second = str(mirror / indices[1].relative_to(staged_root)).removesuffix(".index")
    assert len(report["missing"]) == 2
    assert report["missing"][0].startswith(f"file://{first}: not published")
    assert report["missing"][1].startswith(f"file://{second}.grib2: missing from the index")
    assert "of member(s) 2)" in report["missing"][1]
    assert report["deadline"] == "2025-11-27T06:00:00Z"  # watch.stages.cgan.deadline_hours
    # one line says it, with what is missing and how to resume
    (line,) = [x for x in after.stderr.splitlines() if "missed" in x]
    assert f"cgan {CYCLE}: missed: 2 object(s) still missing at the deadline" in line
    assert "not published" in line and f"ensflow backfill {CYCLE} {CYCLE} --stage cgan" in line
    assert not (src / "runs/cgan" / CYCLE / "results").exists()
    # a missed cycle stays missed for the watch: no run starts once the deadline passed
    again = ensflow(src, "watch", "--once", "--now", "2025-11-27T07:00")
    assert again.returncode == 0 and state_of(src)["state"] == "missed"


def test_schedules():
    settings = load(REPO / "config/config.yaml")
    cgan = watch.Schedule.of(settings, "cgan")
    quest = watch.Schedule.of(settings, "quest")
    week = (dt.datetime(2025, 11, 24), dt.datetime(2025, 11, 30, 18))
    assert [watch.cycle_id(t) for t in cgan.cycles(*week)][:3] == [
        "20251124_0000", "20251124_1200", "20251125_0000"]
    assert len(cgan.cycles(*week)) == 14
    assert [watch.cycle_id(t) for t in quest.cycles(*week)] == ["20251127_0000"]  # Thursday
    due = watch.due(settings, ["cgan", "quest"], dt.datetime(2025, 11, 27, 13))
    # the last 48 h (watch.lookback_hours, more than twice the deadlines), oldest first
    assert [(s.name, c) for s, c in due] == [
        ("cgan", "20251126_0000"), ("cgan", "20251126_1200"), ("cgan", "20251127_0000"),
        ("quest", "20251127_0000"), ("cgan", "20251127_1200")]


def test_run_config_shares_stores_and_refuses_before_anything_exists(tmp_path):
    settings = load(REPO / "config/config.yaml", {"synthetic": False,
                                                  "quest": {"climatology": "file://clim"}})
    run = watch.run_config(settings, tmp_path, watch.STAGES["cgan"], "20251126_1200")
    assert run.cycle == "20251126_1200" and not run.quest.enabled and run.cgan.enabled
    assert run.bucket == f"file://{tmp_path}/bucket"
    assert run.cgan.store == f"file://{tmp_path}/stores/cgan.icechunk"
    assert run.opendata.root == f"file://{tmp_path}/demo/opendata"
    assert run.checkpoint == str(tmp_path / "demo/checkpoint/aifs-ens-demo.ckpt")
    assert run.scratch == "scratch" and run.results == "results"  # the run's own
    gs = load(REPO / "config/operational.yaml")
    assert watch.run_config(gs, tmp_path, watch.STAGES["quest"], "20251127_0000").quest.store == \
        "gs://aifs-ens-forecasts/aifs_ens_1p5.icechunk"
    # the weekly stage on a Tuesday: refused by validation, no run directory made
    w = watch.Watcher(settings, tmp_path, ["quest"])
    assert w.step(watch.STAGES["quest"], "20251125_0000", dt.datetime(2025, 11, 25, 6)) == "refused"
    assert json.loads((tmp_path / "runs/quest/20251125_0000/watch.json").read_text())["message"]
    assert not (tmp_path / "runs/quest/20251125_0000/config").exists()
