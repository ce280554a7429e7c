"""Per-step logs with timings: every job says when it started, how long it took, what failed."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ensflow import receipts
from ensflow.errors import EnsflowError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HEARTBEAT_S = 10.0


def setup(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=level, format=FORMAT, handlers=handlers, force=True)


def finish(code: int) -> None:
    """End the job process now that its outputs are closed and its log is flushed.

    Native libraries with their own thread pools (Icechunk's and obstore's runtimes, mir)
    occasionally crash while the interpreter tears down after the job's work is done
    (seen as SIGSEGV after "done" in a log), which would fail a finished job. Nothing is
    pending at this point: every output was written and renamed, so the process exits
    without the teardown.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def write_record(path: str | Path | None, record: dict[str, Any]) -> None:
    """The job's structured record (status, times, error, cores): what status and report read."""
    if path is not None:
        receipts.write(path, record)  # whole or absent, as a receipt


_current: tuple[dict[str, Any], str | Path | None] | None = None


def annotate(**fields: Any) -> None:
    """Add what the job learnt (e.g. when its member was on the GPU) to its record."""
    if _current is not None:
        record, path = _current
        record.update(fields)
        write_record(path, record)


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="milliseconds")


@contextlib.contextmanager
def step(name: str, log_file: str | Path | None = None, record_file: str | Path | None = None,
         meta: dict[str, Any] | None = None) -> Iterator[logging.Logger]:
    """Log start, end and elapsed time, and keep the job's record; an EnsflowError ends the
    job with its one-line message.

    Meant to wrap the whole of an entry script: the process ends when the block does.
    """
    setup(log_file)
    log = logging.getLogger("ensflow.step")
    started = time.perf_counter()
    record: dict[str, Any] = {**(meta or {}), "name": name, "status": "running",
                              "started": _now(), "ended": None, "seconds": None, "error": None,
                              "pid": os.getpid(), "host": socket.gethostname()}
    write_record(record_file, record)
    global _current
    _current = (record, record_file)
    log.info("start %s", name)
    # While the job runs its record says when it was last alive, so a job killed with its
    # run shows how far it got (status, report), also from a copy of the tree.
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(HEARTBEAT_S):
            record["last_seen"] = _now()
            write_record(record_file, record)

    if record_file is not None:
        threading.Thread(target=heartbeat, daemon=True).start()

    def end(status: str, error: str | None = None) -> None:
        stop.set()
        now = _now()
        record.update(status=status, ended=now, error=error, last_seen=now,
                      seconds=round(time.perf_counter() - started, 3))
        write_record(record_file, record)

    try:
        yield log
    except EnsflowError as exc:
        log.error("FAILED %s after %.1fs: %s", name, time.perf_counter() - started, exc)
        end("failed", str(exc))
        finish(1)
    except BaseException as exc:
        log.exception("FAILED %s after %.1fs", name, time.perf_counter() - started)
        end("failed", f"{type(exc).__name__}: {exc}")
        finish(1)
    log.info("done %s in %.1fs", name, time.perf_counter() - started)
    end("done")
    finish(0)
