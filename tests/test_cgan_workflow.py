"""The cGAN stage through Snakemake against an S3 server on loopback (moto) holding a
synthetic open-data mirror whose .index files come from ecmwf-opendata's own indexer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import boto3
import eccodes
import numpy as np
import pytest
import xarray as xr
import yaml
import zarr
from conftest import BIN, DEMO_PROFILE, REPO, FaultProxy, copy_workflow, run_demo, run_env

from ensflow.adapters import ensemble_store
from ensflow.adapters.opendata import OpenDataLayout
from ensflow.adapters.storage import Storage
from ensflow.config import load
from ensflow.demo import data as demo_data
from ensflow.science import cgan_plan

pytestmark = pytest.mark.slow
CYCLE = "20251127_0000"
BUCKET = "ecmwf-mirror"
NC = "IFS_20251127_00Z_cgan.nc"
FILES = Storage()  # the stores here are file://


@pytest.fixture(scope="module")
def plan():
    return cgan_plan.plan_from(load(REPO / "config/config.yaml"))


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, s3_server, plan):
    """Synthetic open data for the cGAN steps, uploaded to a public-read bucket."""
    root = tmp_path_factory.mktemp("mirror")
    objects: dict = {}
    for var in plan.variables:  # with the step before the first, for per-interval amounts
        for step in ([plan.previous_step] if var.accumulated else []) + list(plan.steps):
            for m in plan.members:
                demo_data.add(objects, plan.base, step, plan.product(m), var.field)
    paths = demo_data.write_mirror(OpenDataLayout(f"file://{root}"), objects, 1.0)
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="eu-central-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
                       "Resource": [f"arn:aws:s3:::{BUCKET}/*"]}]}))
    for p in paths:
        for f in (p, p.with_suffix(".index")):
            s3.upload_file(str(f), BUCKET, str(f.relative_to(root)))
    return root, s3


def expected(root: Path, plan) -> dict[str, np.ndarray]:
    """What the product must hold, computed with eccodes and numpy from the same messages."""
    lat_ok = lambda a: (a >= -14) & (a <= 25)  # noqa: E731
    lon_ok = lambda a: (a >= 19) & (a <= 55)  # noqa: E731
    fields: dict[tuple[str, int, int], np.ndarray] = {}
    for step in plan.all_steps:
        path = root / enfo_key(plan, step)
        with open(path, "rb") as f:
            while (h := eccodes.codes_grib_new_from_file(f)) is not None:
                try:
                    lat = eccodes.codes_get_array(h, "latitudes")
                    lon = (eccodes.codes_get_array(h, "longitudes") + 180) % 360 - 180
                    inside = lat_ok(lat) & lon_ok(lon)
                    name = eccodes.codes_get(h, "shortName")
                    level = eccodes.codes_get(h, "level")
                    var = next(v for v in plan.variables if v.param == name
                               and (v.levelist is None or v.levelist == level))
                    fields[(var.name, eccodes.codes_get(h, "number"), step)] = \
                        eccodes.codes_get_values(h)[inside].reshape(40, 37)
                finally:
                    eccodes.codes_release(h)
    out = {}
    for v in plan.variables:
        data = np.stack([np.stack([fields[(v.name, m, s)] for s in plan.fetch_steps(v)])
                         for m in plan.members]).astype(np.float32).astype(np.float64)
        out[f"{v.output_name}_ensemble_mean"] = data.mean(axis=0)  # totals since step 0
        out[f"{v.output_name}_ensemble_standard_deviation"] = data.std(axis=0, ddof=0)
    return out


def enfo_key(plan, step: int) -> str:
    """The enfo object of a step (before IFS 50r1 it holds the control too)."""
    (url,) = plan.objects(step)
    return url.removeprefix(plan.layout.root + "/")


def write_config(work: Path, endpoint: str, **cgan_extra) -> None:
    cfg = {"synthetic": False, "quest": {"enabled": False},
           "opendata": {"root": f"s3://{BUCKET}", "endpoint_url": endpoint},
           "cgan": {"store": "file://stores/cgan.icechunk", **cgan_extra}}
    (work / "test.yaml").write_text(yaml.safe_dump(cfg))


def anonymous_env() -> dict[str, str]:
    env = run_env()
    for k in list(env):
        if k.startswith("AWS_"):
            env.pop(k)
    return env


def run_cgan(work: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_demo(work, "cgan", "--configfile", "test.yaml", *extra, env=anonymous_env())


def store_main(work: Path):
    repo = ensemble_store.open_repo(f"file://{work}/stores/cgan.icechunk", FILES, create=False)
    return repo, zarr.open_group(store=repo.readonly_session("main").store, mode="r")


def product(work: Path) -> xr.Dataset:
    return xr.load_dataset(work / f"results/{CYCLE}/cgan/{NC}")


def not_published(work: Path) -> bool:
    store = work / "stores/cgan.icechunk"
    if not store.exists():
        return True
    repo = ensemble_store.open_repo(f"file://{store}", FILES, create=False)
    return f"cycle-{CYCLE}" not in repo.list_tags() and not (work / f"results/{CYCLE}/cgan/{NC}").exists()


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, mirror, s3_server):
    """The stage end to end, with a reader polling main all along."""
    work = copy_workflow(tmp_path_factory.mktemp("cgan"))
    write_config(work, s3_server)
    seen: list[tuple[int, bool]] = []
    stop = threading.Event()

    def poll():
        url = f"file://{work}/stores/cgan.icechunk"
        while not stop.is_set():
            if not (work / "stores/cgan.icechunk").exists():
                time.sleep(0.05)
                continue
            try:
                repo = ensemble_store.open_repo(url, FILES, create=False)
                root = zarr.open_group(store=repo.readonly_session("main").store, mode="r")
                tp = root["tp"][:]
            except Exception:  # layout not committed yet
                time.sleep(0.05)
                continue
            seen.append((tp.shape[0], bool(tp.shape[0] == 0 or not np.isnan(tp).any())))

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    result = run_cgan(work)
    stop.set()
    t.join()
    assert result.returncode == 0, result.stderr[-4000:]
    return work, seen


def test_product_equals_numpy_over_eccodes_decodes(clean_run, mirror, plan):
    work, _ = clean_run
    ds = product(work)
    want = expected(mirror[0], plan)
    assert ds.sizes == {"time": 1, "valid_time": 9, "latitude": 40, "longitude": 37}
    assert set(ds.data_vars) == set(want)
    for name, values in want.items():
        got = ds[name].values[0]
        assert ds[name].dtype == np.float32
        np.testing.assert_allclose(got, values, rtol=2e-6, atol=1e-6 * np.abs(values).max(),
                                   err_msg=name)
    assert float(ds["tp_ensemble_mean"].min()) >= 0
    assert ds["valid_time"].values[0] == np.datetime64("2025-11-28T12:00")
    import netCDF4

    with netCDF4.Dataset(work / f"results/{CYCLE}/cgan/{NC}") as raw:
        assert raw["time"].units == raw["valid_time"].units == "hours since 1900-01-01 00:00:00.0"
        assert raw["tp_ensemble_mean"].dimensions == ("time", "valid_time", "latitude", "longitude")


def test_statistics_come_from_the_batches_partial_sums_as_a_store_read_gives(clean_run,
                                                                             monkeypatch):
    """The NetCDF's mean and spread are combined from what the batches recorded; computed
    instead from the published snapshot (the ensemble read back), the file is the same."""
    from ensflow.stages import cgan

    work, _ = clean_run
    log = (work / f"logs/{CYCLE}/cgan_netcdf.log").read_text()
    assert "statistics from the batches' partial sums" in log
    sums = sorted((work / f"results/{CYCLE}/cgan/forks").glob("batch_*.sums.npz"))
    assert len(sums) == 3  # members 0-4 in batches of 2
    monkeypatch.chdir(work)
    settings = load(work / "config/config.yaml", yaml.safe_load((work / "test.yaml").read_text()))
    indices = sorted(str(p) for p in (work / f"results/{CYCLE}/cgan/index").glob("*.json"))
    from_store = work / "from_store.nc"
    cgan.write_netcdf(settings, work / f"results/{CYCLE}/cgan/published.json", indices, [],
                      from_store)
    a, b = product(work), xr.load_dataset(from_store)
    assert set(a.data_vars) == set(b.data_vars) and len(a.data_vars) == 24
    for name in a.data_vars:
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-6,
                                   atol=1e-6 * float(np.abs(b[name]).max()), err_msg=name)


def test_product_provenance_names_the_snapshot(clean_run):
    work, _ = clean_run
    ds = product(work)
    repo, root = store_main(work)
    assert ds.attrs["store_snapshot"] == repo.lookup_tag(f"cycle-{CYCLE}") == repo.lookup_branch("main")
    assert ds.attrs["members"] == "0,1,2,3,4" and ds.attrs["cycle"] == CYCLE
    source = f"s3://{BUCKET}/20251127/00z/ifs/0p25/enfo/20251127000000-36h-enfo-ef.grib2"
    assert source in ds.attrs["source_urls"]
    assert ds.attrs["code_version"]
    assert root["tp"].attrs["units"] == "m" and "since step 0" in root["tp"].attrs["accumulation"]


def test_file_opens_as_the_teams_cgan_tools_open_it(clean_run):
    """As icpac-igad/grib-index-kerchunk's plot_tp_maps.py / plot_cgan_maps.py read it:
    found by the glob IFS_*.nc, `{var}_ensemble_mean` with (time, valid_time, latitude,
    longitude), tp as totals since step 0 in m (they plot `* 1000` as mm), and the
    attributes model_date, model_run, n_ensemble_members, forecast_hours (eval'd)."""
    work, _ = clean_run
    (path,) = (work / f"results/{CYCLE}/cgan").glob("IFS_*.nc")
    assert path.name == "IFS_20251127_00Z_cgan.nc"
    ds = xr.open_dataset(path)
    names = ["tp", "t2m", "sp", "ssr", "ssrd", "sf", "ro", "tcw", "tcwv", "tcc", "u700", "v700"]
    assert set(ds.data_vars) == {f"{v}_{k}" for v in names
                                 for k in ("ensemble_mean", "ensemble_standard_deviation")}
    tp = ds["tp_ensemble_mean"].isel(time=0).values * 1000
    assert tp.shape == (ds.sizes["valid_time"], ds.latitude.size, ds.longitude.size)
    assert np.all(np.diff(tp, axis=0) >= -1e-3), "totals since step 0 never decrease"
    hours = eval(ds.attrs["forecast_hours"])
    assert hours == list(range(36, 61, 3)) and len(hours) == ds.sizes["valid_time"]
    assert (ds.attrs["model_date"], ds.attrs["model_run"]) == ("2025-11-27", "00Z")
    assert int(ds.attrs["n_ensemble_members"]) == 5
    assert ds["t2m_ensemble_standard_deviation"].isel(time=0, valid_time=4).shape == (40, 37)
    assert ds["tp_ensemble_mean"].encoding["complevel"] == 4


def test_per_interval_amounts_as_the_trained_cgan_reads_them(tmp_path, mirror, s3_server, clean_run):
    """`cgan.accumulation: per_interval` differences the totals (the step before the first
    is fetched), as the trained model's data.py expects; nothing else changes."""
    work = copy_workflow(tmp_path / "wf")
    write_config(work, s3_server, accumulation="per_interval", store="file://stores/per_interval.icechunk")
    result = run_cgan(work)
    assert result.returncode == 0, result.stderr[-3000:]
    per = product(work)
    totals = product(clean_run[0])
    m = totals["tp_ensemble_mean"].values[0]
    np.testing.assert_allclose(per["tp_ensemble_mean"].values[0][1:], np.diff(m, axis=0),
                               atol=1e-6)
    assert "per interval" in per.attrs["accumulation"]


def test_reader_of_main_never_saw_a_partial_cycle(clean_run):
    _, seen = clean_run
    assert {n for n, _ in seen} >= {1}
    assert all(ok for _, ok in seen)


def test_publish_again_is_a_noop(clean_run):
    work, _ = clean_run
    repo, _ = store_main(work)
    before = repo.lookup_branch("main")
    (work / f"results/{CYCLE}/cgan/published.json").unlink()
    again = run_demo(work, f"results/{CYCLE}/cgan/published.json", "--configfile", "test.yaml",
                    env=anonymous_env())
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((work / f"results/{CYCLE}/cgan/published.json").read_text())["already_published"]
    repo, root = store_main(work)
    assert repo.lookup_branch("main") == before and root["time"].shape == (1,)


def test_server_errors_are_retried(tmp_path, mirror, s3_server, clean_run):
    work = copy_workflow(tmp_path / "wf")
    with FaultProxy(s3_server, fail_every=5) as proxy:
        write_config(work, proxy.url)
        result = run_cgan(work)
    assert result.returncode == 0, result.stderr[-3000:]
    # every fifth request failed, yet no job was run again: the clients asked again
    assert proxy.failed > 0 and proxy.seen > proxy.failed
    assert "Trying to restart job" not in result.stdout + result.stderr
    a, b = product(work), product(clean_run[0])
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values)


