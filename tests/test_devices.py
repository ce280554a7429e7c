"""Multi-GPU assignment: N simulated devices, each running forecast sees a distinct one."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from ensflow.adapters import devices


def hold(args: tuple[list[str], int, str, float]) -> tuple[str, str, float, float]:
    """Runs in its own process, like a forecast job: take a slot, note what CUDA would see."""
    devs, per_device, lock_dir, seconds = args
    with devices.device_slot(devs, per_device, lock_dir, poll_s=0.01) as slot:
        start = time.monotonic()
        seen = os.environ["CUDA_VISIBLE_DEVICES"]
        time.sleep(seconds)
        return slot.device, seen, start, time.monotonic()


def run_jobs(tmp_path, devs, per_device, jobs, seconds=0.4):
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
        return list(pool.map(hold, [(devs, per_device, str(tmp_path), seconds)] * jobs))


def max_overlap(intervals):
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    now = best = 0
    for _, delta in events:
        now += delta
        best = max(best, now)
    return best


def test_each_running_job_sees_its_own_device(tmp_path):
    devs = devices.visible_devices(3)
    results = run_jobs(tmp_path, devs, 1, 6)
    assert all(device == seen for device, seen, _, _ in results)
    assert {d for d, *_ in results} == {"0", "1", "2"}
    for dev in devs:  # never two at once on one GPU
        mine = [(s, e) for d, _, s, e in results if d == dev]
        assert max_overlap(mine) == 1
    assert max_overlap([(s, e) for *_, s, e in results]) == 3


def test_two_members_per_gpu_when_allowed(tmp_path):
    results = run_jobs(tmp_path, ["0", "1"], 2, 4)
    for dev in ("0", "1"):
        assert max_overlap([(s, e) for d, _, s, e in results if d == dev]) <= 2
    assert max_overlap([(s, e) for *_, s, e in results]) == 4


def test_devices_from_the_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert devices.visible_devices(None) == ["2", "5"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert devices.visible_devices(None) == []


def test_no_devices_means_no_slot(tmp_path):
    with devices.device_slot([], 1, tmp_path) as slot:
        assert slot.device is None and slot.name == "cpu"


def test_a_dead_job_frees_its_slot(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=hold, args=((["0"], 1, str(tmp_path), 30.0),))
    p.start()
    time.sleep(1.5)
    p.kill()  # like kill -9 of a forecast job
    p.join()
    with devices.device_slot(["0"], 1, tmp_path, poll_s=0.01, timeout_s=5) as slot:
        assert slot == ("0", 0) and slot.name == "gpu0.slot0"


@pytest.mark.parametrize("bad", [0])
def test_config_refuses_zero_gpus(bad):
    from ensflow.config import load
    from ensflow.errors import ConfigError

    with pytest.raises(ConfigError, match=r"forecast\.gpus"):
        load("config/config.yaml", {"forecast": {"gpus": bad}})
