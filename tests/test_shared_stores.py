"""Runs that share stores, as the team runs them: the daily cycle in one directory, another
cycle (or a backfill) in another, started together, publishing into the same Icechunk
stores on S3 (moto) and GCS (fake-gcs-server). Each finishes with the same command at
most once more, every cycle is in main under its own tag, and a reader polling main never
sees a partial cycle."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import boto3
import numpy as np
import pytest
import yaml
import zarr
from conftest import BIN, DEMO_PROFILE, copy_workflow, run_env

from ensflow.adapters import ensemble_store as es
from ensflow.adapters.storage import Storage
from ensflow.cycle import cycle_datetime, hours_since_1900

pytestmark = pytest.mark.slow


@pytest.fixture
def shared(s3_server, fake_gcs, monkeypatch):
    """Store URLs on both emulators (fresh for the test); this process (the reader, the
    checks) and the runs reach them with the same environment."""
    unique = f"t{time.time_ns()}"
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "STORAGE_EMULATOR_HOST": fake_gcs}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=s3_server, region_name="eu-central-1").create_bucket(
        Bucket=unique, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    env = run_env()
    return {"cgan": f"s3://{unique}/cgan.icechunk", "quest": f"gs://ensflow-test/{unique}/quest.icechunk",
            "bucket": f"gs://ensflow-test/{unique}/bucket", "s3": s3_server, "env": env}


def members_complete(data: np.ndarray) -> bool:
    """data[(time,) member, ...] of the members that ran: each holds values (a fork that
    was not merged would leave a member all NaN; some steps of a variable are NaN by design)."""
    if data.size == 0:
        return True  # the store's layout, before any cycle
    per_member = np.isfinite(data).reshape(*data.shape[:-3], -1).any(axis=-1)
    return bool(per_member.all())


class MainReader:
    """Polls main of each store while the runs go on; records, per look, whether every
    cycle slot main held was complete (every member that ran has its values)."""

    def __init__(self, stores: dict[str, tuple[str, Storage, list[int]]]):
        self.stores = stores
        self.seen: list[tuple[str, int, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MainReader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, (url, storage, members) in self.stores.items():
                try:
                    repo = es.open_repo(url, storage, create=False)
                    root = zarr.open_group(store=repo.readonly_session("main").store, mode="r")
                    var = next(k for k in root.array_keys() if root[k].ndim == 5)
                    rows = [i for i, m in enumerate(root["member"][:].tolist()) if m in members]
                    data = root[var][:][:, rows]
                except Exception:  # no store or layout yet
                    continue
                self.seen.append((name, data.shape[0], members_complete(data)))
            time.sleep(0.2)


def check_store(url: str, storage: Storage, cycles: dict[str, int], members: list[int]) -> None:
    """Every cycle in main at its own time, under its tag, with the members that ran."""
    repo = es.open_repo(url, storage, create=False)
    main = zarr.open_group(store=repo.readonly_session("main").store, mode="r")
    times = main["time"][:].tolist()
    assert sorted(times) == sorted(cycles.values()), (url, times)
    var = next(k for k in main.array_keys() if main[k].ndim == 5)
    rows = [i for i, m in enumerate(main["member"][:].tolist()) if m in members]
    for cycle, value in cycles.items():
        tag = repo.lookup_tag(f"cycle-{cycle}")
        assert es.published_snapshot(repo, cycle) == tag  # the tag is on main's history
        tagged = zarr.open_group(store=repo.readonly_session(tag=f"cycle-{cycle}").store, mode="r")
        at_tag = tagged[var][tagged["time"][:].tolist().index(value)][rows]
        assert members_complete(at_tag), (url, cycle)
        assert np.array_equal(at_tag, main[var][times.index(value)][rows], equal_nan=True)
    assert set(repo.list_branches()) == {"main"}  # no run branch left behind


def finish(procs: list[tuple[Path, subprocess.Popen, list[str]]], env) -> list[int]:
    """Wait for each run; a run that failed gets the same command once more."""
    tries = []
    for work, proc, argv in procs:
        out, _ = proc.communicate(timeout=900)
        n = 1
        if proc.returncode != 0:
            again = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True,
                                   timeout=900)
            assert again.returncode == 0, (out[-3000:], again.stderr[-3000:])
            n = 2
        tries.append(n)
    return tries


def start(work: Path, argv: list[str], env) -> tuple[Path, subprocess.Popen, list[str]]:
    return work, subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True), argv


def test_two_runs_in_two_directories_share_the_stores(tmp_path, shared):
    cycles = ["20251127_0000", "20251204_0000"]  # two Thursdays: both make quest products
    env = shared["env"]
    runs = []
    for name, cycle in zip("ab", cycles, strict=True):
        work = copy_workflow(tmp_path / name)
        (work / "shared.yaml").write_text(yaml.safe_dump({
            "cycle": cycle, "members": "1-2", "bucket": shared["bucket"],
            "cgan": {"members": "0-2", "store": shared["cgan"], "store_endpoint_url": shared["s3"]},
            "quest": {"store": shared["quest"]}}))
        runs.append((work, [str(BIN / "snakemake"), *DEMO_PROFILE, "--configfile", "shared.yaml"]))
    storage = Storage(s3_endpoint_url=shared["s3"])
    stores = {"cgan": (shared["cgan"], storage, [0, 1, 2]), "quest": (shared["quest"], storage, [1, 2])}
    with MainReader(stores) as reader:
        procs = [start(work, argv, env) for work, argv in runs]  # started together
        tries = finish(procs, env)
    assert max(tries) <= 2
    check_store(shared["cgan"], storage,
                {c: hours_since_1900(cycle_datetime(c)) for c in cycles}, [0, 1, 2])
    check_store(shared["quest"], storage,
                {c: hours_since_1900(cycle_datetime(c)) for c in cycles}, [1, 2])
    assert {(name, n) for name, n, _ in reader.seen} >= {("cgan", 2), ("quest", 2)}
    assert all(ok for _, _, ok in reader.seen), [s for s in reader.seen if not s[2]][:5]
    for work, _ in runs:  # each run made its own products
        cycle = yaml.safe_load((work / "shared.yaml").read_text())["cycle"]
        submissions = [f for f in (work / f"results/{cycle}/quest").rglob("*.nc")
                       if "climatology" not in f.parts]
        assert len(submissions) == 6, submissions  # 3 variables x weeks 3 and 4
        assert (work / f"results/{cycle}/cgan/IFS_{cycle[:8]}_00Z_cgan.nc").exists()


def test_a_backfill_of_three_cycles_beside_a_live_run(tmp_path, shared):
    env = shared["env"]
    store = shared["quest"].replace("quest.icechunk", "cgan.icechunk")  # on GCS this time
    common = {"bucket": shared["bucket"], "quest": {"enabled": False},
              "cgan": {"members": "0-2", "store": store}}
    live = copy_workflow(tmp_path / "live")
    (live / "live.yaml").write_text(yaml.safe_dump({**common, "cycle": "20251127_0000"}))
    src = copy_workflow(tmp_path / "src")
    (src / "backfill.yaml").write_text(yaml.safe_dump({**common, "watch": {"max_parallel": 2}}))
    storage = Storage()
    with MainReader({"cgan": (store, storage, [0, 1, 2])}) as reader:
        procs = [
            start(live, [str(BIN / "snakemake"), *DEMO_PROFILE, "cgan", "--configfile", "live.yaml"], env),
            start(src, [str(BIN / "ensflow"), "backfill", "20251124_0000", "20251125_0000",
                        "--stage", "cgan", "--profile", "profiles/demo",
                        "--configfile", "backfill.yaml"], env),
        ]
        tries = finish(procs, env)
    assert max(tries) <= 2
    backfilled = ["20251124_0000", "20251124_1200", "20251125_0000"]
    for cycle in backfilled:
        state = json.loads((src / "runs/cgan" / cycle / "watch.json").read_text())
        assert state["state"] == "finished" and len(state["attempts"]) <= 2, state
    check_store(store, storage, {c: hours_since_1900(cycle_datetime(c))
                                 for c in [*backfilled, "20251127_0000"]}, [0, 1, 2])
    assert ("cgan", 4) in {(name, n) for name, n, _ in reader.seen}
    assert all(ok for _, _, ok in reader.seen), [s for s in reader.seen if not s[2]][:5]
