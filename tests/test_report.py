"""The run report and `ensflow status` on a synthetic, half-finished cycle with known numbers."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import logging
import struct
import zlib
from pathlib import Path

import pytest

from ensflow import logs
from ensflow.config import Settings, load
from ensflow.errors import EnsflowError
from ensflow.ops import report, run_record, status

REPO = Path(__file__).resolve().parents[1]
CYCLE = "20251127_0000"
T0 = dt.datetime(2025, 11, 27, 6, 0, 0)
RUNNING_START = T0 + dt.timedelta(hours=1)
NOW = RUNNING_START + dt.timedelta(seconds=60)
GPU_PRICE, CPU_PRICE = 3.0, 0.1


def settings(**forecast: object) -> Settings:
    return load(REPO / "config/config.yaml", {
        "cycle": CYCLE, "members": "1-4",
        "forecast": {"gpus": None, "members_per_gpu": 2, **forecast},
        "cgan": {"decode_workers": 2},
        "report": {"gpu_price_per_hour": GPU_PRICE, "cpu_price_per_hour": CPU_PRICE,
                   "currency": "EUR", "log_excerpt_lines": 3},
    })


def stamp(t: dt.datetime, level: str, name: str, msg: str) -> str:
    return f"{t:%Y-%m-%d %H:%M:%S},{t.microsecond // 1000:03d} {level} {name}: {msg}"


def write_log(path: Path, name: str, start: dt.datetime, end: str | None, seconds: float = 0.0,
              extra: list[str] | None = None, after: list[str] | None = None) -> None:
    """A log as ensflow.logs writes it: start, some lines, then done / FAILED / nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [stamp(start, "INFO", "ensflow.step", f"start {name}")]
    lines += [stamp(start + dt.timedelta(seconds=i + 1), "INFO", "ensflow.x", x)
              for i, x in enumerate(extra or [])]
    t_end = start + dt.timedelta(seconds=seconds)
    if end == "done":
        lines.append(stamp(t_end, "INFO", "ensflow.step", f"done {name} in {seconds:.1f}s"))
    elif end is not None:
        lines.append(stamp(t_end, "ERROR", "ensflow.step", f"FAILED {name} after {seconds:.1f}s{end}"))
    path.write_text("\n".join([*lines, *(after or [])]) + "\n")
    # and the structured record the job keeps beside its log (what status and report read)
    rule, *rest = name.split()
    wildcards = {"cycle": CYCLE}
    if len(rest) == 2:
        wildcards[rest[0]] = rest[1]
    elif rest:
        wildcards["stage" if rule == "preflight" else "batch"] = rest[0]
    status = "running" if end is None else "done" if end == "done" else "failed"
    error = None if status != "failed" else (end.removeprefix(": ") or (after or [""])[-1])
    logs.write_record(path.with_suffix(".json"), {
        "rule": rule, "wildcards": wildcards, "threads": 2 if rule == "cgan_batch" else 1,
        "name": name, "status": status, "started": start.isoformat(timespec="milliseconds"),
        "ended": None if end is None else t_end.isoformat(timespec="milliseconds"),
        "seconds": None if end is None else seconds, "error": error,
        # a running job's heartbeat came with its last log line
        "last_seen": (start + dt.timedelta(seconds=len(extra or []))).isoformat()})


