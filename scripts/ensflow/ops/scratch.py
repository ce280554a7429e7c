"""A bounded window of members on local scratch.

Snakemake's resources are released when a job ends, not when its temp files are consumed,
so they cannot bound disk use. Instead a member claims a slot before its input is
downloaded; the slot stays taken while the member's directory holds files, and frees
itself when the last GRIB is deleted after upload. Failed members free their slot too.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

from ensflow.errors import EnsflowError
from ensflow.flock import exclusive
from ensflow.layout import MEMBER_CLAIM, MEMBER_DIR, MEMBER_FAILED, WINDOW_LOCK

log = logging.getLogger(__name__)


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


def _claim_is_live(claim: Path) -> bool:
    try:
        host, pid = claim.read_text().split()
    except (OSError, ValueError):
        return False
    if host != socket.gethostname():
        return True  # another machine's claim: trust it
    return pid_alive(int(pid))


def occupied(directory: Path) -> bool:
    """A member holds a slot while its directory has files, unless it is marked failed."""
    if not directory.is_dir() or (directory / MEMBER_FAILED).exists():
        return False
    names = [p.name for p in directory.iterdir()]
    if not names:
        return False
    if names == [MEMBER_CLAIM]:
        return _claim_is_live(directory / MEMBER_CLAIM)
    return True


def occupants(scratch_cycle: Path, exclude: Path | None = None) -> list[Path]:
    if not scratch_cycle.is_dir():
        return []
    members = scratch_cycle.glob(MEMBER_DIR.format(member="*"))
    return sorted(d for d in members if d != exclude and occupied(d))


def claim(directory: Path, window: int, poll_s: float = 1.0, timeout_s: float = 6 * 3600) -> None:
    """Wait until fewer than `window` other members hold files, then take a slot."""
    directory = Path(directory)
    lock = directory.parent / WINDOW_LOCK
    started = time.monotonic()
    last_note = 0.0
    while True:
        with exclusive(lock):
            others = occupants(directory.parent, exclude=directory)
            if len(others) < window:
                directory.mkdir(parents=True, exist_ok=True)
                (directory / MEMBER_FAILED).unlink(missing_ok=True)
                (directory / MEMBER_CLAIM).write_text(f"{socket.gethostname()} {os.getpid()}\n")
                return
        waited = time.monotonic() - started
        if waited > timeout_s:
            raise EnsflowError(
                f"{directory.name}: no scratch slot after {waited:.0f}s; held by "
                f"{', '.join(d.name for d in others)} (window={window})")
        if waited - last_note >= 30 or last_note == 0.0:
            log.info("waiting for a scratch slot: %s hold the window of %d",
                     ", ".join(d.name for d in others), window)
            last_note = waited or 1e-9
        time.sleep(poll_s)


def release_claim(directory: Path) -> None:
    (Path(directory) / MEMBER_CLAIM).unlink(missing_ok=True)


def mark_failed(directory: Path) -> None:
    """Keep the files (a retry needs them) but stop them holding a slot in this run."""
    directory = Path(directory)
    if directory.is_dir():
        (directory / MEMBER_FAILED).touch()


def clear_failed(directory: Path) -> None:
    (Path(directory) / MEMBER_FAILED).unlink(missing_ok=True)
