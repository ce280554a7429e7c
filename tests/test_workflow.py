"""The demo cycle through real Snakemake runs: GCS emulator bucket, kill -9 and resume,
bad pickles, bad config, and the operational dry-run."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import BIN, DEMO_PROFILE, copy_workflow, run_demo, run_env, snakemake

from ensflow.adapters.grib_encode import read_messages
from ensflow.adapters.storage import Storage, crc32c_file
from ensflow.layout import forecast_filename, forecast_windows

pytestmark = pytest.mark.slow
CYCLE = "20251127_0000"
MEMBERS = [1, 2, 3, 4]
WINDOWS = forecast_windows(792, 72)


def occupied_members(scratch_cycle: Path) -> int:
    if not scratch_cycle.is_dir():
        return 0
    n = 0
    for d in scratch_cycle.glob("member_*"):
        try:
            names = [p.name for p in d.iterdir()]
        except FileNotFoundError:
            continue
        if names and ".failed" not in names:
            n += 1
    return n


class ScratchSampler(threading.Thread):
    """Samples how many members hold files on scratch while a run goes on."""

    def __init__(self, scratch_cycle: Path) -> None:
        super().__init__(daemon=True)
        self.scratch_cycle = scratch_cycle
        self.samples: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(occupied_members(self.scratch_cycle))
            time.sleep(0.02)


@pytest.fixture(scope="module")
def gcs_run(tmp_path_factory, gcs_emulator):
    """One uninterrupted demo cycle into a bucket on the GCS emulator."""
    work = copy_workflow(tmp_path_factory.mktemp("gcs_run"))
    sampler = ScratchSampler(work / "scratch" / CYCLE)
    sampler.start()
    env = run_env(STORAGE_EMULATOR_HOST=gcs_emulator)
    result = run_demo(work, "--config", "bucket=gs://ensflow-test/demo", env=env)
    sampler.stop.set()
    sampler.join()
    assert result.returncode == 0, result.stderr[-4000:]
    return work, sampler.samples, env


def bucket_checksums(receipt_dir: Path) -> dict[str, str]:
    out = {}
    for r in sorted(receipt_dir.glob("forecast_member_*.json")):
        for o in json.loads(r.read_text())["objects"]:
            out[o["url"].rsplit("/", 1)[1]] = o["crc32c"]
    return out


def test_demo_runs_every_stage(gcs_run):
    work = gcs_run[0]
    assert (work / f"results/{CYCLE}/cgan/IFS_20251127_00Z_cgan.nc").exists()
    assert len(list((work / f"results/{CYCLE}/receipts").glob("forecast_member_*.json"))) == 4


def test_demo_reaches_the_six_submission_files(gcs_run):
    import xarray as xr

    from ensflow.science import quest

    work = gcs_run[0]
    sub = work / f"results/{CYCLE}/quest/submission"
    names = sorted(p.name for p in sub.glob("*.nc"))
    assert names == sorted(f"{v}_20251127_p{p}_ensflow_aifsens.nc"
                           for v in ("tas", "mslp", "pr") for p in (1, 2))
    for name in names:
        da = xr.open_dataarray(sub / name)
        var, period = name.split("_")[0], int(name.split("_p")[1][0])
        quest.offline_checks(da, var, quest.issue_date(CYCLE), period)
        prov = json.loads(da.attrs["ensflow_provenance"])
        assert prov["members"] == MEMBERS and prov["synthetic"] is True
        assert len(prov["store_snapshot"]) == 20 and prov["window_hours"][0] in (432, 600)
    report = json.loads((work / f"results/{CYCLE}/quest/sanity.json").read_text())
    assert set(report["files"]) == set(names)
    for v in ("tas", "mslp", "pr"):
        for p in (1, 2):
            assert (work / f"results/{CYCLE}/quest/maps/{v}_p{p}.png").stat().st_size > 10_000


def test_quest_fields_from_bucket_equal_in_forecast_regrid(gcs_run, monkeypatch, tmp_path):
    from ensflow.config import load
    from ensflow.science import quest
    from ensflow.stages import quest_stage

    work, _, env = gcs_run
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", env["STORAGE_EMULATOR_HOST"])
    monkeypatch.chdir(work)
    settings = load("config/config.yaml", {"bucket": "gs://ensflow-test/demo",
                                           "scratch": str(tmp_path / "scratch")})
    out = tmp_path / "member_002.bucket.npz"
    quest_stage.member_fields_from_bucket(
        settings, 2, f"results/{CYCLE}/receipts/forecast_member_002.json", out)
    from_bucket, steps_b, _ = quest.load_member_fields(out)
    in_forecast, steps_f, meta = quest.load_member_fields(
        work / f"results/{CYCLE}/quest/members/member_002.forecast.npz")
    assert steps_b == steps_f and meta["source"] == "forecast"
    for name in ("tas", "mslp", "pr"):  # packed 16-bit in the bucket, floats in the forecast job
        span = float(np.nanmax(in_forecast[name]) - np.nanmin(in_forecast[name])) or 1.0
        assert np.nanmax(np.abs(from_bucket[name] - in_forecast[name])) <= 2 * span / 65535, name
        assert (np.isnan(from_bucket[name]) == np.isnan(in_forecast[name])).all()
    assert np.nanmin(from_bucket["pr"]) >= 0


def test_demo_cycle_writes_every_grib_to_the_gcs_bucket(gcs_run, tmp_path, monkeypatch):
    work, _, env = gcs_run
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", env["STORAGE_EMULATOR_HOST"])
    storage = Storage()
    objects = {o.url.rsplit("/", 1)[1]: o for o in
               storage.list_prefix(f"gs://ensflow-test/demo/{CYCLE}/forecasts/")}
    expected = {forecast_filename(CYCLE, m, a, b) for m in MEMBERS for a, b in WINDOWS}
    assert set(objects) == expected
    inputs = storage.list_prefix(f"gs://ensflow-test/demo/{CYCLE}/input/")
    assert [o.url.rsplit("/", 1)[1] for o in inputs] == [
        f"input_state_member_{m:03d}.pkl" for m in MEMBERS]

    for m in MEMBERS:
        receipt = json.loads((work / f"results/{CYCLE}/receipts/forecast_member_{m:03d}.json").read_text())
        assert receipt["provenance"]["demo_model"] is True
        assert len(receipt["provenance"]["checkpoint_sha256"]) == 64
        assert receipt["provenance"]["synthetic"] is True
        for obj in receipt["objects"]:
            assert storage.stat(obj["url"]).crc32c == obj["crc32c"]
        # sent by the forecast job as each window was done, the upload job checked them and
        # sent the last one (beside the next member's inference)
        assert [obj["skipped"] for obj in receipt["objects"]] == [True] * 10 + [False], m
        forecast_log = (work / f"logs/{CYCLE}/forecast/member_{m:03d}.log").read_text()
        assert "10 window(s) in the bucket ahead of the upload job" in forecast_log
        for a, b in WINDOWS if m in (1, 4) else WINDOWS[:1] + WINDOWS[-1:]:
            name = forecast_filename(CYCLE, m, a, b)
            local = storage.get_file(f"gs://ensflow-test/demo/{CYCLE}/forecasts/{name}",
                                     tmp_path / name)
            msgs = read_messages(tmp_path / local.url.rsplit("/", 1)[1])
            assert {x["number"] for x in msgs} == {m}
            assert {x["gridType"] for x in msgs} == {"reduced_gg"}
            assert {x["numberOfValues"] for x in msgs} == {10944}
            assert {x["dataDate"] for x in msgs} == {20251127}
            assert sorted({x["step"] for x in msgs}) == list(range(a + 6, b + 1, 6))
            names = {(x["shortName"], x["level"]) for x in msgs}
            assert {("2t", 2), ("msl", 0), ("z", 500), ("t", 850), ("tp", 0)} <= names
            tp = [x for x in msgs if x["shortName"] == "tp"]
            assert all(x["stepRange"] == f"0-{x['step']}" for x in tp)
            assert all(np.isfinite(x["values"]).all() for x in msgs)
            t2 = [x["values"] for x in msgs if x["shortName"] == "2t"]
            assert 150 < float(np.mean(t2)) < 350


def test_members_are_distinct_forecasts(gcs_run):
    checks = bucket_checksums(gcs_run[0] / f"results/{CYCLE}/receipts")
    last = [checks[forecast_filename(CYCLE, m, 720, 792)] for m in MEMBERS]
    assert len(set(last)) == len(MEMBERS)


def test_scratch_window_is_bounded_and_used(gcs_run):
    work, samples, _ = gcs_run
    assert len(samples) > 100
    assert max(samples) <= 2, f"window is 2, saw {max(samples)} members on scratch"
    assert max(samples) == 2, "the next member's download should overlap the current inference"
    assert occupied_members(work / "scratch" / CYCLE) == 0
    assert not [p for p in (work / "scratch").rglob("*") if p.is_file() and p.suffix in {".pkl", ".grib"}]


def test_a_fetch_waiting_for_the_window_holds_no_core(gcs_run):
    """profiles/demo: 2 cores. A fetch_input waiting for a member to leave the window takes
    none of them, so a forecast and another job run beside it (3 jobs on 2 cores)."""
    from ensflow.config import load
    from ensflow.ops.run_record import load_cycle

    work = gcs_run[0]
    jobs = [j for j in load_cycle(load(work / "config/config.yaml"), work).jobs if j.ended]
    fetches = [j for j in jobs if j.rule == "fetch_input"]
    assert {j.threads for j in fetches} == {0} and len(fetches) == len(MEMBERS)
    waited = [j for j in fetches if "waiting for a scratch slot" in j.log.read_text()]
    assert waited, "with window 2 and 4 members, a later member's fetch waits for a slot"
    beside = [k for j in waited for k in jobs
              if k.rule not in {"fetch_input", "forecast"} and k.started < j.ended
              and k.ended > j.started
              and any(f.rule == "forecast" and f.started < min(j.ended, k.ended)
                      and f.ended > max(j.started, k.started) for f in jobs)]
    assert beside, "no job ran beside a waiting fetch and a forecast: the fetch held a core"


def test_logs_and_benchmarks_for_every_member(gcs_run):
    work = gcs_run[0]
    for rule in ("prepare_input", "fetch_input", "forecast", "upload"):
        for m in MEMBERS:
            log = (work / f"logs/{CYCLE}/{rule}/member_{m:03d}.log").read_text()
            assert re.search(rf"done {rule} member {m:03d} in [\d.]+s", log)
    forecast_log = (work / f"logs/{CYCLE}/forecast/member_001.log").read_text()
    assert "step 792 h (132/132)" in forecast_log and "ETA" in forecast_log
    assert (work / f"benchmarks/{CYCLE}/forecast/member_001.tsv").exists()


# ------------------------------------------------------------------ kill -9 and resume


def test_kill_9_then_same_command_resumes(gcs_run, tmp_path):
    """Plain Snakemake, as an operator types it: kill -9 the run, type the same command."""
    work = copy_workflow(tmp_path / "wf")
    cmd = [str(BIN / "snakemake"), *DEMO_PROFILE, "aifs"]
    proc = subprocess.Popen(cmd, cwd=work, env=run_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    receipts = work / f"results/{CYCLE}/receipts"
    try:
        deadline = time.monotonic() + 300
        while not (work / ".snakemake/locks").is_dir() or not list((work / ".snakemake/locks").iterdir()):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        second = run_demo(work, "aifs")  # a second run while the first is alive is refused
        assert second.returncode != 0
        assert f"another ensflow run is active in {work} (pid {proc.pid}, cycle {CYCLE}" in second.stderr
        dry = run_demo(work, "aifs", "-n")  # a dry-run beside it still works
        assert dry.returncode == 0, dry.stderr[-2000:]
        # kill once one member is uploaded and another is mid-way on scratch
        while not (any(not list((work / f"scratch/{CYCLE}/member_{p.stem[-3:]}").glob("*.grib"))
                       for p in receipts.glob("forecast_member_*.json"))
                   and occupied_members(work / "scratch" / CYCLE) > 0):
            assert time.monotonic() < deadline and proc.poll() is None, "run ended before the kill"
            time.sleep(0.02)
        # While it runs: status sees the live run and a finished member; purge refuses.
        live = subprocess.run([str(BIN / "ensflow"), "status", "-C", str(work)], env=run_env(),
                              capture_output=True, text=True, timeout=120)
        assert live.returncode == 0, live.stdout + live.stderr
        assert f"run active (pid {proc.pid}" in live.stdout, live.stdout
        assert re.search(r"^forecast +[1-4] ", live.stdout, re.M) and "ETA " in live.stdout
        refused = subprocess.run([str(BIN / "ensflow"), "purge", "-C", str(work), "--yes"],
                                 env=run_env(), capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1 and "in use by a live run" in refused.stderr
        assert list(receipts.glob("forecast_member_*.json")) and (work / "bucket" / CYCLE).is_dir()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert list((work / ".snakemake/locks").iterdir()), "Snakemake's own lock outlives kill -9"
    after = subprocess.run([str(BIN / "ensflow"), "status", "-C", str(work)], env=run_env(),
                           capture_output=True, text=True, timeout=120)
    assert "no run active" in after.stdout, after.stdout
    # A member is finished once its receipt exists and temp() has removed its GRIBs: Snakemake
    # has then recorded the job as complete. A receipt whose GRIBs are still on scratch was
    # killed mid-bookkeeping; its upload may run again (and skips the objects already there).
    done_before = {p.name: (p.stat().st_mtime_ns, p.read_text())
                   for p in receipts.glob("forecast_member_*.json")
                   if not list((work / f"scratch/{CYCLE}/member_{p.stem[-3:]}").glob("*.grib"))}
    logs_before = {p: p.stat().st_mtime_ns for p in (work / f"logs/{CYCLE}/forecast").glob("*.log")
                   if f"forecast_member_{p.stem[-3:]}.json" in done_before}
    assert logs_before and 0 < len(done_before) < len(MEMBERS)

    again = subprocess.run(cmd, cwd=work, env=run_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "removed Snakemake's lock left by a run that died" in again.stderr
    for name, (mtime, text) in done_before.items():
        p = receipts / name
        assert p.stat().st_mtime_ns == mtime and p.read_text() == text, f"{name} was redone"
    for p, mtime in logs_before.items():
        assert p.stat().st_mtime_ns == mtime, f"{p.name}: finished member recomputed"
    # the bucket holds exactly what the uninterrupted run wrote, nothing half-written
    assert bucket_checksums(receipts) == bucket_checksums(gcs_run[0] / f"results/{CYCLE}/receipts")
    files = [p for p in (work / "bucket").rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".part")]
    on_disk = {p.name: crc32c_file(p) for p in files if p.suffix == ".grib"}
    assert on_disk == bucket_checksums(receipts)


# ------------------------------------------------------------------ bad pickles


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch exploited",))


def test_bad_pickles_fail_their_member_only(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    first = run_demo(work, "--until", "prepare_input")
    assert first.returncode == 0, first.stderr[-3000:]
    bucket = work / f"bucket/{CYCLE}/input"
    good = pickle.loads((bucket / "input_state_member_001.pkl").read_bytes())
    missing = {"date": good["date"], "fields": {k: v for k, v in good["fields"].items() if k != "2t"}}
    raw = (bucket / "input_state_member_003.pkl").read_bytes()
    damage = {
        2: pickle.dumps({"date": good["date"], "fields": Exploit()}),
        3: raw[: len(raw) // 3],
        4: pickle.dumps(missing),
    }
    for m, data in damage.items():
        obj = bucket / f"input_state_member_{m:03d}.pkl"
        obj.write_bytes(data)
        rpath = work / f"results/{CYCLE}/receipts/input_member_{m:03d}.json"
        receipt = json.loads(rpath.read_text())
        receipt["crc32c"] = crc32c_file(obj)  # as if the bucket held these pickles
        rpath.write_text(json.dumps(receipt))

    result = run_demo(work, "aifs")
    assert result.returncode != 0
    receipts = work / f"results/{CYCLE}/receipts"
    assert (receipts / "forecast_member_001.json").exists()
    for m in damage:
        assert not (receipts / f"forecast_member_{m:03d}.json").exists()
    logs = {m: (work / f"logs/{CYCLE}/fetch_input/member_{m:03d}.log").read_text() for m in damage}
    assert re.search(r"member 002 .*unsafe pickle, refuses to import (posix|os)\.system", logs[2])
    assert re.search(r"member 003 .*not a readable pickle \(truncated", logs[3])
    assert re.search(r"member 004 .*missing field\(s\) 2t", logs[4])
    assert not (work / "exploited").exists()
    leftovers = [p for p in (work / "scratch").rglob("*") if p.is_file() and p.suffix in {".pkl", ".grib"}]
    assert leftovers == [], "failed members must not leave files on scratch"


# ------------------------------------------------------------------ bad config


@pytest.mark.parametrize("override,named", [
    ("cycle=2025-13-01T00:00", "cycle '2025-13-01T00:00'"),
    ("cycle=27/11/2025", "expected YYYYMMDD_HHMM"),
    ("members=0-3", "members '0-3'"),
    ("members=5-2", "runs backwards"),
])
def test_bad_cycle_or_members_refused_before_anything_runs(tmp_path, override, named):
    work = copy_workflow(tmp_path / "wf")
    result = run_demo(work, "--config", override)
    assert result.returncode != 0
    assert named in result.stderr + result.stdout
    for made in ("results", "logs", "bucket", "demo", "scratch"):
        assert not (work / made).exists(), f"{made}/ was created before the config was refused"


# ------------------------------------------------------------------ operational dry-run


def parse_dry_run(text: str) -> list[dict]:
    jobs, job = [], None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            job = {"rule": m.group(1), "input": [], "output": [], "wildcards": {}}
            jobs.append(job)
        elif job is not None and (m := re.match(r"^\s+(input|output|wildcards|reason): (.*)$", line)):
            if m.group(1) == "reason":
                job["reason"] = m.group(2)
            elif m.group(1) == "wildcards":
                job["wildcards"] = dict(kv.split("=", 1) for kv in m.group(2).split(", "))
            else:
                job[m.group(1)] = [p.strip() for p in m.group(2).split(", ")]
    return jobs


# What a changed setting re-runs, as `snakemake -n` tells it on the finished demo cycle:
# the rules whose params changed, and every job that then runs.
QUEST_AFTER_FORECAST = {"quest_member", "quest_publish", "demo_climatology", "quest_climatology",
                        "quest_products", "quest_maps"}
SETTING_CHANGES = [
    ({}, set(), set()),
    ({"cgan": {"ddof": 1}}, {"cgan_netcdf"}, {"cgan_netcdf"}),
    ({"cgan": {"output_grid": "cgan_0p1"}}, {"cgan_netcdf"}, {"cgan_netcdf"}),
    # GRIBs are temp(): the upload receipt carries the forecast's settings, so the chain
    # from the scratch copy of the input on is redone; nothing is downloaded again
    ({"forecast": {"bits_per_value": 24}}, {"forecast", "preflight"},
     {"preflight", "fetch_input", "forecast", "upload"} | QUEST_AFTER_FORECAST),
    ({"quest": {"allow_partial": True}}, {"quest_publish"},
     {"quest_publish", "demo_climatology", "quest_climatology", "quest_products", "quest_maps"}),
    ({"checkpoint": "demo/checkpoint/other.ckpt"}, None,
     {"demo_checkpoint", "checkpoint_record", "demo_mirror", "preflight", "prepare_input",
      "fetch_input", "forecast", "upload", "cgan_setup", "cgan_batch",
      "cgan_publish", "cgan_netcdf"} | QUEST_AFTER_FORECAST),
]


@pytest.mark.parametrize("change,params_changed,reruns", SETTING_CHANGES,
                         ids=["nothing", "cgan.ddof", "cgan.output_grid", "forecast.bits_per_value",
                              "quest.allow_partial", "checkpoint"])
def test_a_changed_setting_reruns_exactly_what_uses_it(gcs_run, change, params_changed, reruns):
    work, _, env = gcs_run
    (work / "change.yaml").write_text(yaml.safe_dump(change))
    result = snakemake(work, *DEMO_PROFILE, "-n", "--config", "bucket=gs://ensflow-test/demo",
                       "--configfile", "config/config.yaml", "change.yaml", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [j for j in parse_dry_run(result.stdout + result.stderr) if j["rule"] != "all"]
    assert {j["rule"] for j in jobs} == reruns
    if params_changed is not None:
        assert {j["rule"] for j in jobs if "Params have changed" in j.get("reason", "")} \
            == params_changed
    if not reruns:
        assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.parametrize("profile", ["profiles/demo", "profiles/gpu"])
def test_operational_dry_run_needs_no_network_or_credentials(tmp_path, profile):
    """Also proves each local profile is one Snakemake accepts (profiles/kubernetes:
    tests/test_kubernetes.py)."""
    work = copy_workflow(tmp_path / "wf")
    env = run_env()
    for k in list(env):
        if k.startswith(("AWS_", "GOOGLE_", "STORAGE_EMULATOR", "CLOUDSDK")):
            env.pop(k)
    env.update(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="")
    result = snakemake(work, "-n", "--profile", profile,
                       "--configfile", "config/operational.yaml", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = parse_dry_run(result.stdout + result.stderr)
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j["rule"]] = counts.get(j["rule"], 0) + 1
    assert counts == {"preflight": 2, "checkpoint_record": 1, "prepare_input": 50, "fetch_input": 50,
                      "forecast": 50, "upload": 50, "all": 1,
                      # cGAN: one job reads the 9 step indices (36..60 h: totals since
                      # step 0 need no earlier step) and sets the store up; 51 members in
                      # batches of 6
                      "cgan_setup": 1, "cgan_batch": 9, "cgan_publish": 1,
                      "cgan_netcdf": 1,
                      # quest: a fork per member, one publish, products and maps
                      # and the quest's climatology files for the cycle's two weeks
                      "quest_setup": 1, "quest_member": 50, "quest_publish": 1, "quest_climatology": 1,
                      "quest_products": 1, "quest_maps": 1}
    producer = {out: j for j in jobs for out in j["output"]}

    def parents(job):
        return {(producer[i]["rule"], producer[i]["wildcards"].get("member"))
                for i in job["input"] if i in producer}

    for j in jobs:
        m = j["wildcards"].get("member")
        if j["rule"] == "prepare_input":  # nothing downloads before the preflight passed
            assert parents(j) == {("preflight", None)}
        elif j["rule"] == "fetch_input":
            assert parents(j) == {("prepare_input", m)}
        elif j["rule"] == "forecast":
            assert parents(j) == {("fetch_input", m)}
            assert len(j["output"]) == 12  # 11 GRIB windows + the 1.5° quest fields
            assert sum(f"_member{m}_h" in o for o in j["output"]) == 11
        elif j["rule"] == "quest_member":
            assert parents(j) == {("forecast", m), ("quest_setup", None)}
        elif j["rule"] == "upload":
            assert parents(j) == {("forecast", m), ("prepare_input", m), ("checkpoint_record", None)}
        elif j["rule"] == "all":
            assert parents(j) == {("upload", f"{k:03d}") for k in range(1, 51)} | {
                ("cgan_netcdf", None), ("quest_products", None), ("quest_maps", None),
                ("preflight", None)}  # re-checked when its params change (preflight_gate)
        elif j["rule"] == "cgan_batch":
            assert parents(j) == {("cgan_setup", None)}
            assert len(j["input"]) == 10  # 9 step indices + setup
        elif j["rule"] == "cgan_setup":
            assert parents(j) == {("preflight", None)}
            assert len(j["output"]) == 10  # 9 step indices + the setup record
        elif j["rule"] == "cgan_publish":
            assert {p for p, _ in parents(j)} == {"cgan_batch", "cgan_setup"}
            assert len(j["input"]) == 10
    assert not (work / "results").exists() and not (work / "bucket").exists()


def test_run_report_covers_every_logged_job(gcs_run):
    import base64

    work, _, env = gcs_run
    results = work / f"results/{CYCLE}"
    hooked = results / "report.html"
    assert hooked.is_file(), "the onsuccess hook writes the run report"
    cli = subprocess.run([str(BIN / "ensflow"), "report", "-C", str(work), "--config",
                          "bucket=gs://ensflow-test/demo", "-o", str(work / "again.html")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    for page in (hooked, work / "again.html"):
        html = page.read_text()
        data = json.loads(page.with_suffix(".json").read_text())
        rows = {j["log"]: j for j in data["jobs"]}
        logs = sorted((work / f"logs/{CYCLE}").rglob("*.log"))
        expected = set()
        for path in logs:
            rel = path.relative_to(work / f"logs/{CYCLE}")
            job = rows[str(path.relative_to(work))]
            # logs/<cycle>/<rule>/<job>.log, or logs/<cycle>/<rule>.log for a rule's one job
            assert job["rule"] == (rel.parts[0] if len(rel.parts) == 2 else path.stem)
            assert job["status"] == "done" and job["seconds"] is not None
            assert str(path.relative_to(work)) in html
            expected.add(job["rule"])
        assert expected >= {"forecast", "upload", "prepare_input", "fetch_input", "cgan_batch",
                            "quest_products", "quest_maps"}
        for rule in expected:
            assert data["rules"][rule]["done"] == data["rules"][rule]["jobs"] > 0
            assert f"<td>{rule}</td>" in html
        maps = sorted((results / "quest/maps").glob("*.png"))
        assert len(maps) == 6 and html.count("data:image/png;base64,") == 6
        for png in maps:
            assert base64.b64encode(png.read_bytes()).decode() in html
        receipts = [json.loads(p.read_text()) for p in sorted((results / "receipts").glob("*.json"))]
        assert data["bytes"]["total"] == sum(r.get("bytes", r.get("size", 0)) for r in receipts) > 0
        assert data["state"] == "complete" and data["cost"]["gpu_hours"] > 0


def test_purge_dry_run_lists_exactly_the_full_demo_cycle(gcs_run, monkeypatch):
    """Every stage's files (aifs, cGAN, quest) and every bucket object of the cycle, nothing
    else; the stores and the demo inputs are kept. (Deleting: tests/test_retention.py.)"""
    work, _, env = gcs_run
    result = subprocess.run([str(BIN / "ensflow"), "purge", "-C", str(work), "--config",
                             "bucket=gs://ensflow-test/demo"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    listed = {m[2]: int(m[1]) for line in result.stdout.splitlines()
              if (m := re.match(r"^ +(\d+)  (\S+)(?:  \((.*)\))?$", line))}
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", env["STORAGE_EMULATOR_HOST"])
    storage = Storage()
    objects = {o.url: o.size for o in storage.list_prefix(f"gs://ensflow-test/demo/{CYCLE}/")}
    local = {str(p): p.lstat().st_size for d in ("results", "logs", "benchmarks", "scratch")
             for p in (work / d / CYCLE).rglob("*") if not p.is_dir()}
    assert any("/quest/" in p for p in local) and any("/cgan/" in p for p in local)
    assert listed == objects | local
    assert "kept (archive)" in result.stdout and "stores/cgan.icechunk" in result.stdout
    assert (work / "results" / CYCLE / "report.html").is_file()  # a dry-run deletes nothing


def test_snakemakes_own_report_holds_the_products(gcs_run, tmp_path):
    """`snakemake --report` (Snakemake's report, no re-run) carries the quest maps,
    submission files and checks and the cGAN file, with the workflow's description."""
    import zipfile

    work, _, env = gcs_run
    results = work / f"results/{CYCLE}"
    before = {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()}
    out = tmp_path / "snakemake_report.zip"
    result = run_demo(work, "--config", "bucket=gs://ensflow-test/demo", "--report", str(out),
                      env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    with zipfile.ZipFile(out) as z:
        names = {Path(n).name for n in z.namelist()}
        page = next(z.read(n).decode() for n in z.namelist() if n.endswith("/report.html"))
    for product in [*(results / "quest/maps").glob("*.png"),
                    *(results / "quest/submission").glob("*.nc"),
                    results / "quest/sanity.json", results / "cgan/IFS_20251127_00Z_cgan.nc"]:
        assert product.name in names
    assert len([n for n in names if n.endswith(".png")]) == 6
    assert "AI Weather Quest" in page and "cGAN inputs" in page
    assert f"ensflow cycle {CYCLE}" in page
    assert {p: p.stat().st_mtime_ns for p in before} == before, "a report re-makes nothing"