def write_bench(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                    f"{seconds}\t0:00:{int(seconds):02d}\t512.5\t3000\t480\t490\t10\t0.1\t90\t"
                    f"{seconds / 2}\n")


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"\x00\xff\x00\x00"  # one red pixel
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# member 1 and 2 uploaded; 3 in inference; 4 failed in fetch_input
CHAINS = {1: (10.0, 20.0, 100.0, 30.0), 2: (10.0, 20.0, 200.0, 30.0)}
# seconds after its forecast job started / before it ended that each member was not on the GPU
GPU_SPANS = {1: (5.0, 1.0), 2: (3.0, 2.0)}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    logs, bench = tmp_path / "logs" / CYCLE, tmp_path / "benchmarks" / CYCLE
    res = tmp_path / "results" / CYCLE
    t = T0
    for m, secs in CHAINS.items():
        for rule, s in zip(run_record.CHAIN, secs, strict=True):
            write_log(logs / rule / f"member_{m:03d}.log", f"{rule} member {m:03d}", t, "done", s)
            t += dt.timedelta(seconds=s + 1)
    write_bench(bench / "forecast" / "member_001.tsv", 110.0)  # wall time counts, not the log's 100 s
    for m in (3, 4):
        write_log(logs / "prepare_input" / f"member_{m:03d}.log", f"prepare_input member {m:03d}", t,
                  "done", 10.0)
    write_log(logs / "fetch_input" / "member_003.log", "fetch_input member 003", t, "done", 20.0)
    write_log(logs / "forecast" / "member_003.log", "forecast member 003", RUNNING_START, None,
              extra=[f"step {i}" for i in range(30)])  # last line 30 s after the start
    write_log(logs / "fetch_input" / "member_004.log", "fetch_input member 004", t, ": checksum <abc> "
              "does not match", 5.0, extra=["EARLY-LINE", "opening", "reading", "checking"])
    write_log(logs / "preflight" / "aifs.log", "preflight aifs", T0 - dt.timedelta(minutes=1), "done", 0.5)
    write_log(logs / "cgan_batch" / "batch_00.log", "cgan_batch 00", t, "done", 4.0)
    write_bench(bench / "cgan_batch" / "batch_00.tsv", 6.0)
    write_log(logs / "cgan_setup.log", "cgan_setup", t, "", 2.0,
              after=["Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: bad step"])
    write_log(tmp_path / "logs" / "demo_checkpoint.log", "demo_checkpoint", T0 - dt.timedelta(days=1),
              "done", 50.0)
    for m, (on, off) in GPU_SPANS.items():  # when each member was on the GPU (job-relative)
        path = logs / "forecast" / f"member_{m:03d}.json"
        record = json.loads(path.read_text())
        start, end = (dt.datetime.fromisoformat(record[k]) for k in ("started", "ended"))
        record.update(gpu_slot="gpu0.slot0", inference=[
            (start + dt.timedelta(seconds=on)).isoformat(), (end - dt.timedelta(seconds=off)).isoformat()])
        path.write_text(json.dumps(record))
    rec = res / "receipts"
    rec.mkdir(parents=True)
    for m in (1, 3, 4):
        (rec / f"input_member_{m:03d}.json").write_text(json.dumps(
            {"member": m, "object": f"file://b/in_{m}.pkl", "size": 1000}))
    (rec / "input_member_002.json").write_text(json.dumps(
        {"member": 2, "bytes": 1000, "objects": [{"url": "u", "size": 1000, "skipped": True}]}))
    (rec / "forecast_member_001.json").write_text(json.dumps({"member": 1, "bytes": 1200, "objects": [
        {"url": "a", "size": 500, "skipped": False}, {"url": "b", "size": 700, "skipped": True}]}))
    (rec / "forecast_member_002.json").write_text(json.dumps({"member": 2, "bytes": 1000, "objects": [
        {"url": "c", "size": 500, "skipped": False}, {"url": "d", "size": 500, "skipped": False}]}))
    (res / "checkpoint.json").write_text(json.dumps({"sha256": "ab" * 32, "checkpoint": "c.ckpt"}))
    (res / "quest").mkdir()
    (res / "quest" / "published.json").write_text(json.dumps({"store": "file://s", "snapshot": "SNAP123",
                                                              "tag": "cycle-x"}))
    maps = res / "quest" / "maps"
    maps.mkdir()
    for name in ("tas_p1.png", "pr_p2.png"):
        (maps / name).write_bytes(tiny_png())
    return tmp_path


