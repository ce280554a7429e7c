"""Per-step logs with timings: every job says when it started, how long it took, what failed."""

from __future__ import annotations

import contextlib
import logging
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


@contextlib.contextmanager
def step(name: str, log_file: str | Path | None = None) -> Iterator[logging.Logger]:
    """Log start, end and elapsed time; an EnsflowError ends the job with its one-line message."""
    setup(log_file)
    log = logging.getLogger("ensflow.step")
    started = time.perf_counter()
    log.info("start %s", name)
    try:
        yield log
    except EnsflowError as exc:
        log.error("FAILED %s after %.1fs: %s", name, time.perf_counter() - started, exc)
        sys.exit(1)
    except Exception:
        log.exception("FAILED %s after %.1fs", name, time.perf_counter() - started)
        raise
    log.info("done %s in %.1fs", name, time.perf_counter() - started)
