"""`ensflow purge`: exactly a cycle's lineage is listed, deleted and verified gone."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, REPO, copy_workflow, run_demo, run_env

from ensflow import receipts
from ensflow.adapters.storage import Storage
from ensflow.config import Settings, load_like_snakemake
from ensflow.layout import forecast_filename, forecast_windows, input_filename
from ensflow.ops import cli, retention, runlock

CYCLE, OTHER, NEVER = "20251120_0000", "20251120_0600", "20251119_1200"
# On the command line a cycle is given in ISO form: YAML and Snakemake read 20251120_0000 as an int.
ITEM_LINE = re.compile(r"^ +(\d+)  (\S+)(?:  \((.*)\))?$")


def put(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def make_cycle(work: Path, cycle: str) -> None:
    """What a run of two members leaves, plus a third member whose upload was interrupted."""
    bucket, rec = work / "bucket" / cycle, work / "results" / cycle / "receipts"
    for m in (1, 2, 3):
        name = input_filename(m)
        put(bucket / "input" / name, 1000 + m)
        files = [forecast_filename(cycle, m, a, b) for a, b in forecast_windows(144, 72)]
        for f in files[: 1 if m == 3 else None]:
            put(bucket / "forecasts" / f, 2000 + m)
        if m == 3:
            continue  # no receipts: killed between upload and receipt
        receipts.write(rec / f"input_member_{m:03d}.json",
                       {"cycle": cycle, "member": m, "object": f"file://bucket/{cycle}/input/{name}"})
        receipts.write(rec / f"forecast_member_{m:03d}.json", {"cycle": cycle, "member": m, "objects": [
            {"url": f"file://bucket/{cycle}/forecasts/{f}", "size": 2000 + m, "crc32c": None,
             "skipped": False} for f in files]})
    put(work / "results" / cycle / "cgan" / "IFS_cgan.nc", 5000)
    receipts.write(work / "results" / cycle / "cgan" / "published.json",
                   {"store": "file://stores/cgan.icechunk", "tag": f"cycle-{cycle}", "snapshot": "S1"})
    put(work / "logs" / cycle / "upload" / "member_001.log", 300)
    put(work / "benchmarks" / cycle / "upload" / "member_001.tsv", 130)
    put(work / "scratch" / cycle / "member_001" / "input_state.pkl", 4000)
    (work / "scratch" / cycle / "prepare").mkdir(parents=True)
    # Not ours, although under the cycle's prefix.
    put(bucket / "notes" / "README.txt", 77)
    put(bucket / "forecasts" / "someone_else.grib", 88)
    put(bucket / "input" / f"{input_filename(1)}.bak", 99)


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    shutil.copytree(REPO / "config", work / "config")
    make_cycle(work, CYCLE)
    make_cycle(work, OTHER)
    put(work / "stores" / "cgan.icechunk" / "chunks" / "c0", 600)
    put(work / "demo" / "opendata" / "20251120" / "00z" / "x.grib2", 700)
    (work / "elsewhere").mkdir()
    monkeypatch.chdir(work / "elsewhere")  # relative file:// URLs are the workdir's, not ours
    return work


def tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.lstat().st_size for p in root.rglob("*")
            if not p.is_dir() and ".snakemake" not in p.parts and "config" not in p.parts}


def expected_items(work: Path, cycle: str) -> tuple[set[str], set[str], set[str]]:
    """Receipted, unreceipted and local items, enumerated without the module under test."""
    rec = work / "results" / cycle / "receipts"
    receipted = set()
    for r in rec.glob("*.json"):
        data = json.loads(r.read_text())
        urls = [o["url"] for o in data.get("objects", [])] + ([data["object"]] if "object" in data else [])
        receipted |= {f"file://{work}/{u.removeprefix('file://')}" for u in urls}
    bucket = work / "bucket" / cycle
    unreceipted = {f"file://{bucket}/input/{input_filename(3)}",
                   f"file://{bucket}/forecasts/{forecast_filename(cycle, 3, 0, 72)}"}
    local = {str(p) for d in ("results", "logs", "benchmarks", "scratch")
             for p in (work / d / cycle).rglob("*") if not p.is_dir()}
    return receipted, unreceipted, local


def iso(cycle: str) -> str:
    return f"cycle={cycle[:4]}-{cycle[4:6]}-{cycle[6:8]}T{cycle[9:11]}:{cycle[11:]}"


def settings(work: Path, cycle: str = CYCLE) -> Settings:
    return load_like_snakemake(work, [], [iso(cycle)])


def purge(work: Path, cycle: str, *extra: str) -> int:
    return cli.main(["purge", "-C", str(work), "--config", iso(cycle), *extra])


def printed_items(text: str) -> dict[str, int]:
    return {m[2]: int(m[1]) for line in text.splitlines() if (m := ITEM_LINE.match(line))}


def test_plan_lists_exactly_the_cycles_lineage(work):
    plan = retention.plan_purge(settings(work), work)
    receipted, unreceipted, local = expected_items(work, CYCLE)
    assert len(receipted) == 6 and len(local) == 9
    assert {i.location for i in plan.receipted} == receipted
    assert {i.location for i in plan.unreceipted} == unreceipted
    assert {i.location for i in plan.local} == local
    for item in plan.items:
        assert item.size == Path(item.location.removeprefix("file://")).stat().st_size
    assert all(OTHER not in i.location for i in plan.items)
    foreign = {k.location for k in plan.kept if k.reason == retention.FOREIGN}
    assert foreign == {f"file://{work}/bucket/{CYCLE}/notes/README.txt",
                       f"file://{work}/bucket/{CYCLE}/forecasts/someone_else.grib",
                       f"file://{work}/bucket/{CYCLE}/input/{input_filename(1)}.bak"}
    archives = {k.location: k.detail for k in plan.kept if k.reason == retention.ARCHIVE}
    assert f"tag cycle-{CYCLE}" in archives[f"file://{work}/stores/cgan.icechunk"]
    assert plan.local_roots == [work / d / CYCLE for d in ("results", "logs", "benchmarks", "scratch")]
    assert not plan.active and not plan.gone


def test_dry_run_prints_every_item_and_changes_nothing(work, capsys):
    before = tree(work)
    assert purge(work, CYCLE) == 0
    out = capsys.readouterr().out
    assert tree(work) == before
    receipted, unreceipted, local = expected_items(work, CYCLE)
    items = printed_items(out)
    assert set(items) == receipted | unreceipted | local
    total = sum(Path(p.removeprefix("file://")).stat().st_size for p in items)
    assert f"total: {len(items)} items, {total} bytes" in out
    assert "no receipt" in out and "not ours, kept" in out and "kept (archive)" in out
    assert "kept (demo input)" in out and "Icechunk stores are archives" in out
    assert not (work / "results" / "purged").exists()


def test_yes_removes_exactly_the_plan_and_reports_verified_bytes(work, capsys):
    plan = retention.plan_purge(settings(work), work)
    before = tree(work)
    assert purge(work, CYCLE, "--yes") == 0
    out = capsys.readouterr().out
    gone = {str(Path(i.location.removeprefix("file://")).relative_to(work)) for i in plan.items}
    after = tree(work)
    assert after.pop(f"results/purged/{CYCLE}.json") > 0
    assert after == {k: v for k, v in before.items() if k not in gone}
    assert f"freed {plan.total_bytes} bytes" in out and f"of {plan.total_bytes} planned" in out
    for d in ("results", "logs", "benchmarks", "scratch"):
        assert not (work / d / CYCLE).exists()
        assert (work / d / OTHER).is_dir()
    assert not (work / "bucket" / CYCLE / "input" / input_filename(2)).exists()
    assert sorted(p.name for p in (work / "bucket" / CYCLE).rglob("*") if p.is_file()) == [
        "README.txt", f"{input_filename(1)}.bak", "someone_else.grib"]
    assert not (work / "bucket" / CYCLE / "forecasts" / forecast_filename(CYCLE, 3, 0, 72)).exists()
    record = json.loads((work / "results" / "purged" / f"{CYCLE}.json").read_text())
    assert record["complete"] and record["freed_bytes"] == plan.total_bytes
    assert {d["location"] for d in record["deleted"]} == {i.location for i in plan.items}
    assert record["code_version"] and record["remaining"] == []

    assert purge(work, CYCLE, "--yes") == 0  # again: nothing left, and it says so
    out = capsys.readouterr().out
    assert "nothing to purge" in out and "freed 0 bytes" in out and "purged at" in out


def test_a_live_run_on_the_cycle_is_refused(work, capsys, caplog):
    lock = runlock.claim(work, CYCLE)  # this process stands for a live run on CYCLE
    assert lock.held
    try:
        before = tree(work)
        assert purge(work, CYCLE) == 0
        assert "IN USE" in capsys.readouterr().out
        assert purge(work, CYCLE, "--yes") == 1
        assert tree(work) == before
        assert f"pid {os.getpid()}" in caplog.text and "nothing deleted" in caplog.text
        with pytest.raises(retention.CycleInUseError):
            retention.main_purge(settings(work), work, delete=True)
        assert purge(work, OTHER) == 0  # another cycle is not in use
    finally:
        lock.handle.close()


def test_an_object_that_survives_deletion_is_reported_and_its_receipts_kept(work, capsys, monkeypatch):
    plan = retention.plan_purge(settings(work), work)
    stuck = next(i for i in plan.receipted if "forecasts" in i.location)
    real_delete = Storage.delete
    monkeypatch.setattr(Storage, "delete",
                        lambda self, url: None if url == stuck.location else real_delete(self, url))
    assert purge(work, CYCLE, "--yes") == 1
    out = capsys.readouterr().out
    receipts_dir = work / "results" / CYCLE / "receipts"
    kept_receipts = sum(p.stat().st_size for p in receipts_dir.iterdir())
    assert f"freed {plan.total_bytes - stuck.size - kept_receipts} bytes" in out
    assert "NOT everything is gone" in out and stuck.location in out
    assert Path(stuck.location.removeprefix("file://")).exists()
    record = json.loads((work / "results" / "purged" / f"{CYCLE}.json").read_text())
    assert not record["complete"]
    assert record["remaining_bytes"] == stuck.size + kept_receipts

    monkeypatch.setattr(Storage, "delete", real_delete)  # the receipts lead the next purge to it
    assert "not in the plan" not in out
    assert purge(work, CYCLE, "--yes") == 0
    assert f"freed {stuck.size + kept_receipts} bytes" in capsys.readouterr().out
    assert not (work / "results" / CYCLE).exists()
    record = json.loads((work / "results" / "purged" / f"{CYCLE}.json").read_text())
    assert record["complete"] and not record["earlier"][0]["complete"]


def test_a_local_file_that_cannot_be_removed_is_reported(work, capsys, monkeypatch):
    plan = retention.plan_purge(settings(work), work)
    log_file = work / "logs" / CYCLE / "upload" / "member_001.log"
    real = retention._unlink

    def unlink(path: Path) -> None:
        if path == log_file:
            raise PermissionError(13, "Permission denied")
        real(path)

    monkeypatch.setattr(retention, "_unlink", unlink)
    assert purge(work, CYCLE, "--yes") == 1
    out = capsys.readouterr().out
    assert f"freed {plan.total_bytes - 300} bytes" in out and "NOT everything is gone" in out
    assert f"{log_file}: Permission denied" in out
    assert log_file.exists() and not (work / "results" / CYCLE).exists()


def test_a_cycle_that_never_ran_has_nothing_to_purge(work, capsys):
    before = tree(work)
    assert purge(work, NEVER, "--yes") == 0
    out = capsys.readouterr().out
    assert "nothing to purge" in out and "freed 0 bytes" in out
    assert tree(work) == before


# ---------------------------------------------------------------- a real demo run, GCS bucket

DEMO_CYCLE = "20251127_0000"
GCS_ARGS = ("--config", "bucket=gs://ensflow-test/retention", "members=1-2")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, gcs_emulator):
    work = copy_workflow(tmp_path_factory.mktemp("retention_run"))
    env = run_env(STORAGE_EMULATOR_HOST=gcs_emulator)
    result = run_demo(work, "aifs", *GCS_ARGS, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return work, env


def ensflow_purge(work: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ensflow"), "purge", "-C", str(work), *GCS_ARGS, *extra],
                          env=env, capture_output=True, text=True, timeout=300)


def test_demo_cycle_is_purged_from_the_gcs_bucket_and_disk(demo_run, monkeypatch):
    work, env = demo_run
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", env["STORAGE_EMULATOR_HOST"])
    storage = Storage()
    prefix = f"gs://ensflow-test/retention/{DEMO_CYCLE}/"
    objects = {o.url: o.size for o in storage.list_prefix("gs://ensflow-test/retention/")}
    assert len(objects) == 2 + 2 * 11 and all(u.startswith(prefix) for u in objects)
    roots = [work / d / DEMO_CYCLE for d in ("results", "logs", "benchmarks", "scratch")]
    local = {str(Path(d) / f): (Path(d) / f).lstat().st_size
             for r in roots for d, _, files in os.walk(r) for f in files}
    expected = objects | local
    untouched = {d: tree(work / d) for d in ("stores", "demo")}
    assert untouched["demo"]

    dry = ensflow_purge(work, env)
    assert dry.returncode == 0, dry.stderr[-4000:]
    assert printed_items(dry.stdout) == expected
    assert "bucket objects without a receipt" not in dry.stdout
    assert {o.url: o.size for o in storage.list_prefix(prefix)} == objects
    assert all(r.is_dir() for r in roots[:3])

    done = ensflow_purge(work, env, "--yes")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    total = sum(expected.values())
    assert f"freed {total} bytes" in done.stdout and f"of {total} planned" in done.stdout
    assert storage.list_prefix(prefix) == []
    assert not any(r.exists() for r in roots)
    assert {d: tree(work / d) for d in ("stores", "demo")} == untouched
    record = json.loads((work / "results" / "purged" / f"{DEMO_CYCLE}.json").read_text())
    assert record["freed_bytes"] == record["planned_bytes"] == total


def test_a_cluster_cycle_is_purged_from_the_storage_prefix(work, gcs_env, capsys):
    """A Kubernetes run keeps Snakemake's files (receipts, logs, benchmarks, products)
    under the storage prefix: they are the cycle's lineage there, and its receipts name
    the bucket objects to delete."""
    prefix = "gs://ensflow-test/purge-cluster"
    storage = Storage()
    receipted, unreceipted, _ = expected_items(work, CYCLE)
    uploaded = {}
    for d in ("results", "logs", "benchmarks"):
        for path in sorted((work / d / CYCLE).rglob("*")):
            if path.is_file():
                url = f"{prefix}/{path.relative_to(work).as_posix()}"
                storage.put_file(path, url)
                uploaded[url] = path.stat().st_size
        shutil.rmtree(work / d / CYCLE)  # nothing of the run on the submitting machine
    other_cycle = f"{prefix}/results/{OTHER}/receipts/input_member_001.json"
    storage.put_file(work / "results" / OTHER / "receipts" / "input_member_001.json", other_cycle)

    assert purge(work, CYCLE, "--storage-prefix", prefix) == 0
    listed = printed_items(capsys.readouterr().out)
    assert {u for u in listed if u.startswith(prefix)} == set(uploaded)
    assert receipted | unreceipted <= set(listed)
    assert storage.stat(next(iter(uploaded))) is not None  # the dry-run deleted nothing
    bucket_bytes = sum(Path(u.removeprefix("file://")).stat().st_size for u in receipted | unreceipted)
    local_bytes = sum(p.stat().st_size for d in (work / "scratch" / CYCLE,
                                                  work / ".snakemake" / "ensflow-mirror" / CYCLE)
                      for p in d.rglob("*") if p.is_file())

    assert purge(work, CYCLE, "--storage-prefix", prefix, "--yes") == 0
    out = capsys.readouterr().out
    assert not storage.list_prefix(f"{prefix}/results/{CYCLE}/")
    assert not storage.list_prefix(f"{prefix}/logs/{CYCLE}/")
    assert not any(Path(u.removeprefix("file://")).exists() for u in receipted | unreceipted)
    assert storage.stat(other_cycle) is not None and (work / "bucket" / OTHER).is_dir()
    freed, planned = map(int, re.search(r"freed (\d+) bytes \(.*\) of (\d+) planned", out).groups())
    assert freed == planned == sum(uploaded.values()) + bucket_bytes + local_bytes
    assert not (work / ".snakemake" / "ensflow-mirror" / CYCLE).exists()
