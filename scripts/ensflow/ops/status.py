"""`ensflow status`: where a cycle stands, from the files its jobs leave, in a dozen lines.

Computed (`cycle_status`) apart from printed (`format_status`), so the numbers can be
tested and reused; it reads logs and receipts only, so it is safe to run beside a live run.
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ensflow.config import Settings
from ensflow.ops.run_record import (
    CHAIN,
    GPU_RULE,
    CycleRecord,
    load_cycle,
    member_state,
    mirror_from_storage,
    shown_path,
    stage_state,
)
from ensflow.ops.runlock import active_pids


@dataclass(frozen=True)
class StageCount:
    stage: str
    done: int = 0
    running: int = 0
    failed: int = 0
    waiting: int = 0


@dataclass(frozen=True)
class RunningJob:
    name: str
    rule: str
    member: int | None
    seconds: float  # since its log's start line


@dataclass(frozen=True)
class FailedJob:
    name: str
    rule: str
    member: int | None
    error: str
    log: str


@dataclass
class CycleStatus:
    cycle: str
    members: int
    done: int
    stages: list[StageCount]
    other: StageCount  # every job outside the per-member chain
    running: list[RunningJob] = field(default_factory=list)
    failed: list[FailedJob] = field(default_factory=list)
    failed_members: list[int] = field(default_factory=list)
    live_pids: list[int] = field(default_factory=list)
    median_forecast_s: float | None = None
    median_upload_s: float | None = None
    to_infer: int = 0  # members whose inference has not started
    parallelism: int = 1
    eta_s: float | None = None

    @property
    def remaining(self) -> int:
        return self.members - self.done


def _parallelism(settings: Settings, running_forecasts: int) -> int:
    """Members that go through inference at once: those running now, or the GPU slots configured."""
    fc = settings.forecast
    slots = fc.gpus * fc.members_per_gpu if fc.gpus else 0
    return max(1, running_forecasts, slots)


def _done_seconds(record: CycleRecord, rule: str) -> list[float]:
    return [j.seconds for j in record.jobs
            if j.rule == rule and j.status == "done" and j.seconds is not None]


def status_from(record: CycleRecord, settings: Settings, now: dt.datetime,
                live_pids: list[int]) -> CycleStatus:
    """The status of a cycle already read from disk (see `cycle_status`)."""
    members = record.members
    stages = []
    for rule in CHAIN:
        states = [stage_state(record, rule, m) for m in members]
        stages.append(StageCount(rule, *(states.count(s) for s in ("done", "running", "failed", "waiting"))))
    others = [j for j in record.jobs if j.rule not in CHAIN]
    other = StageCount("other", done=sum(j.status == "done" for j in others),
                       running=sum(j.status in ("running", "unknown") for j in others),
                       failed=sum(j.status == "failed" for j in others))
    done_members = [m for m in members if m in record.upload_receipts]
    running = [RunningJob(j.name, j.rule, j.member, max(0.0, (now - j.started).total_seconds()))
               for j in record.jobs if j.status == "running" and j.started
               and not (j.member in record.upload_receipts and j.rule in CHAIN)]
    failed = [FailedJob(j.name, j.rule, j.member, j.error or "failed", shown_path(j.log, record.workdir))
              for j in record.jobs if j.status == "failed"
              and not (j.member in record.upload_receipts and j.rule in CHAIN)]
    running_forecasts = sum(r.rule == GPU_RULE for r in running) if live_pids else 0
    failed_members = [m for m in members if member_state(record, m) == "failed"]
    status = CycleStatus(
        cycle=record.cycle, members=len(members), done=len(done_members), stages=stages, other=other,
        running=running, failed=failed, failed_members=failed_members, live_pids=live_pids,
        parallelism=_parallelism(settings, running_forecasts))
    forecasts = _done_seconds(record, GPU_RULE)
    uploads = _done_seconds(record, "upload")
    status.to_infer = sum(stage_state(record, GPU_RULE, m) == "waiting" for m in members
                          if m not in failed_members)
    if forecasts and status.remaining > len(failed_members):
        # Inference paces the cycle: downloads and uploads overlap it, except the last upload.
        status.median_forecast_s = statistics.median(forecasts)
        status.median_upload_s = statistics.median(uploads) if uploads else 0.0
        in_flight = sum(max(0.0, status.median_forecast_s - r.seconds)
                        for r in running if r.rule == GPU_RULE)
        status.eta_s = ((status.to_infer * status.median_forecast_s + in_flight) / status.parallelism
                        + status.median_upload_s)
    return status


def cycle_status(settings: Settings, workdir: Path, now: dt.datetime | None = None,
                 live_pids: list[int] | None = None) -> CycleStatus:
    """Members done / running / failed / waiting per stage, and an ETA for the rest.

    ETA: inference paces a cycle (downloads and uploads overlap it), so it is the members
    still to infer x the median forecast time, plus what the running inferences have left,
    over the parallelism, plus one median upload for the last member; unknown until a
    forecast has finished.
    """
    workdir = Path(workdir)
    if live_pids is None:
        live_pids = active_pids(workdir, settings.cycle)
    return status_from(load_cycle(settings, workdir), settings, now or dt.datetime.now(), live_pids)


def _duration(seconds: float) -> str:
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def format_status(st: CycleStatus) -> str:
    live = (f"run active (pid {', '.join(map(str, st.live_pids))})" if st.live_pids
            else "no run active")
    lines = [f"cycle {st.cycle}: {st.done}/{st.members} members uploaded; {live}",
             f"{'stage':<15}{'done':>6}{'running':>9}{'failed':>8}{'waiting':>9}   of {st.members}"]
    for s in st.stages:
        lines.append(f"{s.stage:<15}{s.done:>6}{s.running:>9}{s.failed:>8}{s.waiting:>9}")
    o = st.other
    lines.append(f"other jobs: {o.done} done, {o.running} running, {o.failed} failed")
    if st.running:
        what = "running" if st.live_pids else "unfinished (no run active: killed or interrupted)"
        lines.append(f"{what}:")
        lines += [f"  {r.name:<28} {_duration(r.seconds)}" for r in st.running]
    if st.failed:
        lines.append("failed:")
        lines += [f"  {f.name:<28} {f.error}  ({f.log})" for f in st.failed]
    if st.remaining == 0:
        lines.append("all members uploaded")
    elif st.remaining == len(st.failed_members):
        lines.append("every member left has failed: fix the cause and run the same command again")
    elif st.eta_s is None:
        lines.append("ETA unknown (no forecast has finished yet)")
    else:
        lines.append(f"ETA {_duration(st.eta_s)}: {st.to_infer} member(s) to infer x median forecast "
                     f"{_duration(st.median_forecast_s or 0.0)} (+ running ones) / {st.parallelism} "
                     f"in parallel + one upload {_duration(st.median_upload_s or 0.0)}")
    return "\n".join(lines)


def main_status(settings: Settings, workdir: Path, storage_prefix: str | None = None) -> int:
    workdir = Path(workdir)
    live = active_pids(workdir, settings.cycle)
    source = workdir
    if storage_prefix:
        source = mirror_from_storage(storage_prefix, settings, workdir)
    print(format_status(cycle_status(settings, source, live_pids=live)))
    return 0
