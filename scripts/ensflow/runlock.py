"""Safe restarts: clear Snakemake's stale lock after a crash, never while a run is alive.

After kill -9 Snakemake leaves its lock behind and refuses to start. Clearing it is only
safe when no other run uses the directory: an flock held by every `ensflow run`, plus a
scan for snakemake processes working in the same directory, tell.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from .errors import EnsflowError


def hold_run_lock(workdir: Path) -> IO[str]:
    """Take this directory's run lock for the life of the process, or say who holds it."""
    path = workdir / ".snakemake" / "ensflow-run.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 (held for the life of the run)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise EnsflowError(f"another ensflow run is active in {workdir} (pid {holder})") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


def live_snakemake_pids(workdir: Path, ignore: set[int] | None = None) -> list[int]:
    """Processes running snakemake with this working directory (Linux /proc)."""
    ignore = ignore or set()
    ignore |= {os.getpid(), os.getppid()}
    found = []
    target = workdir.resolve()
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        if pid in ignore:
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = (proc / "cwd").resolve()
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in cmdline if a]
        if cwd != target or not argv:
            continue
        if any(Path(a).name == "snakemake" or a.endswith("/snakemake") for a in argv[:3]) or (
            "-m" in argv[:3] and "snakemake" in argv[:4]
        ):
            # Snakemake's own job subprocesses run in the same directory: their parent
            # chain leads to the main process, which is what we report.
            found.append(pid)
    return sorted(found)


def stale_lock_files(workdir: Path) -> list[Path]:
    locks = workdir / ".snakemake" / "locks"
    return sorted(locks.glob("*.lock")) if locks.is_dir() else []


ACTIVE_DIR = Path(".snakemake") / "ensflow-active"


def mark_active(workdir: Path, cycle: str, pid: int | None = None) -> Path:
    """Say that a run in this directory is working on `cycle` (removed when it ends).

    Written by the Snakemake main process when it starts executing; a run killed with -9
    leaves its marker behind, which `active_pids` then sees as dead.
    """
    pid = pid or os.getpid()
    path = workdir / ACTIVE_DIR / f"{cycle}.{pid}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid}\n")
    return path


def clear_active(workdir: Path, cycle: str, pid: int | None = None) -> None:
    (workdir / ACTIVE_DIR / f"{cycle}.{pid or os.getpid()}").unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """A process of this machine runs (one of another user's counts).

    A killed process whose parent died too can stay a zombie until something reaps it;
    signal 0 still reaches it, so its state in /proc decides.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: trust the signal
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def active_pids(workdir: Path, cycle: str) -> list[int]:
    """Live runs working on `cycle` in this directory; stale markers are removed."""
    found = []
    for marker in sorted((workdir / ACTIVE_DIR).glob(f"{cycle}.*")):
        try:
            pid = int(marker.name.rsplit(".", 1)[1])
        except ValueError:
            continue
        if pid_alive(pid):
            found.append(pid)
        else:
            marker.unlink(missing_ok=True)
    return found