def test_every_job_and_rule_appears_with_its_seconds(tree):
    path = report.write_run_report(settings(), tree)
    assert path == tree / "results" / CYCLE / "report.html"
    data = json.loads(path.with_suffix(".json").read_text())
    jobs = {(j["rule"], j["label"]): j for j in data["jobs"]}
    assert len(jobs) == len(list((tree / "logs").rglob("*.log")))
    assert jobs[("forecast", "member 002")]["seconds"] == 200.0
    assert jobs[("forecast", "member 003")]["status"] == "running"
    assert jobs[("forecast", "member 003")]["seconds"] == 30.0
    assert jobs[("preflight", "aifs")]["status"] == "done"  # preflight_aifs.log is rule preflight
    assert jobs[("cgan_setup", None)]["error"] == "ValueError: bad step"
    assert jobs[("forecast", "member 001")]["benchmark"]["s"] == 110.0
    assert set(data["rules"]) == {*run_record.CHAIN, "preflight", "cgan_batch", "cgan_setup",
                                  "demo_checkpoint"}
    assert data["rules"]["forecast"] == {"jobs": 3, "done": 2, "failed": 0, "running": 1,
                                         "total_s": 330.0, "mean_s": 110.0, "max_s": 200.0}
    assert data["rules"]["fetch_input"]["failed"] == 1
    rows = {r["member"]: r for r in data["member_table"]}
    assert [rows[1][r] for r in run_record.CHAIN] == list(CHAINS[1])
    assert [rows[m]["status"] for m in (1, 2, 3, 4)] == ["done", "done", "running", "failed"]
    html = path.read_text()
    for rule in data["rules"]:
        assert f"<td>{rule}</td>" in html
    for j in data["jobs"]:
        assert j["log"] in html
    assert '<td class="n">200.0</td>' in html
    assert data["checkpoint_sha256"] == "ab" * 32 and "ab" * 32 in html
    assert data["snapshots"]["quest"]["snapshot"] == "SNAP123" and "SNAP123" in html
    assert data["state"] == "failed"
    assert not list((tree / "results" / CYCLE).glob(".*part"))


def test_failed_job_excerpt_is_escaped_and_bounded(tree):
    path = report.write_run_report(settings(), tree)
    data = json.loads(path.with_suffix(".json").read_text())
    failures = {f["job"]: f for f in data["failures"]}
    assert set(failures) == {"fetch_input member 004", "cgan_setup"}
    fetch = failures["fetch_input member 004"]
    assert fetch["error"] == "checksum <abc> does not match"
    assert len(fetch["excerpt"]) == 3 and fetch["excerpt"][-1].endswith("checksum <abc> does not match")
    assert "EARLY-LINE" not in "\n".join(fetch["excerpt"])
    html = path.read_text()
    assert "checksum &lt;abc&gt; does not match" in html and "<abc>" not in html
    assert "ValueError: bad step" in html


def test_bytes_gpu_hours_and_cost(tree):
    path = report.write_run_report(settings(), tree)
    data = json.loads(path.with_suffix(".json").read_text())
    assert data["bytes"]["input"] == {"receipts": 4, "uploaded": 3000, "skipped": 1000, "total": 4000}
    assert data["bytes"]["forecast"] == {"receipts": 2, "uploaded": 1500, "skipped": 700, "total": 2200}
    assert (data["bytes"]["uploaded"], data["bytes"]["skipped"], data["bytes"]["total"]) == (4500, 1700, 6200)
    c = data["cost"]
    # forecast wall seconds: 110 (benchmark) + 200 + 30 (running), half a GPU each (2 members per GPU)
    assert c["gpus_per_forecast_job"] == 0.5
    assert c["gpu_hours"] == pytest.approx(340 * 0.5 / 3600)
    # prepare 4x10, fetch 3x20 + 5 (failed), upload 2x30, preflight 0.5, cgan_batch 6 s x 2 threads,
    # cgan_setup 2; the demo checkpoint (logs/*.log, shared by cycles) is not costed
    cpu_s = 40 + 65 + 60 + 0.5 + 12 + 2
    assert c["cpu_core_hours"] == pytest.approx(cpu_s / 3600)
    assert c["estimated"] == pytest.approx(340 * 0.5 / 3600 * GPU_PRICE + cpu_s / 3600 * CPU_PRICE)
    assert c["currency"] == "EUR" and c["device"] == "cpu"
    html = path.read_text()
    assert f"{c['estimated']:.4f} EUR" in html and "counted as the GPU stage" in html


def test_maps_are_embedded(tree):
    html = report.write_run_report(settings(), tree).read_text()
    png = base64.b64encode(tiny_png()).decode()
    assert html.count(f"data:image/png;base64,{png}") == 2
    assert "tas_p1.png" in html and "pr_p2.png" in html
    assert "src=\"http" not in html and "href=" not in html