def test_range_answered_with_200_is_refused(tmp_path, mirror, s3_server):
    work = copy_workflow(tmp_path / "wf")
    with FaultProxy(s3_server, ignore_range=True) as proxy:
        write_config(work, proxy.url)
        result = run_cgan(work)
    assert result.returncode != 0
    logs = "".join(p.read_text() for p in (work / f"logs/{CYCLE}").rglob("cgan_*.log"))
    assert "byte-range request with the whole object (HTTP 200, not 206)" in logs
    # cgan_setup's one range request (a rule without `retries:`) was asked once: a server
    # that ignores ranges is not asked again
    assert proxy.ranged == 1, "a server that ignores ranges is not retried"
    assert not_published(work)


def test_missing_member_in_index_is_listed(tmp_path, mirror, s3_server, plan):
    root, s3 = mirror
    work = copy_workflow(tmp_path / "wf")
    write_config(work, s3_server)
    key = enfo_key(plan, 42).replace(".grib2", ".index")
    original = (root / key).read_text()
    kept = [line for line in original.splitlines()
            if not (json.loads(line).get("number") == "3" and json.loads(line)["param"] in {"tp", "2t"})]
    s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(kept) + "\n")
    try:
        result = run_cgan(work)
    finally:
        s3.put_object(Bucket=BUCKET, Key=key, Body=original)
    assert result.returncode != 0
    # caught by the preflight, before any message is fetched
    log = (work / f"logs/{CYCLE}/preflight/cgan.log").read_text()
    assert "missing from the index: tp (sfc) member 3, 2t (sfc) member 3" in log
    assert "20251127000000-42h-enfo-ef.grib2" in log
    assert not (work / f"logs/{CYCLE}/cgan_batch").exists()
    assert not_published(work)


