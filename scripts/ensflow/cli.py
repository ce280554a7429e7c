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

from .config import Settings, load_like_snakemake
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


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-C", "--directory", default=os.getcwd(), help="workflow directory")
    parser.add_argument("--configfile", action="append", default=[],
                        help="config files over config/config.yaml, as given to the run")
    parser.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                        help="overrides, as given to the run (e.g. cycle=20251127_0000)")


def _settings(args: argparse.Namespace) -> Settings:
    return load_like_snakemake(args.directory, args.configfile, args.config)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="ensflow: %(message)s")
    parser = argparse.ArgumentParser(
        prog="ensflow",
        description="Run an ensflow cycle and look after it. `run` passes extra arguments to "
        "snakemake (e.g. --configfile config/operational.yaml --config cycle=20251127_0000).")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run (or resume) the workflow in this directory")
    p_run.add_argument("-C", "--directory", default=os.getcwd(), help="workflow directory")
    p_status = sub.add_parser("status", help="members done / running / failed and an ETA")
    _config_args(p_status)
    p_report = sub.add_parser("report", help="write the cycle's HTML run report")
    _config_args(p_report)
    p_report.add_argument("-o", "--output", help="where to write it (default results/<cycle>/report.html)")
    p_purge = sub.add_parser("purge", help="list (default) or remove a cycle's local and bucket data")
    _config_args(p_purge)
    p_purge.add_argument("--yes", action="store_true", help="really delete (default: dry-run)")
    for p in (p_status, p_report, p_purge):
        p.add_argument("--storage-prefix", help="read the jobs' files from Snakemake's default storage "
                       "prefix (a cluster run), e.g. gs://aifs-ens-forecasts/ensflow")
    args, rest = parser.parse_known_args(argv)
    if args.command != "run" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if rest and rest[0] == "--":
        rest = rest[1:]
    try:
        if args.command == "run":
            return run(rest, Path(args.directory))
        if args.command == "status":
            from .status import main_status
            return main_status(_settings(args), Path(args.directory), args.storage_prefix)
        if args.command == "report":
            from .report import main_report
            return main_report(_settings(args), Path(args.directory), args.output, args.storage_prefix)
        if args.command == "purge":
            from .retention import main_purge
            return main_purge(_settings(args), Path(args.directory), delete=args.yes,
                              storage_prefix=args.storage_prefix)
    except EnsflowError as exc:
        log.error("%s", exc)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