def test_gpu_busy_fraction_counts_inference_over_the_forecast_window(tree):
    summary = json.loads(report.write_run_report(settings(), tree).with_suffix(".json").read_text())
    busy = summary["gpu_busy"]
    # inference 94 s + 195 s; window from member 1's forecast start (T0+32 s) to member 2's
    # forecast end (T0+396 s); member 3's forecast is still running and counts nowhere
    assert busy["slots"] == ["gpu0.slot0"] and busy["gpu_seconds"] == 289.0
    assert busy["window_seconds"] == 364.0
    assert busy["fraction_window"] == round(289 / 364, 4)
    # the run: from the preflight (T0-60 s) to fetch_input member 003's end, 20 s after both
    # chains (164 s + 264 s with their 1 s gaps)
    run_start, run_end = T0 - dt.timedelta(minutes=1), T0 + dt.timedelta(seconds=164 + 264 + 20)
    assert busy["run_seconds"] == (run_end - run_start).total_seconds()
    lanes = {lane["name"]: lane for lane in summary["timeline"]["lanes"]}
    assert [b["name"] for b in lanes["GPU gpu0.slot0"]["bars"]] == ["forecast member 001",
                                                                     "forecast member 002"]
    cpu = [b for name, lane in lanes.items() if name.startswith("CPU") for b in lane["bars"]]
    assert not any(b["rule"] == "forecast" for b in cpu)
    for lane in lanes.values():  # a lane never holds two jobs at once
        ends = [(b["start"], b["end"]) for b in lane["bars"]]
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(ends))


def test_the_timeline_shows_idle_gpu_as_seen_in_chromium(tree, tmp_path):
    """Headless Chromium renders the report; in the screenshot the GPU lane's solid (inference)
    pixels over the lane's extent give the GPU-busy fraction the page states."""
    import shutil
    import subprocess

    from PIL import Image

    from ensflow.ops.timeline import IDLE_TINT, RULE_COLOURS, _pale

    page = report.write_run_report(settings(), tree)
    shot = tmp_path / "report.png"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed (make test installs it)"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1280,900", f"--screenshot={shot}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    img = Image.open(shot).convert("RGB")
    solid = tuple(int(RULE_COLOURS["forecast"][i:i + 2], 16) for i in (1, 3, 5))
    pale = tuple(int(_pale(RULE_COLOURS["forecast"], IDLE_TINT)[i:i + 2], 16) for i in (1, 3, 5))

    def near(p, c):
        return sum(abs(a - b) for a, b in zip(p, c, strict=True)) <= 12

    px = img.load()
    rows = [[px[x, y] for x in range(img.width)] for y in range(img.height)]
    # the GPU lane: the row with the most inference pixels (the legend swatch is small)
    y = max(range(img.height), key=lambda y: sum(near(p, solid) for p in rows[y]))
    on = [x for x, p in enumerate(rows[y]) if near(p, solid)]
    idle = [x for x, p in enumerate(rows[y]) if near(p, pale)]
    assert len(on) > 300 and len(idle) > 5
    extent = max(on + idle) - min(on + idle) + 1
    assert abs(len(on) / extent - 289 / 364) < 0.02
    assert len(on) / (len(on) + len(idle)) == pytest.approx(289 / 300, abs=0.02)
    assert "GPU busy 79.4%" in page.read_text()


def test_status_of_a_half_finished_cycle(tree):
    st = status.cycle_status(settings(), tree, now=NOW, live_pids=[4242])
    counts = {s.stage: (s.done, s.running, s.failed, s.waiting) for s in st.stages}
    assert counts == {"prepare_input": (4, 0, 0, 0), "fetch_input": (3, 0, 1, 0),
                      "forecast": (2, 1, 0, 1), "upload": (2, 0, 0, 2)}
    assert (st.members, st.done, st.remaining) == (4, 2, 2)
    assert [(r.name, r.seconds) for r in st.running] == [("forecast member 003", 60.0)]
    assert st.failed_members == [4]
    assert {f.name: f.error for f in st.failed} == {"fetch_input member 004": "checksum <abc> does not match",
                                                    "cgan_setup": "ValueError: bad step"}
    # Inference paces the ETA: forecasts took 100 s and 200 s, member 3's has run 60 s of
    # the median 150 s, member 4 failed (not redone in this run), then one 30 s upload.
    assert (st.median_forecast_s, st.median_upload_s, st.to_infer) == (150.0, 30.0, 0)
    assert st.parallelism == 1  # one forecast running, no GPU count configured
    assert st.eta_s == pytest.approx((150.0 - 60.0) / 1 + 30.0)
    text = status.format_status(st)
    assert "2/4 members uploaded" in text and "ETA 2m00s" in text and "checksum <abc>" in text
    assert "forecast member 003" in text and "1m00s" in text


