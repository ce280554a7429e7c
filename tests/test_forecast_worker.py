"""The model stays loaded across members: one process per GPU slot gives the same bytes as a
member run in its own job, loads the checkpoint once, survives a bad member and a killed job;
GRIB encoding runs beside the runner through a bounded queue."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import threading
import time
from pathlib import Path

import google_crc32c
import numpy as np
import pytest

from ensflow.adapters import checkpoint_info, safe_pickle
from ensflow.adapters.devices import Slot
from ensflow.config import load
from ensflow.demo.model import save_demo_checkpoint
from ensflow.errors import ForecastError
from ensflow.layout import forecast_windows
from ensflow.stages import forecast

REPO = Path(__file__).resolve().parents[1]
CYCLE = dt.datetime(2025, 11, 27)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = save_demo_checkpoint(tmp_path_factory.mktemp("ckpt") / "demo.ckpt")
    return checkpoint_info.read(str(path))


def settings_for(checkpoint, scratch: Path, **forecast_overrides):
    return load(REPO / "config" / "config.yaml", {
        "checkpoint": checkpoint.path, "scratch": str(scratch),
        "bucket": f"file://{scratch.parent / 'bucket'}",
        "forecast": {"lead_time": 792, "hours_per_file": 72, "worker_idle_seconds": 20,
                     **forecast_overrides}})


def write_input(checkpoint, path: Path, member: int, date: dt.datetime = CYCLE) -> Path:
    rng = np.random.default_rng(member)
    state = {"date": date, "fields": {
        f.name: (280.0 + rng.standard_normal((2, checkpoint.npoints))).astype(np.float32)
        for f in checkpoint.input_fields}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(safe_pickle.dumps(state))
    return path


def outputs_in(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return [directory / f"w{a:03d}.grib" for a, _ in forecast_windows(792, 72)]


def files_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_one_model_process_gives_a_jobs_bytes_and_loads_the_checkpoint_once(checkpoint, tmp_path):
    settings = settings_for(checkpoint, tmp_path / "scratch")
    slot = Slot(None, 0)
    pids, served = set(), []
    for member in (1, 2, 3):
        pkl = write_input(checkpoint, tmp_path / f"in/{member}.pkl", member)
        in_job = tmp_path / f"job/{member}"
        forecast.run_member(settings, member, pkl, outputs_in(in_job), in_job / "quest.npz")
        via = tmp_path / f"worker/{member}"
        result = forecast.run_on_worker(settings, slot, member, pkl, outputs_in(via),
                                               via / "quest.npz", 1)
        pids.add(result["pid"])
        served.append(result["served"])
        got, want = files_bytes(via), files_bytes(in_job)
        assert list(got) == list(want) and len(got) == 12  # 11 GRIB windows + quest fields
        assert got == want, f"member {member}: the model process wrote other bytes"
        start, end = (dt.datetime.fromisoformat(t) for t in result["inference"])
        assert start < end
    assert len(pids) == 1 and served == [1, 2, 3]
    log = (tmp_path / "scratch/.gpu-slots/model-process.cpu.log").read_text()
    assert log.count("model loaded in") == 1
    assert log.count("model already loaded") == 2


def test_a_bad_member_is_named_and_the_process_serves_the_next(checkpoint, tmp_path):
    settings = settings_for(checkpoint, tmp_path / "scratch")
    slot = Slot(None, 0)
    wrong_day = write_input(checkpoint, tmp_path / "in/7.pkl", 7, CYCLE - dt.timedelta(days=1))
    with pytest.raises(ForecastError, match=r"member 007: input state is for 20251126_0000"):
        forecast.run_on_worker(settings, slot, 7, wrong_day, outputs_in(tmp_path / "o7"),
                                      None, 1)
    good = write_input(checkpoint, tmp_path / "in/8.pkl", 8)
    result = forecast.run_on_worker(settings, slot, 8, good, outputs_in(tmp_path / "o8"),
                                           None, 1)
    assert result["served"] == 1  # the failed member counted nothing, the process lived on


def _run_in_child(settings_args, member, pkl, out):  # a forecast job, killed mid-member
    from ensflow import logs

    logs.setup(None)
    settings = settings_for(*settings_args)
    forecast.run_on_worker(settings, Slot(None, 0), member, pkl, outputs_in(out), None, 1)


def test_a_killed_job_abandons_its_member_and_the_next_job_is_served(checkpoint, tmp_path):
    scratch = tmp_path / "scratch"
    settings = settings_for(checkpoint, scratch)
    pkl = write_input(checkpoint, tmp_path / "in/5.pkl", 5)
    # first member: the process starts and loads the model
    first = forecast.run_on_worker(settings, Slot(None, 0), 5, pkl,
                                          outputs_in(tmp_path / "o5"), None, 1)
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_run_in_child,
                        args=((checkpoint, scratch), 6, pkl, tmp_path / "o6"))
    child.start()
    log = scratch / ".gpu-slots/model-process.cpu.log"
    deadline = time.monotonic() + 60
    while not list((tmp_path / "o6").glob("w072.grib")) and time.monotonic() < deadline:
        time.sleep(0.05)
    child.kill()  # like kill -9 of a forecast job in its second window
    child.join()
    while "abandoned" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "request abandoned: its job went away (member 006)" in log.read_text()
    again = forecast.run_on_worker(settings, Slot(None, 0), 6, pkl,
                                          outputs_in(tmp_path / "o6b"), None, 1)
    assert again["pid"] == first["pid"] and again["served"] == 2


class SlowWriter:
    """Stands in for MemberWriter: counts what it holds, fails where told."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.added: list[int] = []
        self.fail_at = fail_at
        self.release = threading.Event()

    def add(self, step, fields):
        self.release.wait()
        if step == self.fail_at:
            raise ForecastError(f"member 001: step {step}: non-finite values")
        self.added.append(step)


