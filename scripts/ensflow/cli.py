"""`ensflow run`: the one command operators type; it resumes whatever state a run left."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from .errors import EnsflowError
from .runlock import hold_run_lock, live_snakemake_pids, stale_lock_files

log = logging.getLogger("ensflow")


def _snakemake() -> str:
    here = Path(sys.executable).parent / "snakemake"
    return str(here) if here.exists() else (shutil.which("snakemake") or "snakemake")


def run(snakemake_args: list[str], workdir: Path) -> int:
    lock = hold_run_lock(workdir)
    try:
        if stale_lock_files(workdir):
            alive = live_snakemake_pids(workdir)
            if alive:
                raise EnsflowError(
                    f"snakemake is still running in {workdir} (pid {', '.join(map(str, alive))}); "
                    "not clearing its lock")
            log.warning("clearing a stale Snakemake lock left by an interrupted run")
            subprocess.run([_snakemake(), "--unlock", *snakemake_args], cwd=workdir, check=True,
                           stdout=subprocess.DEVNULL)
        child = subprocess.Popen([_snakemake(), *snakemake_args], cwd=workdir)

        def forward(signum: int, _frame: object) -> None:
            child.send_signal(signum)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, forward)
        return child.wait()
    finally:
        lock.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="ensflow: %(message)s")
    parser = argparse.ArgumentParser(
        prog="ensflow",
        description="Run an ensflow cycle. Extra arguments go to snakemake "
        "(e.g. --configfile config/operational.yaml --config cycle=20251127_0000).")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run (or resume) the workflow in this directory")
    p_run.add_argument("-C", "--directory", default=os.getcwd(), help="workflow directory")
    args, rest = parser.parse_known_args(argv)
    if rest and rest[0] == "--":
        rest = rest[1:]
    try:
        if args.command == "run":
            return run(rest, Path(args.directory))
    except EnsflowError as exc:
        log.error("%s", exc)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
