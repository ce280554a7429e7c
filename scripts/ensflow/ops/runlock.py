"""One live run per directory, with a lock the kernel drops when the run dies.

Snakemake's own lock is a set of files under `.snakemake/locks/`: after kill -9 they stay
and every later run stops until someone types `--unlock`. ensflow's Snakefile takes this
lock in Snakemake's main process (never in jobs or pods) while it parses the workflow:
an flock on one file, released by the kernel with the process. Holding it proves that no
other run of this workflow is alive here, so Snakemake's lock files, if any, are stale and
are removed; a second live run is refused with the holder's pid.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ensflow import receipts
from ensflow.errors import EnsflowError
from ensflow.layout import run_lock, snakemake_locks


@dataclass
class RunLock:
    """The result of a claim: held by this process, or the record of the run that holds it."""

    path: Path
    handle: IO[str] | None
    holder: dict[str, Any] | None

    @property
    def held(self) -> bool:
        return self.handle is not None

    def require(self) -> None:
        """Refuse to execute unless this process holds the lock."""
        if not self.held:
            raise EnsflowError(refusal(self.path.parent.parent, self.holder))


def refusal(workdir: Path, holder: dict[str, Any] | None) -> str:
    who = holder or {}
    return (f"another ensflow run is active in {workdir} (pid {who.get('pid', 'unknown')}, "
            f"cycle {who.get('cycle', '?')}, since {who.get('started', '?')}); wait for it or "
            "stop it, then run the same command again")


def _try_flock(f: IO[str], attempts: int) -> bool:
    # `holder()` probes the lock for an instant; a claim retries past such a probe.
    for i in range(attempts):
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if i + 1 < attempts:
                time.sleep(0.05)
    return False


def claim(workdir: Path, cycle: str) -> RunLock:
    """Take the directory's run lock for the life of this process, or say who has it."""
    path = run_lock(Path(workdir))
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 (held for the life of the run)
    if not _try_flock(f, attempts=5):
        f.close()
        return RunLock(path, None, receipts.read_if_any(path))
    f.seek(0)
    f.truncate()
    json.dump({"pid": os.getpid(), "cycle": cycle,
               "started": dt.datetime.now().isoformat(timespec="seconds")}, f)
    f.flush()
    stale = snakemake_locks(Path(workdir))
    for lock in stale:
        lock.unlink(missing_ok=True)
    if stale:
        print("ensflow: removed Snakemake's lock left by a run that died (no live run holds "
              f"{run_lock(Path())}); resuming", file=sys.stderr)
    return RunLock(path, f, None)


def holder(workdir: Path) -> dict[str, Any] | None:
    """The live run that holds this directory's lock ({pid, cycle, started}), or None."""
    path = run_lock(Path(workdir))
    if not path.is_file():
        return None
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return receipts.read_if_any(path) or {"pid": "unknown"}
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def active_pids(workdir: Path, cycle: str) -> list[int]:
    """The pid of a live run working on `cycle` here (at most one)."""
    who = holder(workdir)
    if who and who.get("cycle") == cycle and isinstance(who.get("pid"), int):
        return [who["pid"]]
    return []