def test_the_writer_queue_holds_at_most_its_depth_and_stops_the_runner_on_error():
    slow = SlowWriter()
    writer = forecast.WriterThread(slow, depth=2)
    put = threading.Thread(target=lambda: [writer.put(s, {}) for s in range(6, 61, 6)])
    put.start()
    time.sleep(0.3)
    # one state in the writer's hands, two queued; the runner waits for the third
    assert writer.queue.qsize() == 2 and put.is_alive()
    slow.release.set()
    put.join(5)
    writer.join()
    assert slow.added == list(range(6, 61, 6))

    failing = SlowWriter(fail_at=12)
    failing.release.set()
    writer = forecast.WriterThread(failing, depth=2)
    with pytest.raises(ForecastError, match="step 12: non-finite"):
        for s in range(6, 793, 6):
            writer.put(s, {})
            time.sleep(0.001)
        writer.join()
    assert failing.added == [6]


class FakeRunner:
    """Calls its model (0.1 s of "GPU") once per state, as anemoi's forecast loop does."""

    def __init__(self) -> None:
        self.calls = 0

    def predict_step(self, *args, **kwargs):
        self.calls += 1
        time.sleep(0.1)

    def run(self, steps):
        for s in steps:
            self.predict_step()
            yield s


def test_the_writer_starts_a_state_only_while_the_runner_is_in_its_model():
    written = SlowWriter()
    written.release.set()
    writer = forecast.WriterThread(written, depth=2)
    runner = FakeRunner()
    states = iter(runner.run([6, 12]))

    def runner_gets_a_state():  # as forecast_member does with each state
        step = next(states)
        writer.runner_busy()
        writer.put(step, {})

    with forecast.gate_on_model_calls(runner, writer):
        runner_gets_a_state()
        time.sleep(0.3)
        assert written.added == []  # the runner works on the host: encoding waits
        runner_gets_a_state()  # its model call for step 12 let step 6 be written
        assert written.added == [6]
        time.sleep(0.3)
        assert written.added == [6]
        # with the gate shut and the queue full, a waiting runner opens it: neither stalls
        put = threading.Thread(target=lambda: [writer.put(s, {}) for s in (18, 24, 30)])
        put.start()
        put.join(5)
        assert not put.is_alive() and written.added[:2] == [6, 12]
        writer.join()
    assert written.added == [6, 12, 18, 24, 30] and runner.calls == 2
    # the runner outlives the member in a model process: its own method is back
    assert "predict_step" not in vars(runner)


