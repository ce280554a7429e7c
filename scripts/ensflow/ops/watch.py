"""`ensflow watch` and `ensflow backfill`: cycles start themselves.

A stage's cycle starts when ECMWF has published every index it reads (every member,
field and step: science.opendata_needs), on the stage's schedule (config `watch.stages`:
the daily cGAN at 00 and 12 UTC, the weekly AIFS-ENS + quest on Thursdays). Each cycle
runs as plain Snakemake in its own directory (runs/<stage>/<cycle>), so an attempt that
fails is resumed by the next one exactly as a person re-typing the command would, and two
cycles never share Snakemake's locks. Stores and buckets are shared: the config's
relative URLs are made absolute to where watch was started. Every attempt is recorded in
the run directory's watch.json; data still missing at the stage's deadline end the cycle
with missing.json naming each object and field.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ensflow import receipts
from ensflow.adapters.storage import Storage
from ensflow.config import Settings, validate
from ensflow.cycle import cycle_datetime, normalise_cycle
from ensflow.errors import ConfigError, EnsflowError
from ensflow.layout import (
    watch_attempt_log,
    watch_config,
    watch_missing,
    watch_run_dir,
    watch_state,
)
from ensflow.ops import runlock
from ensflow.science import opendata_needs
from ensflow.science.quest import check_issue_date

log = logging.getLogger("ensflow")

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
FINAL = ("finished", "missed", "failed", "refused")


@dataclass(frozen=True)
class Stage:
    """What a scheduled run of one stage is: the open data it waits for, the Snakemake
    targets it asks for, and the config it runs with (the other stage off)."""

    name: str
    reads: str
    targets: tuple[str, ...]
    overlay: dict[str, Any]


STAGES = {
    "cgan": Stage("cgan", "cgan", ("cgan",),
                  {"cgan": {"enabled": True}, "quest": {"enabled": False}}),
    "quest": Stage("quest", "aifs", ("all",),
                   {"cgan": {"enabled": False}, "quest": {"enabled": True}}),
}


@dataclass(frozen=True)
class Schedule:
    enabled: bool
    hours: tuple[int, ...]
    weekdays: frozenset[int]
    deadline: dt.timedelta

    @classmethod
    def of(cls, settings: Settings, stage: str) -> Schedule:
        s = settings.watch.stages[stage]
        return cls(s["enabled"], tuple(sorted(s["hours"])),
                   frozenset(WEEKDAYS.index(d) for d in s["weekdays"]),
                   dt.timedelta(hours=s["deadline_hours"]))

    def cycles(self, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        """The stage's cycles from `start` to `end`, both included, oldest first."""
        out = []
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        while day <= end:
            if day.weekday() in self.weekdays:
                out += [t for h in self.hours if start <= (t := day.replace(hour=h)) <= end]
            day += dt.timedelta(days=1)
        return out


def cycle_id(t: dt.datetime) -> str:
    return f"{t:%Y%m%d_%H%M}"


SHARED = ("bucket", "cgan.store", "quest.store")  # where every run's products meet
EXTERNAL = ("opendata.root", "quest.climatology", "checkpoint", "gcs.credentials_file")


def _absolute(value: str | None, source: Path) -> str | None:
    """A relative path or file:// URL made absolute to `source`; others as they are."""
    if not value or value == "aiwq" or value.startswith(("gs://", "s3://")):
        return value
    if value.startswith("file://"):
        path = value.removeprefix("file://")
        return value if path.startswith("/") else f"file://{(source / path).resolve()}"
    return value if value.startswith("/") else str((source / value).resolve())


def run_config(settings: Settings, source: Path, stage: Stage, cycle: str) -> Settings:
    """The whole config of one scheduled run: the cycle, the stage's overlay, and paths
    that every run must share made absolute (in the demo the checkpoint, mirror and
    climatology are made per run, so those stay relative to the run)."""
    cfg = copy.deepcopy(settings.config)
    cfg["cycle"] = cycle
    for section, values in stage.overlay.items():
        cfg[section] = {**cfg[section], **values}
    for key in SHARED + (() if cfg["synthetic"] else EXTERNAL):
        *parents, leaf = key.split(".")
        node = cfg
        for p in parents:
            node = node[p]
        node[leaf] = _absolute(node[leaf], source)
    run = validate(cfg)  # refused now, before any directory or download
    if run.quest.enabled:
        try:
            check_issue_date(cycle, run.quest.allow_any_issue_date)
        except EnsflowError as exc:
            raise ConfigError(f"watch.stages.{stage.name}: {exc}") from None
    return run


