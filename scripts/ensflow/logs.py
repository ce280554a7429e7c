"""Per-step logs with timings: every job says when it started, how long it took, what failed."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import EnsflowError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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


@contextlib.contextmanager
def step(name: str, log_file: str | Path | None = None) -> Iterator[logging.Logger]:
    """Log start, end and elapsed time; an EnsflowError ends the job with its one-line message.

    Meant to wrap the whole of an entry script: the process ends when the block does.
    """
    setup(log_file)
    log = logging.getLogger("ensflow.step")
    started = time.perf_counter()
    log.info("start %s", name)
    try:
        yield log
    except EnsflowError as exc:
        log.error("FAILED %s after %.1fs: %s", name, time.perf_counter() - started, exc)
        finish(1)
    except BaseException:
        log.exception("FAILED %s after %.1fs", name, time.perf_counter() - started)
        finish(1)
    log.info("done %s in %.1fs", name, time.perf_counter() - started)
    finish(0)
