"""`ensflow status|report|purge`: operations beside a run. Running is plain `snakemake`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

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


def _settings(args: argparse.Namespace) -> Settings:
    return load_like_snakemake(args.directory, args.configfile, args.config)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="ensflow: %(message)s")
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
    p_profiles = sub.add_parser("install-profiles", help="make `--profile gpu` and `--profile "
                                "kubernetes` the repo's profiles (symlinks in Snakemake's user "
                                "config directory; a different profile of that name is kept)")
    profiles.add_arguments(p_profiles)
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