@dataclass
class Live:
    proc: subprocess.Popen[bytes]
    state: dict[str, Any]
    started: float


@dataclass
class Watcher:
    """Starts, records and resumes scheduled runs; shared by watch and backfill."""

    settings: Settings
    source: Path
    stages: list[str]
    profile: str | None = None
    max_parallel: int = 2
    max_attempts: int = 3
    live: dict[Path, Live] = field(default_factory=dict)
    cache: opendata_needs.IndexCache = field(default_factory=opendata_needs.IndexCache)
    tried: dict[Path, int] = field(default_factory=dict)  # attempts made by this process
    ended: list[dict[str, Any]] = field(default_factory=list)  # cycles that ended here

    def __post_init__(self) -> None:
        self.source = self.source.resolve()
        runs = Path(self.settings.watch.runs)
        self.runs = runs if runs.is_absolute() else self.source / runs
        self.storage = Storage.from_settings(self.settings)

    # ------------------------------------------------------------ one cycle

    def step(self, stage: Stage, cycle: str, now: dt.datetime, *, backfill: bool = False) -> str:
        """Look at one cycle once: start it when its data are there, record what it waits
        for, or end it (missed at the deadline, failed after its attempts, refused)."""
        run_dir = watch_run_dir(self.runs, stage.name, cycle)
        if run_dir in self.live:
            return "running"
        state = receipts.read_if_any(watch_state(run_dir)) or {
            "stage": stage.name, "cycle": cycle, "state": "new", "attempts": []}
        final = ("finished",) if backfill else FINAL
        if state["state"] in final:
            return state["state"]
        if state["state"] == "running":
            if runlock.holder(run_dir):
                return "running"  # started by another watcher, or by hand, still alive
            state["attempts"][-1].update(ended=_stamp(), rc=None, outcome="died")
            self._save(run_dir, state)
        attempts = self.tried.get(run_dir, 0) if backfill else len(state["attempts"])
        if attempts >= self.max_attempts:
            return self._end(run_dir, state, "failed",
                             f"{attempts} attempt(s) failed; last log {state['attempts'][-1]['log']}")
        if len(self.live) >= self.max_parallel:
            return "queued"
        try:
            run = run_config(self.settings, self.source, stage, cycle)
        except ConfigError as exc:
            return self._end(run_dir, state, "refused", str(exc))
        missing = [] if run.synthetic else self._missing(run, stage)
        if missing:
            deadline = cycle_datetime(cycle) + Schedule.of(self.settings, stage.name).deadline
            if backfill or now >= deadline:
                receipts.write(watch_missing(run_dir), {
                    "stage": stage.name, "cycle": cycle, "checked": _stamp(now),
                    "deadline": _stamp(deadline), "missing": missing})
                why = ("not published" if backfill else
                       f"still missing at the deadline {deadline:%Y-%m-%d %H:%M} UTC")
                return self._end(run_dir, state, "missed",
                                 f"{len(missing)} object(s) {why}, first: {missing[0]}; "
                                 f"all in {watch_missing(run_dir)}")
            if state.get("missing") != missing[:20]:
                log.info("%s %s: waiting for %d object(s), first: %s", stage.name, cycle,
                         len(missing), missing[0])
            state.update(state="waiting", checked=_stamp(now), missing=missing[:20],
                         missing_count=len(missing))
            self._save(run_dir, state)
            return "waiting"
        self._start(stage, cycle, run_dir, state, run.config)
        return "running"

    def _missing(self, run: Settings, stage: Stage) -> list[str]:
        try:
            needs = opendata_needs.for_stage(run, stage.reads)
        except EnsflowError as exc:
            return [str(exc)]
        return opendata_needs.missing(self.storage, needs, self.cache)

    def _start(self, stage: Stage, cycle: str, run_dir: Path, state: dict[str, Any],
               cfg: dict[str, Any]) -> None:
        config_path = watch_config(run_dir)
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        n = len(state["attempts"]) + 1
        attempt_log = watch_attempt_log(run_dir, n)
        argv = [_snakemake(), "--snakefile", str(self.source / "Snakefile"),
                "--directory", str(run_dir), *self._profile_args(), *stage.targets]
        with open(attempt_log, "wb") as out:
            proc = subprocess.Popen(argv, cwd=run_dir, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        state["attempts"].append({"attempt": n, "started": _stamp(), "pid": proc.pid,
                                  "log": str(attempt_log), "command": argv})
        state.update(state="running", missing=[], missing_count=0)
        self._save(run_dir, state)
        self.tried[run_dir] = self.tried.get(run_dir, 0) + 1
        self.live[run_dir] = Live(proc, state, time.monotonic())
        log.info("%s %s: started attempt %d (log %s)", stage.name, cycle, n, attempt_log)

    def _profile_args(self) -> list[str]:
        if not self.profile:
            return []
        local = self.source / self.profile
        return ["--profile", str(local) if local.is_dir() else self.profile]

    # ------------------------------------------------------------ runs in flight

    def reap(self) -> None:
        """Record every run that ended since the last look."""
        for run_dir, live in list(self.live.items()):
            rc = live.proc.poll()
            if rc is None:
                continue
            del self.live[run_dir]
            seconds = round(time.monotonic() - live.started, 1)
            state = live.state
            state["attempts"][-1].update(ended=_stamp(), rc=rc, seconds=seconds,
                                         outcome="finished" if rc == 0 else "failed")
            label = f"{state['stage']} {state['cycle']}"
            if rc == 0:
                self._end(run_dir, state, "finished", f"attempt {len(state['attempts'])} "
                          f"finished in {seconds:.1f} s")
            else:
                state["state"] = "retry"
                self._save(run_dir, state)
                log.warning("%s: attempt %d failed (exit %d) after %.1f s; the next one resumes "
                            "it; log %s", label, len(state["attempts"]), rc, seconds,
                            state["attempts"][-1]["log"])

    def wait_any(self, poll: float = 0.5) -> None:
        while self.live and all(lv.proc.poll() is None for lv in self.live.values()):
            time.sleep(poll)
        self.reap()

    def stop(self) -> None:
        """Ask every run in flight to stop (Snakemake ends its jobs on SIGTERM); the next
        watch or the same command resumes them."""
        for live in self.live.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(live.proc.pid, signal.SIGTERM)
        for live in self.live.values():
            try:
                live.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(live.proc.pid, signal.SIGKILL)
        self.reap()

    # ------------------------------------------------------------ records

    def _save(self, run_dir: Path, state: dict[str, Any]) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        receipts.write(watch_state(run_dir), state)

    def _end(self, run_dir: Path, state: dict[str, Any], outcome: str, message: str) -> str:
        if outcome != "finished":  # how to recover, in the message itself
            message += (f"; once fixed or published, `ensflow backfill {state['cycle']} "
                        f"{state['cycle']} --stage {state['stage']}` resumes it")
        state.update(state=outcome, message=message, ended=_stamp())
        self._save(run_dir, state)
        self.ended.append(state)
        say = log.info if outcome == "finished" else log.error
        say("%s %s: %s: %s", state["stage"], state["cycle"], outcome, message)
        return outcome


def _stamp(t: dt.datetime | None = None) -> str:
    return (t or _utcnow()).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _snakemake() -> str:
    beside = Path(sys.executable).parent / "snakemake"
    return str(beside) if beside.exists() else (shutil.which("snakemake") or "snakemake")


def clock(now: str | None) -> Callable[[], dt.datetime]:
    """Now in UTC; with `now` given, time runs on from that moment (a replay, a test)."""
    if not now:
        return _utcnow
    start, t0 = dt.datetime.fromisoformat(now).replace(tzinfo=None), time.monotonic()
    return lambda: start + dt.timedelta(seconds=time.monotonic() - t0)


def due(settings: Settings, stages: Iterable[str], now: dt.datetime) -> list[tuple[Stage, str]]:
    """The cycles a watch looks at now: each enabled stage's scheduled cycles of the last
    `watch.lookback_hours`, or twice the stage's deadline if longer (so every deadline
    is seen passing), oldest first."""
    lookback = dt.timedelta(hours=settings.watch.lookback_hours)
    out = [(STAGES[name], t) for name in stages
           if (schedule := Schedule.of(settings, name)).enabled
           for t in schedule.cycles(now - max(lookback, 2 * schedule.deadline), now)]
    return [(stage, cycle_id(t)) for stage, t in sorted(out, key=lambda x: (x[1], x[0].name))]


# ---------------------------------------------------------------- commands


def run_watch(watcher: Watcher, now: Callable[[], dt.datetime], *, once: bool,
              poll_seconds: float, stop_after: float | None = None) -> int:
    """Long-running (until SIGTERM/SIGINT or `stop_after` seconds) or one pass (`once`,
    for cron or a Kubernetes CronJob: starts what is ready and waits for it)."""
    started = time.monotonic()
    with _stop_on_signals() as stopping:
        while True:
            watcher.reap()
            for stage, cycle in due(watcher.settings, watcher.stages, now()):
                watcher.step(stage, cycle, now())
            if once:
                if not watcher.live:
                    break
                watcher.wait_any()
                continue
            wake = time.monotonic() + poll_seconds
            while time.monotonic() < wake and not stopping.is_set():
                time.sleep(min(0.5, poll_seconds))
                if any(lv.proc.poll() is not None for lv in watcher.live.values()):
                    break  # a run ended: record it and start what waits, now
            if stopping.is_set() or (stop_after is not None
                                     and time.monotonic() - started > stop_after):
                log.info("watch stopping; %d run(s) in flight are asked to stop (the next "
                         "watch resumes them)", len(watcher.live))
                watcher.stop()
                return 0
    bad = [s for s in watcher.ended if s["state"] != "finished"]
    return 1 if bad else 0


def run_backfill(watcher: Watcher, stage_name: str, start: str, end: str) -> int:
    """Past cycles of one stage from `start` to `end`, at most `max_parallel` at once, each
    resumed until it finishes or its attempts are spent; a summary line per cycle."""
    stage = STAGES[stage_name]
    first = cycle_datetime(normalise_cycle(start))
    last = cycle_datetime(normalise_cycle(end))
    cycles = [cycle_id(t) for t in Schedule.of(watcher.settings, stage_name).cycles(first, last)]
    if not cycles:
        raise ConfigError(f"no {stage_name} cycle between {first:%Y-%m-%d %H} and "
                          f"{last:%Y-%m-%d %H} UTC (watch.stages.{stage_name}: hours, weekdays)")
    log.info("backfill %s: %d cycle(s) %s .. %s, %d at once", stage_name, len(cycles),
             cycles[0], cycles[-1], watcher.max_parallel)
    outcome: dict[str, str] = {}
    with _stop_on_signals() as stopping:
        while not stopping.is_set():
            watcher.reap()
            for cycle in cycles:
                if outcome.get(cycle) not in FINAL:  # each ends once per backfill
                    outcome[cycle] = watcher.step(stage, cycle, _utcnow(), backfill=True)
            if not watcher.live:
                break
            watcher.wait_any()
        if stopping.is_set():
            watcher.stop()
    for cycle in cycles:
        state = receipts.read_if_any(watch_state(watch_run_dir(watcher.runs, stage_name, cycle)))
        attempts = len(state["attempts"]) if state else 0
        print(f"{stage_name} {cycle}: {outcome.get(cycle, 'not started')} "
              f"({attempts} attempt(s)) {watch_run_dir(watcher.runs, stage_name, cycle)}")
    return 0 if all(v == "finished" for v in outcome.values()) else 1


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM (Kubernetes, systemd) or Ctrl-C: stop looking, stop the runs in flight."""
    event = threading.Event()
    before = {sig: signal.signal(sig, lambda *_: event.set())
              for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield event
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
