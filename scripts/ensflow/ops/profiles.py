"""Install the repo's profiles as Snakemake's named profiles, so `--profile gpu` means profiles/gpu.

Snakemake resolves a profile NAME in the working directory, then in its user config directory
(~/.config/snakemake, or $XDG_CONFIG_HOME/snakemake), then in its site config directory. The
repo keeps its profiles under profiles/, so a bare `--profile gpu` finds nothing there; this
links `<user config>/gpu` and `<user config>/kubernetes` to the repo's directories. A symlink,
not a copy: the installed profile is always the repo's file, edits included. A different
profile already installed under the same name is the operator's and is never replaced.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from ensflow.errors import EnsflowError

NAMES = ("gpu", "kubernetes")

# The file names Snakemake takes as a profile's settings (snakemake.cli.get_profile_dir).
_PROFILE_FILE = re.compile(r"(profile|config)(\.v\d+\+)?\.yaml")


def snakemake_user_config_dir() -> Path:
    """Snakemake's own user config directory, the second place it looks a profile name up."""
    # Lazy: importing snakemake is slow, and only the default needs it.
    from snakemake.common import get_appdirs

    return Path(get_appdirs().user_config_dir)


def _same_copy(target: Path, source: Path) -> bool:
    """A real directory that Snakemake would read exactly as the repo's profile (a copy)."""
    if not target.is_dir():
        return False
    files = sorted(p.name for p in target.iterdir() if _PROFILE_FILE.fullmatch(p.name))
    return files == ["config.yaml"] and (
        (target / "config.yaml").read_bytes() == (source / "config.yaml").read_bytes())


def _different(name: str, target: Path, what: str) -> str:
    return (f"{name}: kept the different profile {target} ({what}): `--profile {name}` uses "
            f"that one; `--profile profiles/{name}` uses the repo's")


def _install_one(name: str, source: Path, target: Path) -> str:
    """Link target to source unless something is already there; say what happened."""
    if target.is_symlink():
        pointed = Path(os.readlink(target))
        if not pointed.is_absolute():
            pointed = target.parent / pointed
        if pointed.resolve() == source:
            return f"{name}: already installed ({target} -> {source})"
        return _different(name, target, f"a symlink to {pointed}")
    if target.exists():
        if _same_copy(target, source):
            return (f"{name}: kept {target}, a copy with the same config.yaml as {source} "
                    f"(it will not follow later edits of the repo's file)")
        return _different(name, target, "not a link to this repo's profiles/" + name)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        target.symlink_to(source, target_is_directory=True)
    except FileExistsError:  # someone made it meanwhile: judge what is there now
        return _install_one(name, source, target)
    return f"{name}: installed {target} -> {source}"


def install_profiles(repo_profiles: Path, user_dir: Path | None = None,
                     names: Iterable[str] = NAMES) -> list[str]:
    """Make `<user_dir>/<name>` a symlink to `<repo_profiles>/<name>` for each name.

    user_dir defaults to Snakemake's user config directory. An existing profile of the same
    name is never touched. Returns one line per name saying what was done.
    """
    if user_dir is None:
        user_dir = snakemake_user_config_dir()
    lines = []
    for name in names:
        source = (Path(repo_profiles) / name).resolve()
        if not (source / "config.yaml").is_file():
            raise EnsflowError(f"no profile {name} to install: {source / 'config.yaml'} is missing")
        lines.append(_install_one(name, source, Path(user_dir) / name))
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `ensflow install-profiles` (shared with `python -m ensflow.ops.profiles`)."""
    parser.add_argument("--profiles-dir", type=Path, default=Path("profiles"),
                        help="the repo's profiles directory (default: ./profiles)")
    parser.add_argument("--user-dir", type=Path, default=None,
                        help="where to install (default: Snakemake's user config directory)")


def run(profiles_dir: Path, user_dir: Path | None = None) -> int:
    """Install and print one line per profile; 0 also when a different profile was kept."""
    try:
        lines = install_profiles(profiles_dir, user_dir)
    except (EnsflowError, OSError) as exc:
        print(f"ensflow install-profiles: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m ensflow.ops.profiles`, the same as `ensflow install-profiles`."""
    parser = argparse.ArgumentParser(prog="ensflow install-profiles", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args.profiles_dir, args.user_dir)


if __name__ == "__main__":
    sys.exit(main())