def test_truncated_object_is_refused(tmp_path, mirror, s3_server, plan):
    root, s3 = mirror
    work = copy_workflow(tmp_path / "wf")
    write_config(work, s3_server)
    key = enfo_key(plan, 60)
    data = (root / key).read_bytes()
    s3.put_object(Bucket=BUCKET, Key=key, Body=data[: len(data) - 5000])
    try:
        result = run_cgan(work)
    finally:
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    assert result.returncode != 0
    logs = "".join(p.read_text() for p in (work / f"logs/{CYCLE}/cgan_batch").glob("*.log"))
    assert "FAILED" in logs and key.rsplit("/", 1)[1] in logs
    assert not_published(work)


def test_killed_batch_then_same_command(tmp_path, mirror, s3_server, clean_run):
    work = copy_workflow(tmp_path / "wf")
    with FaultProxy(s3_server, delay_s=0.02) as proxy:
        write_config(work, proxy.url)
        proc = subprocess.Popen([str(BIN / "snakemake"), *DEMO_PROFILE, "cgan", "--configfile", "test.yaml"],
                                cwd=work, env=anonymous_env(), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        logs = work / f"logs/{CYCLE}/cgan_batch"
        deadline = time.monotonic() + 120
        try:
            while not (logs.is_dir()
                       and any("start cgan_batch" in p.read_text() for p in logs.glob("*.log"))):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(0.3)  # mid-way through fetching and writing
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not_published(work)
    write_config(work, s3_server)
    again = run_cgan(work)
    assert again.returncode == 0, again.stderr[-3000:]
    a, b = product(work), product(clean_run[0])
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    repo, root = store_main(work)
    assert root["time"].shape == (1,) and "run/20251127_0000" not in repo.list_branches()


def test_a_publish_after_main_moved_finishes_on_top_of_it(tmp_path, mirror, s3_server):
    """Someone else committed to main between setup and publish: the same command finishes,
    the cycle lands on top of their commit, tagged, and the NetCDF is made from it."""
    work = copy_workflow(tmp_path / "wf")
    write_config(work, s3_server)
    first = run_cgan(work, "--until", "cgan_batch")
    assert first.returncode == 0, first.stderr[-3000:]
    repo = ensemble_store.open_repo(f"file://{work}/stores/cgan.icechunk", FILES, create=False)
    s = repo.writable_session("main")
    zarr.open_group(store=s.store, mode="a").attrs["edited_by"] = "someone else"
    moved = s.commit("someone else")
    result = run_cgan(work)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (work / f"logs/{CYCLE}/cgan_publish.log").read_text()
    assert f"main moved since setup of {CYCLE}: written at time index 0 of main" in log
    repo = ensemble_store.open_repo(f"file://{work}/stores/cgan.icechunk", FILES, create=False)
    tip = repo.lookup_branch("main")
    assert repo.lookup_tag(f"cycle-{CYCLE}") == tip
    assert next(iter(repo.ancestry(branch="main"))).parent_id == moved
    root = zarr.open_group(store=repo.readonly_session("main").store, mode="r")
    assert root.attrs["edited_by"] == "someone else"
    assert np.isfinite(root["tp"][0]).all()
    assert set(repo.list_branches()) == {"main"}
    assert (work / f"results/{CYCLE}/cgan/{NC}").exists()