def test_the_writer_encodes_each_state_as_the_runner_gave_it(checkpoint, tmp_path, monkeypatch):
    """The runner's arrays reach the writer uncopied (on a CPU device, views of each step's
    output tensor); encoded a step or two later, each must still hold its own step."""
    import torch

    from ensflow.science import input_state

    settings = settings_for(checkpoint, tmp_path / "scratch")
    member = 2
    pkl = write_input(checkpoint, tmp_path / "in.pkl", member)
    seen: dict[int, dict[str, np.ndarray]] = {}
    add = forecast.MemberWriter.add

    def add_later(self, step, fields):  # a slow writer: the runner goes on ahead
        time.sleep(0.005)
        seen[step] = {k: np.array(v) for k, v in fields.items()}
        add(self, step, fields)

    monkeypatch.setattr(forecast.MemberWriter, "add", add_later)
    forecast.run_member(settings, member, pkl, outputs_in(tmp_path / "out"))

    runner = forecast.new_runner(settings, member)  # the same member again, copied as it comes
    torch.manual_seed(forecast.member_seed(settings, member))
    want = {}
    for out in runner.run(input_states=input_state.load(str(pkl), checkpoint, "member 002"),
                          lead_time=792):
        step = round((out["date"] - CYCLE) / dt.timedelta(hours=1))
        want[step] = {k: np.array(out["fields"][k]) for k in seen[6]}
    assert sorted(seen) == sorted(want) == list(range(6, 793, 6))
    for step, fields in want.items():
        for name, values in fields.items():
            np.testing.assert_array_equal(seen[step][name], values, err_msg=f"{name} at {step} h")
    # steps differ, so another step's values in a state's place would have shown
    assert not np.array_equal(want[6]["2t"], want[12]["2t"])


def test_windows_reach_the_bucket_during_the_forecast_and_the_upload_job_only_checks_them(
        checkpoint, tmp_path):
    """`forecast.upload_ahead`: each window is sent once written, with the crc32c computed as
    it was written; the upload job finds every object there and sends nothing again."""
    from ensflow.adapters import storage as st
    from ensflow.layout import forecast_object
    from ensflow.stages.upload import upload_member

    settings = settings_for(checkpoint, tmp_path / "scratch")
    pkl = write_input(checkpoint, tmp_path / "in/3.pkl", 3)
    out = tmp_path / "o3"
    sent_at: dict[str, float] = {}
    put_file = st.Storage.put_file

    def timed_put(self, local, url):
        sent_at[Path(local).name] = time.monotonic()
        return put_file(self, local, url)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(st.Storage, "put_file", timed_put)
        forecast.run_member(settings, 3, pkl, outputs_in(out), None)
    ended = time.monotonic()
    windows = outputs_in(out)
    # each window once done, the last one left to the upload job beside the next member
    assert sorted(sent_at) == sorted(p.name for p in windows[:-1])
    assert sent_at[windows[0].name] < sent_at[windows[-2].name] - 0.2 < ended  # not all at the end
    for window in windows[:-1]:
        obj = tmp_path / "bucket" / settings.cycle / "forecasts" / window.name
        assert obj.read_bytes() == window.read_bytes()
        computed = st.crc32c_text(google_crc32c.Checksum(window.read_bytes()))
        assert st.remembered_crc32c(window) == computed  # kept while it was written
        assert st.Storage().stat(forecast_object(settings.bucket, settings.cycle,
                                                 window.name)).crc32c == computed
    receipt = tmp_path / "receipt.json"
    upload_member(settings, 3, windows, receipt)
    objects = json.loads(receipt.read_text())["objects"]
    assert [o["skipped"] for o in objects] == [True] * 10 + [False]
    assert st.remembered_crc32c(windows[-1]) == objects[-1]["crc32c"]


def test_a_window_that_could_not_be_sent_ahead_is_left_to_the_upload_job(checkpoint, tmp_path,
                                                                          caplog):
    from ensflow.stages.upload import upload_member

    (tmp_path / "not-a-directory").write_text("")
    broken = load(REPO / "config" / "config.yaml", {
        "checkpoint": checkpoint.path, "scratch": str(tmp_path / "scratch"),
        "bucket": f"file://{tmp_path / 'not-a-directory' / 'bucket'}",
        "forecast": {"lead_time": 792, "hours_per_file": 72}})
    pkl = write_input(checkpoint, tmp_path / "in/4.pkl", 4)
    windows = outputs_in(tmp_path / "o4")
    with caplog.at_level("INFO"):
        forecast.run_member(broken, 4, pkl, windows, None)  # the member itself is fine
    failed = [r.getMessage() for r in caplog.records if "ahead failed" in r.getMessage()]
    assert len(failed) == 10 and failed[0].startswith(f"member 004: sending {windows[0].name}")
    assert f"left to the upload job: {windows[0].name}" in caplog.text
    settings = settings_for(checkpoint, tmp_path / "scratch")
    upload_member(settings, 4, windows, tmp_path / "receipt.json")
    objects = json.loads((tmp_path / "receipt.json").read_text())["objects"]
    assert len(objects) == 11 and not any(o["skipped"] for o in objects)
    for window in windows:
        obj = tmp_path / "bucket" / settings.cycle / "forecasts" / window.name
        assert obj.read_bytes() == window.read_bytes()