def test_status_parallelism_from_gpu_slots_and_no_live_run(tree):
    st = status.cycle_status(settings(gpus=2), tree, now=NOW, live_pids=[])
    assert st.parallelism == 4  # 2 GPUs x 2 members per GPU
    assert st.eta_s == pytest.approx((150.0 - 60.0) / 4 + 30.0)
    assert "no run active" in status.format_status(st) and "unfinished" in status.format_status(st)


def test_eta_counts_members_still_to_infer(tree):
    """Member 4 fixed and waiting again: one more inference ahead of the last upload."""
    (tree / "logs" / CYCLE / "fetch_input" / "member_004.json").unlink()
    st = status.cycle_status(settings(), tree, now=NOW, live_pids=[4242])
    assert st.to_infer == 1 and st.failed_members == []
    assert st.eta_s == pytest.approx((150.0 + 90.0) / 1 + 30.0)


def test_eta_unknown_until_a_forecast_finished(tree):
    for p in (tree / "results" / CYCLE / "receipts").glob("forecast_member_*.json"):
        p.unlink()
    for m in CHAINS:
        (tree / "logs" / CYCLE / "forecast" / f"member_{m:03d}.json").unlink()
    st = status.cycle_status(settings(), tree, now=NOW, live_pids=[])
    assert st.done == 0 and st.eta_s is None
    assert "ETA unknown" in status.format_status(st)


def test_main_status_prints_and_returns_zero(tree, monkeypatch, capsys):
    monkeypatch.setattr(status, "active_pids", lambda workdir, cycle: [])
    assert status.main_status(settings(), tree) == 0
    assert "members uploaded" in capsys.readouterr().out


def test_write_run_report_never_raises(tmp_path, caplog):
    assert report.write_run_report(settings(), tmp_path / "missing") is None
    assert report.write_run_report(settings(), tmp_path) is None  # empty tree
    (tmp_path / "logs" / CYCLE).mkdir(parents=True)
    logs.write_record(tmp_path / "logs" / CYCLE / "empty.json", {"rule": "empty", "status": "done"})
    (tmp_path / "results").write_text("not a directory")  # the report cannot be written
    with caplog.at_level(logging.WARNING, logger="ensflow.ops.report"):
        assert report.write_run_report(settings(), tmp_path) is None
    assert "run report for cycle 20251127_0000 not written" in caplog.text


def test_main_report_to_a_chosen_file_and_refuses_an_empty_cycle(tree, tmp_path, capsys):
    out = tmp_path / "elsewhere" / "cycle.html"
    assert report.main_report(settings(), tree, str(out)) == 0
    assert out.is_file() and (tmp_path / "elsewhere" / "cycle.json").is_file()
    assert str(out) in capsys.readouterr().out
    with pytest.raises(EnsflowError, match="nothing to report"):
        report.main_report(settings(), tmp_path / "nothing", None)


def test_report_and_status_of_a_cluster_run_read_the_storage_prefix(tree, tmp_path, gcs_env, capsys):
    """On a cluster the jobs' files live under Snakemake's storage prefix, not locally:
    the same report comes out of a mirror of them (on the GCS emulator here)."""
    from ensflow.adapters.storage import Storage

    prefix = "gs://ensflow-test/report-prefix"
    local = report.write_run_report(settings(), tree)
    expected = json.loads(local.with_suffix(".json").read_text())
    files = [p for p in tree.rglob("*") if p.is_file() and not p.name.startswith("report.")]
    Storage().put_files([(p, f"{prefix}/{p.relative_to(tree).as_posix()}") for p in files], parallel=8)

    submit = tmp_path / "submit"  # the submitting machine: nothing of the run on its disk
    path = report.write_run_report(settings(), submit, storage_prefix=prefix)
    assert path == submit / "results" / CYCLE / "report.html"
    got = json.loads(path.with_suffix(".json").read_text())
    for key in ("rules", "member_table", "bytes", "cost", "maps", "checkpoint_sha256", "snapshots"):
        assert got[key] == expected[key], key
    assert [(j["rule"], j["label"], j["seconds"]) for j in got["jobs"]] == [
        (j["rule"], j["label"], j["seconds"]) for j in expected["jobs"]]
    assert path.read_text().count("data:image/png;base64,") == 2

    assert status.main_status(settings(), submit, storage_prefix=prefix) == 0
    assert "2/4 members uploaded" in capsys.readouterr().out
