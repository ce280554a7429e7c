"""`ensflow status|report|purge|watch|backfill`: operations beside runs. A run is plain
`snakemake`; watch and backfill start plain Snakemake runs, one directory per cycle."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ensflow.config import Settings, load_like_snakemake
from ensflow.errors import EnsflowError
from ensflow.ops import profiles

log = logging.getLogger("ensflow")


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-C", "--directory", default=os.getcwd(), help="workflow directory")
    parser.add_argument("--configfile", action="append", default=[],
                        help="config files over config/config.yaml, as given to the run")
    parser.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                        help="overrides, as given to the run (e.g. cycle=20251127_0000)")


def _run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", action="append", choices=["cgan", "quest"],
                        help="only this stage (repeatable; default: every enabled one; "
                        "backfill takes one)")
    parser.add_argument("--profile", help="Snakemake profile for the runs (default "
                        "watch.profile), e.g. gpu or profiles/demo")
    parser.add_argument("--parallel", type=int, help="runs at once (default watch.max_parallel)")


def _watcher(args: argparse.Namespace, stages: list[str]) -> Any:
    from ensflow.ops.watch import Watcher

    settings = _settings(args)
    w = settings.watch
    return Watcher(settings, Path(args.directory), stages, profile=args.profile or w.profile,
                   max_parallel=args.parallel or w.max_parallel, max_attempts=w.max_attempts)


def _settings(args: argparse.Namespace) -> Settings:
    return load_like_snakemake(args.directory, args.configfile, args.config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ensflow",
        description="Look after ensflow cycles. Runs are plain Snakemake "
        "(`snakemake --profile gpu --configfile config/operational.yaml`); these commands take "
        "the same --configfile/--config to find the cycle.")
    sub = parser.add_subparsers(dest="command", required=True)
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
    p_watch = sub.add_parser("watch", help="start each scheduled cycle when ECMWF has published "
                             "what it reads; wait up to the stage's deadline, then report what "
                             "is missing (config `watch`)")
    _config_args(p_watch)
    _run_args(p_watch)
    p_watch.add_argument("--once", action="store_true", help="one pass: start what is ready, "
                         "wait for it, exit (cron, a Kubernetes CronJob); exit 1 if a cycle "
                         "was missed, failed or refused")
    p_watch.add_argument("--poll-seconds", type=float, help="default watch.poll_seconds")
    p_watch.add_argument("--stop-after", type=float, metavar="SECONDS",
                         help="a long-running watch ends after this long (default: never)")
    p_watch.add_argument("--now", help="act as if it were this UTC time (ISO), e.g. to replay")
    p_backfill = sub.add_parser("backfill", help="run a stage's past cycles START..END (both "
                                "included) beside the daily run, into the same stores")
    _config_args(p_backfill)
    _run_args(p_backfill)
    p_backfill.add_argument("start", help="first cycle, YYYYMMDD_HHMM or ISO")
    p_backfill.add_argument("end", help="last cycle")
    p_profiles = sub.add_parser("install-profiles", help="make `--profile gpu` and `--profile "
                                "kubernetes` the repo's profiles (symlinks in Snakemake's user "
                                "config directory; a different profile of that name is kept)")
    profiles.add_arguments(p_profiles)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="ensflow: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "install-profiles":
        return profiles.run(args.profiles_dir, args.user_dir)
    try:
        if args.command == "status":
            from ensflow.ops.status import main_status
            return main_status(_settings(args), Path(args.directory), args.storage_prefix)
        if args.command == "report":
            from ensflow.ops.report import main_report
            return main_report(_settings(args), Path(args.directory), args.output, args.storage_prefix)
        if args.command == "watch":
            from ensflow.ops.watch import STAGES, clock, run_watch

            watcher = _watcher(args, args.stage or list(STAGES))
            return run_watch(watcher, clock(args.now), once=args.once,
                             poll_seconds=args.poll_seconds or watcher.settings.watch.poll_seconds,
                             stop_after=args.stop_after)
        if args.command == "backfill":
            from ensflow.ops.watch import run_backfill

            if not args.stage or len(args.stage) != 1:
                parser.error("backfill takes exactly one --stage (cgan or quest)")
            return run_backfill(_watcher(args, args.stage), args.stage[0], args.start, args.end)
        if args.command == "purge":
            from ensflow.ops.retention import main_purge
            return main_purge(_settings(args), Path(args.directory), delete=args.yes,
                              storage_prefix=args.storage_prefix)
    except EnsflowError as exc:
        log.error("%s", exc)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
